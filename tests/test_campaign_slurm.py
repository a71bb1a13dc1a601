"""One campaign round through a real single-node SLURM: ``campaign step`` submits through
jobflow-remote, ``sbatch`` runs the mocked VASP (real AlN outputs), the next step collects,
fine-tunes on the DFT label and re-predicts the pool.

Needs ``slurm-wlm`` and ``munge`` (``.ci/install_slurm.sh``) and root; skips otherwise, fails under ``CI=true``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
sys.path.insert(0, str(Path(__file__).parent))

from hpc_env import make_slurm_env  # noqa: E402
from test_campaign_rounds import cli, run_round, start_args  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def test_campaign_round_through_sbatch(slurm, tmp_path, monkeypatch, shared_dir, tiny_ensemble):
    from anisoscreen.hpc.config import job_controller

    env = make_slurm_env(slurm, tmp_path, monkeypatch, shared_dir)
    cli(*start_args("slurm", tiny_ensemble, env.project))
    out = cli("campaign", "step", "slurm")
    assert out.count("submitted ") == 2 and "waiting for 2 validation(s)" in out
    run_round(env, "slurm")
    with job_controller(env.project) as jc:
        infos = jc.get_jobs_info()
    # every job that ran (AlN's VASP and record jobs, the crashed VASP job) went through sbatch;
    # the crashed material's record job never runs
    ran = [i for i in infos if i.state.value in ("COMPLETED", "FAILED")]
    assert len(ran) == 3
    assert all(i.remote.process_id and i.remote.process_id.isdigit() for i in ran)
