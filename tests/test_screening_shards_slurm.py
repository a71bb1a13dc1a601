"""Sharded prediction on a real single-node SLURM: the screening flow with one prediction job
per candidate goes through jobflow-remote and ``sbatch``; two shards run at the same time, the
first attempt of shard 1 dies on its node and is rerun alone, and the merged predictions and
ranking equal those of the single-job run.

Needs ``slurm-wlm`` and ``munge`` (``.ci/install_slurm.sh``) and root; skips otherwise, fails under ``CI=true``.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
sys.path.insert(0, str(Path(__file__).parent))

from hpc_env import make_slurm_env  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402
from test_screening import small_pool  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

# The gpu worker's pre_run: the first attempt of shard 1 ends before the job starts, as on a
# node whose environment is broken (the batch script exits 1, no output is written); any
# later attempt, and every other job, runs normally.
FAIL_SHARD_1_ONCE = (
    'if grep -Eq \'"anisoscreen_shard": *"1/\' jfremote_in.json && [ ! -e {marker} ]; then '
    "touch {marker}; echo 'simulated node failure before the job started' >&2; exit 1; fi"
)


def _slurm_job(slurm: SlurmCluster, job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (JobState, StartTime, EndTime...)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        env=slurm.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def _interval(record: dict[str, str]) -> tuple[datetime, datetime]:
    return (
        datetime.fromisoformat(record["StartTime"]),
        datetime.fromisoformat(record["EndTime"]),
    )


def _maker(folder: Path, pool: Path, data: Path, shard_size: int | None):
    from anisoscreen.candidates.filters import ScreeningCriteria
    from anisoscreen.screening.flows import ScreeningMaker
    from anisoscreen.settings import get_settings

    # the embedded store on disk: every sbatch job (its own process) sees the same results
    return ScreeningMaker.from_settings(
        get_settings(store="embedded", data_dir=data),
        source=str(pool),
        model=str(folder),
        device="cpu",
        batch_size=4,
        processes=1,
        criteria=ScreeningCriteria(exclude_known_dielectrics=False),
        shard_size=shard_size,
    )


def _predictions(data: Path) -> dict:
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    with ResultsStore(get_settings(store="embedded", data_dir=data)) as results:
        return {p.material_id: p for p in results.query(PredictionDoc)}


def test_sharded_screening_through_sbatch(slurm, tmp_path, monkeypatch, shared_dir, tiny_model):
    from anisoscreen.commands.hpc import register
    from anisoscreen.hpc.config import job_controller
    from anisoscreen.hpc.queue import queue_status
    from anisoscreen.hpc.submit import submit_screening
    from anisoscreen.screening.flow_runner import run_flow_locally
    from anisoscreen.screening.flows import screening_outputs
    from anisoscreen.screening.outputs import RankingStageOutput
    from anisoscreen.settings import get_settings
    from anisoscreen.store import build_job_store

    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    marker = tmp_path / "shard-1-failed-once"
    env = make_slurm_env(
        slurm,
        tmp_path,
        monkeypatch,
        shared_dir,
        # the worker command (tests/fixtures/mock_vasp_exec.py) reads the VASP mock spec
        gpu_pre_run=f"export ANISOSCREEN_MOCK_VASP={tmp_path / 'mock_vasp.json'}\n"
        + FAIL_SHARD_1_ONCE.format(marker=marker),
    )

    # the reference: the same campaign as one prediction job, in this process
    single = _maker(folder, pool, tmp_path / "single", None)
    flow = single.make("single")
    responses = run_flow_locally(
        flow, build_job_store(get_settings(store="embedded", data_dir=tmp_path / "single"))
    )
    reference = screening_outputs(flow, responses)
    assert reference is not None
    n = reference.run.n_candidates
    assert n >= 3

    # one prediction job per candidate, on the gpu worker through sbatch
    sharded = _maker(folder, pool, tmp_path / "sharded", 1)
    flow = sharded.make("sharded")
    report = submit_screening(flow, project=env.project, worker="gpu")
    assert report.worker == "gpu"
    env.run_all(max_seconds=400)

    with job_controller(env.project) as jc:
        infos = jc.get_jobs_info()
    shards = {i.name: i for i in infos if i.name.startswith("predict shard")}
    assert sorted(shards) == sorted(f"predict shard {k}/{n}" for k in range(1, n + 1)), [
        (i.name, i.state.value, i.error, getattr(i.remote, "error", None)) for i in infos
    ]
    states = {i.name: i.state.value for i in infos}
    # shard 1 failed, the other shards finished, and ranking waits for the merge
    assert states[f"predict shard 1/{n}"] == "FAILED"
    assert all(states[f"predict shard {k}/{n}"] == "COMPLETED" for k in range(2, n + 1))
    assert states["merge prediction shards"] == "WAITING" and states["rank"] == "WAITING"
    failed = shards[f"predict shard 1/{n}"]
    first_attempt = failed.remote.process_id
    assert _slurm_job(slurm, first_attempt)["JobState"] == "FAILED"
    records = {
        k: _slurm_job(slurm, i.remote.process_id) for k, i in shards.items() if k != failed.name
    }
    assert all(r["JobState"] == "COMPLETED" for r in records.values())
    assert all(i.worker == "gpu" for i in shards.values())
    # at least two shards ran at the same time on the node
    intervals = sorted(_interval(r) for r in records.values())
    assert any(
        later[0] < earlier[1] for earlier, later in zip(intervals, intervals[1:], strict=False)
    ), intervals
    done_before = _predictions(tmp_path / "sharded")
    assert len(done_before) == n - 1  # the finished shards' predictions are stored already

    # the failed shard alone goes back in the queue; the rest of the flow then completes
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["rerun", str(failed.db_id), "--project", env.project])
    assert result.exit_code == 0 and "1 job(s) back in the queue" in result.output, result.output
    env.run_all(max_seconds=300)
    with job_controller(env.project) as jc:
        infos = jc.get_jobs_info()
        assert {i.state.value for i in infos} == {"COMPLETED"}, [
            (i.name, i.state.value) for i in infos
        ]
        rerun = next(i for i in infos if i.name == failed.name)
        assert rerun.remote.process_id != first_attempt
        assert _slurm_job(slurm, rerun.remote.process_id)["JobState"] == "COMPLETED"
        # only shard 1 ran again: every other shard kept its one sbatch job
        for name, info in shards.items():
            if name != failed.name:
                again = next(i for i in infos if i.name == name)
                assert again.remote.process_id == info.remote.process_id
        rank = next(i for i in infos if i.name == "rank")
        ranking = RankingStageOutput.model_validate(
            jc.get_job_output(job_id=rank.uuid, job_index=rank.index)
        )
        merge = next(i for i in infos if i.name == "merge prediction shards")
        merged = jc.get_job_output(job_id=merge.uuid, job_index=merge.index)
    assert merged["n_predicted"] == n and merged["n_reused"] == 0
    # candidates, the sharding job and its merge (one uuid, indexes 1 and 2), n shards, rank,
    # record: all tagged as screening jobs, so `anisoscreen status` counts the shards too
    assert len(infos) == n + 5
    assert queue_status(env.project, anisoscreen_only=True).counts == {"COMPLETED": n + 5}
    assert sorted(merged["material_ids"]) == sorted(
        r.material_id for r in reference.ranking.ranking
    )

    # identical results to the single-job run
    assert [r.material_id for r in ranking.ranking] == [
        r.material_id for r in reference.ranking.ranking
    ]
    preds, ref_preds = _predictions(tmp_path / "sharded"), _predictions(tmp_path / "single")
    assert preds.keys() == ref_preds.keys() and len(preds) == n
    for material_id, doc in preds.items():
        ref = ref_preds[material_id]
        np.testing.assert_allclose(
            doc.dielectric_tensor, ref.dielectric_tensor, rtol=1e-6, atol=1e-7
        )
        assert (doc.dimensionality, doc.crystal_system) == (ref.dimensionality, ref.crystal_system)
    for material_id, doc in done_before.items():  # finished shards were not predicted again
        np.testing.assert_array_equal(preds[material_id].dielectric_tensor, doc.dielectric_tensor)
