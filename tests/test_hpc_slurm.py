"""End to end on a real single-node SLURM: ``anisoscreen submit`` → jobflow-remote Runner →
``sbatch`` → mocked VASP (real AlN outputs) → COMPLETED → ``anisoscreen collect`` → the AlN
tensor in the results store; and a crashed VASP run that ends FAILED and shows in ``status``.

Needs ``slurm-wlm`` and ``munge`` (``.ci/install_slurm.sh``) and root; skips otherwise, fails under ``CI=true``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from hpc_env import ALN_ID, CRASH_ID, make_slurm_env  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture
def env(slurm, tmp_path, monkeypatch, shared_dir):
    return make_slurm_env(slurm, tmp_path, monkeypatch, shared_dir)


@pytest.fixture
def cli():
    from anisoscreen.commands.hpc import register

    app = typer.Typer()
    register(app)
    runner = CliRunner(env={"COLUMNS": "250"})

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def _slurm_state(slurm: SlurmCluster, job_id: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id],
        env=slurm.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("JobState=")[1].split()[0]


def test_validation_through_sbatch(slurm, env, cli):
    from anisoscreen.hpc.config import job_controller
    from anisoscreen.schemas import ValidationDoc, ValidationState
    from anisoscreen.store import ResultsStore

    out = cli("submit", "--ids", ALN_ID, "--project", env.project, "--worker", "vasp")
    assert "1 submitted" in out
    env.run_all(max_seconds=240)

    with job_controller(env.project) as jc:
        infos = jc.get_jobs_info()
    assert {i.state.value for i in infos} == {"COMPLETED"}
    for info in infos:  # both jobs went through sbatch and SLURM saw them finish
        assert info.remote.process_id and info.remote.process_id.isdigit()
        assert _slurm_state(slurm, info.remote.process_id) == "COMPLETED"
        assert (Path(info.run_dir) / "queue.out").exists()

    out = cli("collect", "--project", env.project)
    assert "1 collected, 0 failed" in out
    with ResultsStore(env.settings) as results:
        (doc,) = results.query(ValidationDoc, {"material_id": ALN_ID})
    assert doc.state == ValidationState.COMPLETED and doc.flags == []
    np.testing.assert_allclose(
        np.diag(doc.epsilon_electronic), [4.372349, 4.37235, 4.572975], atol=1e-6
    )
    assert doc.anisotropy_ratio == pytest.approx(4.572975 / 4.372349, rel=1e-5)
    assert doc.worker == "vasp" and doc.project == env.project


def test_vasp_failure_through_sbatch(slurm, env, cli):
    from anisoscreen.hpc.queue import queue_status

    cli("submit", "--ids", CRASH_ID)
    env.run_all(max_seconds=240)
    report = queue_status(env.project)
    assert report.counts == {"FAILED": 1, "WAITING": 1}
    (failed,) = report.failed
    assert failed.material_id == CRASH_ID and "vasprun" in failed.reason.lower()
    out = cli("status")
    assert "FAILED" in out and CRASH_ID in out and "vasprun" in out.lower()
