"""A campaign round through jobflow-remote (shell scheduler, mocked VASP with real AlN
outputs): interrupted right after a submission reached the queue, resumed with nothing
submitted twice, then collected, fine-tuned on the DFT label and re-predicted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from hpc_env import ALN_ID, CRASH_ID, make_hpc_env  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

ALN_AR = 4.572975 / 4.372349


@pytest.fixture
def env(tmp_path, monkeypatch, shared_dir):
    return make_hpc_env(tmp_path, monkeypatch, shared_dir, scheduler="shell")


def cli(*args: str) -> str:
    from anisoscreen.cli import app

    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def start_args(name: str, model: Path, project: str) -> list[str]:
    return [
        "campaign", "start", name, "--source", "test", "--strategy", "greedy",
        "--batch-size", "2", "--budget", "2", "--max-per-group", "0", "--epochs", "1",
        "--replay", "4", "--model", str(model), "--project", project, "--worker", "vasp",
    ]  # fmt: skip


def _flows(project: str) -> int:
    from anisoscreen.hpc.config import job_controller

    with job_controller(project) as jc:
        return jc.count_flows()


def run_round(env, name: str) -> None:
    """Run the queued validations, then finish the round; check what it learnt."""
    from anisoscreen.campaign.rounds import load_campaign
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.store import ResultsStore

    env.run_all(max_seconds=240)
    out = cli("campaign", "step", name)
    assert "round 0 done: 1/2 labelled" in out
    doc = load_campaign(name, env.settings)
    (current,) = doc.rounds
    picks = {p.material_id: p for p in current.picks}
    assert picks[ALN_ID].state == "completed"
    assert picks[ALN_ID].observed == pytest.approx(ALN_AR, rel=1e-5)
    assert picks[CRASH_ID].state == "failed" and "vasprun" in picks[CRASH_ID].error.lower()
    new = f"campaign-{name}-r1"
    assert current.stage == "done" and current.new_model == new and doc.current_model == new
    tuned = load_model(new, env.settings.data_dir)
    (label,) = tuned.metadata["finetune"]["labels"]
    assert label["material_id"] == ALN_ID and label["job_uuid"] in picks[ALN_ID].job_uuids
    assert label["input_settings"]["requested"]
    with ResultsStore(env.settings) as results:
        assert {p.material_id for p in results.query(PredictionDoc, {"model": new})} == {
            ALN_ID,
            CRASH_ID,
        }
    out = cli("campaign", "status", name)
    assert new in out and f"best ar found: {ALN_AR:.3f}" in out
    assert "budget spent" in cli("campaign", "step", name)
    assert _flows(env.project) == 2


def test_resume_after_kill_between_submission_and_collection(env, tiny_ensemble, monkeypatch):
    import jobflow_remote

    from anisoscreen.campaign.rounds import load_campaign

    out = cli(*start_args("resume", tiny_ensemble, env.project))
    assert "2 candidates predicted" in out

    real_submit = jobflow_remote.submit_flow

    def submit_then_die(flow, **kwargs):
        real_submit(flow, **kwargs)
        raise KeyboardInterrupt("killed after the flow reached the queue")

    from anisoscreen.campaign.rounds import step_campaign

    monkeypatch.setattr(jobflow_remote, "submit_flow", submit_then_die)
    with pytest.raises(KeyboardInterrupt):
        step_campaign("resume", env.settings)
    monkeypatch.setattr(jobflow_remote, "submit_flow", real_submit)

    doc = load_campaign("resume", env.settings)
    (current,) = doc.rounds
    states = [p.state for p in current.picks]
    assert current.stage == "selected" and states == ["prepared", "selected"]
    assert current.picks[0].flow_uuid and len(current.picks[0].job_uuids) == 1
    assert _flows(env.project) == 1

    # resumed: the prepared pick is found in the queue, only the other one is submitted
    out = cli("campaign", "step", "resume")
    assert "waiting for 2 validation(s)" in out and out.count("submitted ") == 1
    assert _flows(env.project) == 2
    # stepping again before the jobs ran submits nothing
    assert "waiting for 2" in cli("campaign", "step", "resume")
    assert _flows(env.project) == 2
    run_round(env, "resume")
