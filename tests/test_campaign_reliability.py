"""Campaign state under concurrency, kill -9 and damage: one writer per campaign (step lock and
compare-and-set revision), nothing submitted twice, a safe name, an atomic values cache, and
``--local`` validations that fail with their reason instead of being waited for forever.

The process tests run the real CLI in child processes on the embedded store and kill them with
SIGKILL at the named points (the patch is applied in the child before the command runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.campaign.cache import read_values, write_values
from anisoscreen.campaign.guard import CampaignConflictError, save_campaign, step_lock
from anisoscreen.campaign.rounds import load_campaign, start_campaign, step_campaign
from anisoscreen.errors import AnisoscreenError, ExitCode
from anisoscreen.schemas import CampaignDoc, CandidateDoc, ValidationDoc, ValidationState
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore

IDS = ("aln", "gano")


def aln() -> Structure:
    return Structure(
        Lattice.hexagonal(3.11, 4.98),
        ["Al", "Al", "N", "N"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )


def bare_doc(name: str = "c1", **fields) -> CampaignDoc:
    return CampaignDoc(name=name, base_model="m", current_model="m", local=True, **fields)


@pytest.fixture
def settings(tmp_path):
    return get_settings(store="monty", data_dir=tmp_path / "data")


# -- names, compare-and-set, the lock (no model needed) ------------------------------------


@pytest.mark.parametrize(
    "name", ["../../../X", "a/b", "..", ".hidden", "x" * 65, "", "a b", "c1\n", "é"]
)
def test_campaign_names_must_be_slugs(settings, name):
    with pytest.raises(AnisoscreenError, match="invalid campaign name") as info:
        start_campaign(bare_doc(name), settings)
    assert "\n" not in str(info.value)
    assert not (settings.data_dir / "campaigns").exists()
    assert not (settings.data_dir.parent / "X").exists()


@pytest.mark.parametrize("store", ["monty", "memory"])
def test_a_stale_campaign_copy_cannot_be_saved(tmp_path, store):
    settings = get_settings(store=store, data_dir=tmp_path / "data")
    with ResultsStore(settings) as results:
        save_campaign(bare_doc(), results, new=True)
        with pytest.raises(CampaignConflictError, match="exists"):
            save_campaign(bare_doc(), results, new=True)
        first, second = (results.query(CampaignDoc, {"name": "c1"})[0] for _ in range(2))
        first.budget = 7
        save_campaign(first, results)
        assert first.revision == 1
        second.budget = 9
        with pytest.raises(CampaignConflictError, match="changed by another process"):
            save_campaign(second, results)
        (stored,) = results.query(CampaignDoc, {"name": "c1"})
        assert (stored.budget, stored.revision) == (7, 1)
        save_campaign(first, results)  # the up-to-date copy goes on
        assert results.query(CampaignDoc, {"name": "c1"})[0].revision == 2


def test_a_campaign_stored_before_revisions_counts_as_revision_zero(settings):
    with ResultsStore(settings) as results:
        record = bare_doc().store_dict()
        del record["revision"]
        results.store("campaigns")._collection.insert_one(record)
        doc = results.query(CampaignDoc, {"name": "c1"})[0]
        assert doc.revision == 0
        save_campaign(doc, results)
        assert results.query(CampaignDoc, {"name": "c1"})[0].revision == 1


def test_a_second_step_stops_at_once_while_one_holds_the_lock(settings):
    with ResultsStore(settings) as results:
        save_campaign(bare_doc(), results, new=True)
    with step_lock(settings, "c1") as path:
        with pytest.raises(CampaignConflictError, match="being stepped by another") as info:
            step_campaign("c1", settings)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert load_campaign("c1", settings).rounds == []  # the loser changed nothing


# -- the values cache ----------------------------------------------------------------------


def test_values_cache_round_trip_and_damaged_files_are_misses(tmp_path):
    path = tmp_path / "c" / "values-x.npz"
    values = np.arange(6.0).reshape(3, 2)
    write_values(path, ["a", "b"], values, "model-1", True)
    ids, read, model, calibrated = read_values(path)
    assert ids == ["a", "b"] and model == "model-1" and np.array_equal(read, values)
    assert calibrated is True
    write_values(path, ["a", "b"], values, "model-1", False)
    assert read_values(path)[3] is False  # an uncalibrated spread stays marked as such
    np.savez(path, material_ids=np.array(["a", "b"]), values=values, model="model-1")
    assert read_values(path) is None  # written before the factor was kept: recomputed
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert read_values(path) is None  # truncated
    path.write_bytes(b"")
    assert read_values(path) is None  # empty
    assert read_values(tmp_path / "missing.npz") is None


def test_values_cache_unwritable_folder_names_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AnisoscreenError, match="campaign cache .*values-x.npz"):
        write_values(blocker / "values-x.npz", ["a"], np.ones((1, 1)), "m", False)


# -- real campaigns (tiny ensemble, local validations without VASP) -------------------------


def run_cli(*args: str, patch: str = "", wait: bool = True):
    """The CLI in a child process; ``patch`` is Python run there first."""
    code = textwrap.dedent(patch) + textwrap.dedent(
        """
        import sys
        from anisoscreen.cli import main
        sys.argv[0] = "anisoscreen"
        main()
        """
    )
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code, *args]
    if not wait:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


KILL = "import os, signal\ndef die(*args, **kwargs):\n    os.kill(os.getpid(), signal.SIGKILL)\n"


@pytest.fixture
def local_campaign(settings, monkeypatch, tiny_ensemble, triclinic):
    """A started ``--local`` campaign of two candidates (batch 2, budget 2) on a montydb."""
    monkeypatch.setenv("ANISOSCREEN_STORE", "monty")
    monkeypatch.setenv("ANISOSCREEN_DATA_DIR", str(settings.data_dir))
    with ResultsStore(settings) as results:
        results.upsert(
            [
                CandidateDoc.from_structure(aln(), source="test", material_id="aln"),
                CandidateDoc.from_structure(triclinic, source="test", material_id="gano"),
            ]
        )
    doc = CampaignDoc(
        name="c1",
        source="test",
        strategy="greedy",
        batch_size=2,
        budget=2,
        max_per_group=0,
        base_model=str(tiny_ensemble),
        current_model=str(tiny_ensemble),
        local=True,
    )
    counts: list[tuple[int, int | None]] = []
    assert (
        start_campaign(doc, settings, count=lambda done, total: counts.append((done, total))) == 2
    )
    assert counts[-1] == (2, 2)  # two structures, predicted once
    return settings


def validations(settings) -> dict[str, list[ValidationDoc]]:
    with ResultsStore(settings) as results:
        docs = results.query(ValidationDoc)
    return {i: [d for d in docs if d.material_id == i] for i in IDS}


def assert_round_failed_once_per_pick(settings) -> None:
    """Each pick was validated by one flow, which failed with the missing-POTCAR reason."""
    doc = load_campaign("c1", settings)
    (current,) = doc.rounds
    assert current.stage == "done" and len(current.picks) == 2
    by_material = validations(settings)
    for pick in current.picks:
        (validation,) = by_material[pick.material_id]  # one flow, one record: never twice
        assert validation.flow_uuid == pick.flow_uuid
        assert validation.state == ValidationState.FAILED
        assert pick.state == "failed" and "POTCAR" in pick.error


@pytest.mark.slow
def test_local_campaign_without_vasp_records_the_failures(local_campaign, monkeypatch):
    import logging

    # as after jobflow-remote's logging.config.dictConfig (disable_existing_loggers)
    monkeypatch.setattr(logging.getLogger("jobflow.managers.local"), "disabled", True)
    out = step_campaign("c1", local_campaign)
    assert out.startswith("round 0 done: 0/2 labelled")
    assert_round_failed_once_per_pick(local_campaign)


@pytest.mark.slow
def test_a_step_started_while_another_holds_the_lock_exits_with_one_line(local_campaign):
    with step_lock(local_campaign, "c1"):
        out = run_cli("campaign", "step", "c1")
    assert out.returncode == ExitCode.STORE, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "being stepped by another process" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert load_campaign("c1", local_campaign).rounds == []
    assert validations(local_campaign) == {"aln": [], "gano": []}


@pytest.mark.slow
def test_two_concurrent_step_processes_validate_each_pick_once(local_campaign):
    first, second = (run_cli("campaign", "step", "c1", wait=False) for _ in range(2))
    for process in (first, second):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode in (0, ExitCode.STORE), stderr
        if process.returncode:
            assert "being stepped by another process" in stderr
    assert_round_failed_once_per_pick(local_campaign)


@pytest.mark.slow
def test_kill_between_selection_and_submission_resumes_without_resubmitting(local_campaign):
    patch = KILL + "import anisoscreen.campaign.rounds as rounds\nrounds._submit = die\n"
    out = run_cli("campaign", "step", "c1", patch=patch)
    assert out.returncode == -signal.SIGKILL
    (current,) = load_campaign("c1", local_campaign).rounds
    assert current.stage == "selected" and [p.state for p in current.picks] == ["selected"] * 2
    assert validations(local_campaign) == {"aln": [], "gano": []}
    out = run_cli("campaign", "step", "c1")  # the lock died with its process
    assert out.returncode == 0, out.stderr
    assert "round 0 done: 0/2 labelled" in out.stdout
    assert_round_failed_once_per_pick(local_campaign)


@pytest.mark.slow
def test_kill_after_a_local_run_before_its_state_is_saved_does_not_run_it_again(local_campaign):
    patch = KILL + textwrap.dedent(
        """
        import anisoscreen.campaign.local_run as local_run
        real = local_run.run_local_validation
        def run_then_die(*args, **kwargs):
            real(*args, **kwargs)
            die()
        local_run.run_local_validation = run_then_die
        """
    )
    out = run_cli("campaign", "step", "c1", patch=patch)
    assert out.returncode == -signal.SIGKILL
    (current,) = load_campaign("c1", local_campaign).rounds
    assert [p.state for p in current.picks] == ["prepared", "selected"]
    ran = validations(local_campaign)[current.picks[0].material_id]
    assert len(ran) == 1
    out = run_cli("campaign", "step", "c1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("submitted ") == 1 and out.stdout.count("failed locally") == 1
    assert_round_failed_once_per_pick(local_campaign)
    assert validations(local_campaign)[current.picks[0].material_id] == ran


@pytest.mark.slow
def test_kill_during_finetuning_resumes_without_resubmitting(local_campaign):
    """A round whose DFT is collected (one valid label) is killed in the second member's
    fine-tuning; the next step trains again and finishes, submitting nothing."""
    settings = local_campaign
    doc = load_campaign("c1", settings)
    doc.finetune = {"epochs": 1, "replay": 4, "seed": 0}
    with ResultsStore(settings) as results:
        step_campaign_until_collected(doc, results)
    before = validations(settings)
    patch = KILL + textwrap.dedent(
        """
        import anisoscreen.campaign.finetune as finetune
        real = finetune._train_member
        def train_then_die(network, graphs, targets, config, loss_config, member):
            if member == 1:
                die()
            return real(network, graphs, targets, config, loss_config, member)
        finetune._train_member = train_then_die
        """
    )
    out = run_cli("campaign", "step", "c1", patch=patch)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert "member 0" in out.stdout and "submitted" not in out.stdout
    (current,) = load_campaign("c1", settings).rounds
    assert current.stage == "collected"
    assert not (settings.data_dir / "models" / "campaign-c1-r1" / "model.pt").exists()
    out = run_cli("campaign", "step", "c1")
    assert out.returncode == 0, out.stderr
    assert (
        "submitted" not in out.stdout and "fine-tuned campaign-c1-r1 on 1 DFT labels" in out.stdout
    )
    doc = load_campaign("c1", settings)
    assert doc.rounds[0].stage == "done" and doc.current_model == "campaign-c1-r1"
    assert validations(settings) == before


def step_campaign_until_collected(doc: CampaignDoc, results: ResultsStore) -> None:
    """Round 0 picked and collected, as if VASP had run: a valid DFPT label for AlN."""
    from anisoscreen.schemas import CampaignPick, CampaignRound

    picks = [
        CampaignPick(
            material_id="aln", predicted=1.0, state="completed", flow_uuid="f-aln",
            job_uuids=["j-aln"], observed=1.05,
        ),
        CampaignPick(
            material_id="gano", predicted=0.9, state="failed", flow_uuid="f-gano",
            job_uuids=["j-gano"], error="no POTCAR",
        ),
    ]  # fmt: skip
    doc.rounds = [CampaignRound(index=0, model=doc.current_model, stage="collected", picks=picks)]
    save_campaign(doc, results)
    results.upsert(
        [
            ValidationDoc(
                material_id="aln",
                formula_pretty="AlN",
                job_uuid="j-aln",
                flow_uuid="f-aln",
                calc_type="dfpt",
                state=ValidationState.COMPLETED,
                epsilon_electronic=[[4.37, 0, 0], [0, 4.37, 0], [0, 0, 4.57]],
            ),
            ValidationDoc(
                material_id="gano",
                formula_pretty="GaNO2",
                job_uuid="j-gano",
                flow_uuid="f-gano",
                calc_type="dfpt",
                state=ValidationState.FAILED,
                error="no POTCAR",
            ),
        ]  # fmt: skip
    )


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console entry point in this process: exit status, stdout, stderr."""
    from anisoscreen.cli import main

    monkeypatch.setattr(sys, "argv", ["anisoscreen", *args])
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_an_eof_error_is_an_internal_error_not_an_interrupt(monkeypatch, capsys):
    import anisoscreen.campaign.rounds as rounds

    def truncated(*args, **kwargs):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(rounds, "load_campaign", truncated)
    code, _, err = run_main(monkeypatch, capsys, "campaign", "status", "c1")
    assert code == ExitCode.INTERNAL, err
    assert "internal error: EOFError: Ran out of input" in err and "interrupted" not in err


@pytest.mark.slow
def test_the_pool_goes_through_the_model_once(settings, monkeypatch, tiny_ensemble, triclinic):
    """The member values come out of the same pass as the PredictionDocs (issue 27)."""
    import anisoscreen.campaign.rounds as rounds
    from anisoscreen.model.inference import Predictor
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.screening.objectives import tensor_values

    monkeypatch.setenv("ANISOSCREEN_STORE", "monty")
    pool = [
        CandidateDoc.from_structure(aln(), source="test", material_id="aln"),
        CandidateDoc.from_structure(triclinic, source="test", material_id="gano"),
    ]
    seen: list[int] = []
    original = Predictor.predict_graphs

    def counting(self, graphs, model=None):
        seen.append(len(graphs))
        return original(self, graphs, model)

    monkeypatch.setattr(Predictor, "predict_graphs", counting)
    doc = CampaignDoc(
        name="c1", base_model=str(tiny_ensemble), current_model=str(tiny_ensemble), local=True
    )
    with ResultsStore(settings) as results:
        ids, values, _, _ = rounds._member_values(doc, pool, settings, results)
        stored = {p.material_id: p for p in results.query(PredictionDoc, {})}
    assert sum(seen) == len(pool) and ids == ["aln", "gano"]
    monkeypatch.setattr(Predictor, "predict_graphs", original)
    predictor = Predictor.load(str(tiny_ensemble), settings.data_dir, device="cpu")
    graphs = [predictor.graph_or_error(c.structure, c.band_gap) for c in pool]
    members = predictor.predict_graphs(graphs)
    expected = tensor_values(members, "ar")
    # deviations widened to each document's calibrated spread
    calibrated = np.array([stored[i].anisotropy_ratio_std for i in ids])
    assert np.allclose(expected.std(axis=0, ddof=1) > 0, True)
    factor = calibrated / expected.std(axis=0, ddof=1)
    expected = expected.mean(axis=0) + factor * (expected - expected.mean(axis=0))
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert sorted(stored) == ids and all(stored[i].n_models == len(values) for i in ids)


def test_a_damaged_values_cache_is_recomputed(local_campaign, monkeypatch, capsys):
    import anisoscreen.campaign.rounds as rounds

    settings = local_campaign
    (path,) = (settings.data_dir / "campaigns" / "c1").glob("values-*.npz")
    ids, values, model, _ = read_values(path)
    path.write_bytes(b"")  # empty: numpy raised EOFError, which the CLI called "interrupted"
    code, out, err = run_main(monkeypatch, capsys, "campaign", "step", "c1")
    assert code == 0, err
    assert "round 0 done: 0/2 labelled" in out
    assert read_values(path)[0] == ids
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # truncated: BadZipFile
    doc = load_campaign("c1", settings)
    with ResultsStore(settings) as results:
        again = rounds._member_values(doc, rounds._pool(doc, results), settings, results)
    assert again[0] == ids and again[2] == model
    np.testing.assert_allclose(again[1], values, rtol=1e-5)
    assert read_values(path) is not None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_concurrent_steps_through_jobflow_remote_submit_each_flow_once(
    tmp_path, monkeypatch, shared_dir, tiny_ensemble
):
    """The issue's case: a second step while the first is submitting to the queue (shell
    scheduler, shared mongomock stores) stops with one line; the queue holds one flow per
    pick."""
    import threading

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    sys.path.insert(0, str(Path(__file__).parent))
    from hpc_env import make_hpc_env
    from test_campaign_rounds import _flows, cli, start_args

    import anisoscreen.campaign.rounds as rounds

    env = make_hpc_env(tmp_path, monkeypatch, shared_dir, scheduler="shell")
    cli(*start_args("race", tiny_ensemble, env.project))
    entered, release = threading.Event(), threading.Event()
    real_submit = rounds._submit

    def submit_when_released(*args, **kwargs):
        entered.set()
        release.wait(60)
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(rounds, "_submit", submit_when_released)
    outcome: dict[str, str] = {}
    first = threading.Thread(
        target=lambda: outcome.setdefault("first", step_campaign("race", env.settings))
    )
    first.start()
    try:
        assert entered.wait(300), "the first step never reached submission"
        with pytest.raises(CampaignConflictError, match="being stepped by another process"):
            step_campaign("race", env.settings)
    finally:
        release.set()
        first.join(300)
    assert outcome["first"] == "round 0: waiting for 2 validation(s)"
    assert _flows(env.project) == 2
    (current,) = load_campaign("race", env.settings).rounds
    assert [p.state for p in current.picks] == ["submitted", "submitted"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_a_successful_local_validation_is_collected(tmp_path, monkeypatch, settings):
    """The other side of the local runner: with (mocked) VASP the DFPT result is stored."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from vasp_refs import DFPT_CHECKED, aln_dfpt_ref

    from anisoscreen.campaign.local_run import run_local_validation
    from anisoscreen.hpc.submit import record_jobs
    from anisoscreen.validation.makers import ValidationMaker

    ref, structure = aln_dfpt_ref(Path(__file__).parent / "data", tmp_path / "refs")
    mock = monkeypatch_vasp(monkeypatch, Path("/"))
    next(mock)({"mp dielectric": ref}, {"mp dielectric": {"incar_settings": DFPT_CHECKED}})
    candidate = CandidateDoc.from_structure(structure, source="test", material_id="mp-661")
    flow = ValidationMaker().make(structure, material_id="mp-661")
    (record,) = record_jobs(flow)
    with ResultsStore(settings) as results:
        results.upsert([candidate])
        reasons = run_local_validation(
            flow, [record], candidate, settings, results, tmp_path / "work"
        )
        (doc,) = results.query(ValidationDoc)
    assert reasons == []
    assert doc.state == ValidationState.COMPLETED and doc.is_valid
    assert doc.job_uuid == record.function_kwargs["job_uuid"] and doc.flow_uuid == flow.uuid
    assert doc.anisotropy_ratio == pytest.approx(1.045885, abs=1e-5)
