"""jobflow-remote round trip without SLURM: submit → Runner (shell scheduler, jobs in their
own processes with atomate2's VASP mock) → collect, plus de-duplication, status and rerun.

The queue, the JobStore and the results share one mongomock database; the Runner runs
in-process; each job runs ``tests/fixtures/mock_vasp_exec.py`` as a separate process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from hpc_env import ALN_ID, CRASH_ID, make_hpc_env  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture
def cli():
    from anisoscreen.commands.hpc import register

    app = typer.Typer()
    register(app)
    runner = CliRunner(env={"COLUMNS": "250"})  # no rich line wrapping in assertions

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


@pytest.fixture
def env(tmp_path, monkeypatch, shared_dir):
    return make_hpc_env(tmp_path, monkeypatch, shared_dir, scheduler="shell")


def _validations(env, **criteria):
    from anisoscreen.schemas import ValidationDoc
    from anisoscreen.store import ResultsStore

    with ResultsStore(env.settings) as results:
        return results.query(ValidationDoc, criteria)


def test_submit_run_collect_aln(env, cli):
    from anisoscreen.schemas import ValidationState

    out = cli("submit", "--ids", ALN_ID)
    assert f"submitted {ALN_ID}" in out and "1 submitted, 0 skipped" in out
    (doc,) = _validations(env, material_id=ALN_ID)
    assert doc.state == ValidationState.SUBMITTED and doc.worker == "vasp"
    assert doc.input_settings["requested"]["encut"] == 520
    # in flight: never submitted twice
    out = cli("submit", "--ids", ALN_ID)
    assert "0 submitted, 1 skipped" in out and "dfpt already in flight" in out

    env.run_all()
    states = env.job_states()
    assert set(states.values()) == {"COMPLETED"}, states

    out = cli("collect")
    assert "1 collected, 0 failed" in out and f"{ALN_ID} dfpt: completed, a_r = 1.0459" in out
    (doc,) = _validations(env, material_id=ALN_ID)
    assert doc.state == ValidationState.COMPLETED and doc.flags == []
    np.testing.assert_allclose(
        np.diag(doc.epsilon_electronic), [4.372349, 4.37235, 4.572975], atol=1e-6
    )
    assert doc.anisotropy_ratio == pytest.approx(4.57297469 / 4.37234871, rel=1e-6)
    assert doc.predicted_anisotropy_ratio == pytest.approx(4.5 / 4.2)
    assert doc.project == env.project and doc.worker == "vasp"
    # validated: still never submitted twice, also through top-k selection
    out = cli("submit", "--top-k", "1")
    assert "0 submitted, 1 skipped" in out and "already validated (completed)" in out
    out = cli("status")
    assert "COMPLETED" in out and "failed jobs" not in out
    # asking for optics as well submits only the part not done yet
    out = cli("submit", "--ids", ALN_ID, "--optics", "--dry-run")
    assert f"would submit {ALN_ID}" in out and "dfpt already validated (completed)" in out


def test_failure_status_and_rerun(env, cli):
    from anisoscreen.hpc.queue import queue_status
    from anisoscreen.schemas import ValidationState

    out = cli("submit", "--ids", CRASH_ID)
    assert "1 submitted" in out
    env.run_all()
    report = queue_status(env.project)
    assert report.counts.get("FAILED") == 1, report.counts
    assert report.counts.get("WAITING") == 1  # the record job never ran
    (failed,) = report.failed
    assert failed.material_id == CRASH_ID and failed.name == "mp dielectric"
    assert "vasprun" in failed.reason.lower()
    out = cli("status")
    assert "FAILED" in out and CRASH_ID in out

    out = cli("collect")
    assert "0 collected, 1 failed" in out
    (doc,) = _validations(env, material_id=CRASH_ID)
    assert doc.state == ValidationState.FAILED and "vasprun" in doc.error.lower()
    # a failed job still in the queue is not resubmitted: it is rerun
    out = cli("submit", "--ids", CRASH_ID)
    assert "0 submitted" in out and "anisoscreen rerun" in out
    out = cli("rerun")
    assert "1 job(s) back in the queue" in out
    assert queue_status(env.project).counts.get("READY") == 1
    (doc,) = _validations(env, material_id=CRASH_ID)
    assert doc.state == ValidationState.SUBMITTED and doc.error is None


def test_top_k_and_ar_min_selection(env):
    from anisoscreen.store import ResultsStore
    from anisoscreen.validation.select import select_candidates

    with ResultsStore(env.settings) as results:
        chosen, skipped = select_candidates(results, top_k=1)
        assert [c.material_id for c, _ in chosen] == [ALN_ID]  # a_r 1.071 > 1.025
        chosen, _ = select_candidates(results, ar_min=1.05)
        assert [c.material_id for c, _ in chosen] == [ALN_ID]
        chosen, skipped = select_candidates(results, ids=["mp-unknown", CRASH_ID])
        assert [c.material_id for c, _ in chosen] == [CRASH_ID]
        assert skipped == [("mp-unknown", "no stored candidate (structure) with this id")]


def test_submit_screening_flow_to_gpu_worker(env, cli):
    from anisoscreen.hpc.config import job_controller
    from anisoscreen.hpc.queue import queue_status

    out = cli("submit", "screening", "--validate", "--top-k", "3")
    assert "1 submitted" in out and "worker gpu" in out
    with job_controller(env.project) as jc:
        infos = jc.get_jobs_info()
    names = {i.name for i in infos}
    assert {"record run", "select for validation"} <= names
    assert {i.worker for i in infos} == {"gpu"}
    assert all(i.metadata.get("anisoscreen_role") == "screening" for i in infos)
    report = queue_status(env.project)
    assert report.total == len(infos) and report.counts.get("READY") == 1
