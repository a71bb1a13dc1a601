"""The screening campaign: sources, filters, the MP client, Makers, resumability, CLI."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobflow import run_locally
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from anisoscreen.candidates.filters import ScreeningCriteria, apply_criteria, known_dielectric_ids
from anisoscreen.candidates.mp import MPCandidateQuery, RetryPolicy, fetch_mp_candidates
from anisoscreen.candidates.sources import candidates_from_summary_docs, load_bundled, load_local
from anisoscreen.cli import app
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CandidateDoc, PredictionDoc, ScreeningRunDoc
from anisoscreen.screening import early_descriptors
from anisoscreen.screening.descriptors import descriptors
from anisoscreen.screening.flows import PredictionMaker, ScreeningMaker
from anisoscreen.screening.jobs import rank_candidates
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store

sys.path.insert(0, str(Path(__file__).parent))

from screening_helpers import local_maker, screen_args  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def recorded_docs() -> list[dict]:
    with gzip.open(FIXTURES / "mp_summary_recorded.json.gz", "rt") as handle:
        return json.load(handle)


class RecordedSearcher:
    """Replays recorded MP summary documents through the ``search`` interface.

    Implements the server-side range semantics of ``energy_above_hull``, ``band_gap`` and
    ``num_sites`` and ``material_ids``/``fields`` selection; ``fail_on`` makes chosen calls
    raise like a dropped connection.
    """

    def __init__(self, docs, fail_on=(), api_key="sk-secret-123"):
        self.docs, self.fail_on, self.calls, self.api_key = docs, set(fail_on), [], api_key

    def search(self, **kwargs):
        self.calls.append(kwargs)
        if len(self.calls) in self.fail_on:
            raise ConnectionError(f"HTTPSConnectionPool: read timed out (api_key={self.api_key})")
        docs = self.docs
        if "material_ids" in kwargs:
            docs = [d for d in docs if d["material_id"] in kwargs["material_ids"]]
        for field, key in (
            ("energy_above_hull", "energy_above_hull"),
            ("band_gap", "band_gap"),
            ("nsites", "num_sites"),
        ):
            if key in kwargs:
                lo, hi = kwargs[key]
                docs = [d for d in docs if lo <= d[field] <= hi]
        return [{k: d[k] for k in kwargs["fields"]} for d in docs]


def test_criteria_count_removals_in_order():
    docs = candidates_from_summary_docs(recorded_docs(), "mp").candidates
    result = apply_criteria(docs, ScreeningCriteria(exclude_known_dielectrics=False))
    assert result.removed_by == {
        "energy_above_hull": 1,
        "noble_gas_or_hydrogen_only": 0,
        "num_sites": 1,
        "band_gap": 0,
    }
    assert len(result.kept) == 14
    strict = apply_criteria(
        docs, ScreeningCriteria(min_band_gap=3.0, max_sites=12, model_elements=["O", "Ba"])
    )
    assert strict.removed_by["num_sites"] == 8 and strict.removed_by["band_gap"] == 5
    assert all(set(d.elements) <= {"O", "Ba"} for d in strict.kept)


def test_noble_gas_and_known_dielectrics_are_removed():
    ne = CandidateDoc.from_structure(
        Structure(Lattice.cubic(4.4), ["Ne"], [[0, 0, 0]]),
        "t",
        "mp-111",
        energy_above_hull=0.0,
        band_gap=11.0,
    )
    known = next(iter(sorted(known_dielectric_ids())))
    aln = CandidateDoc.from_structure(
        Structure(Lattice.cubic(4.4), ["Al", "N"], [[0, 0, 0], [0.5] * 3]),
        "t",
        known,
        energy_above_hull=0.0,
        band_gap=4.0,
    )
    result = apply_criteria([ne, aln])
    assert (
        result.removed_by["noble_gas_or_hydrogen_only"] == 1
        and result.removed_by["known_dielectric"] == 1
    )
    assert len(known_dielectric_ids()) == 7180


def test_mp_fetch_is_chunked_cached_and_resumes_after_failure(tmp_path):
    query = MPCandidateQuery(chunk_size=5)
    failing = RecordedSearcher(recorded_docs(), fail_on={3, 4, 5})
    with pytest.raises(AnisoscreenError) as err:
        fetch_mp_candidates(
            failing, tmp_path, query, RetryPolicy(2, sleep=lambda s: None, secret="sk-secret-123")
        )
    assert (
        "chunk 2/3" in str(err.value)
        and "sk-secret-123" not in str(err.value)
        and "***" in str(err.value)
    )
    cached = sorted(p.name for p in (tmp_path / f"summary-{query.key}").iterdir())
    assert cached == ["chunk-00000-5.json.gz", "ids.json.gz"]

    resumed = RecordedSearcher(recorded_docs())
    waits = []
    docs = fetch_mp_candidates(resumed, tmp_path, query, RetryPolicy(sleep=waits.append))
    assert len(docs) == 14  # server-side criteria drop the 72-site and the unstable entry
    ids = sorted(d["material_id"] for d in docs)
    # the id list and chunk 1 came from the cache: only chunks 2 and 3 were fetched
    assert [c["material_ids"] for c in resumed.calls] == [ids[5:10], ids[10:]]
    again = RecordedSearcher(recorded_docs())
    assert fetch_mp_candidates(again, tmp_path, query) == docs and again.calls == []
    batch = candidates_from_summary_docs(docs, "mp")
    assert len(batch.candidates) == 14 and not batch.failures


def test_transient_failures_are_retried_with_backoff(tmp_path):
    flaky = RecordedSearcher(recorded_docs(), fail_on={1, 2})
    waits = []
    docs = fetch_mp_candidates(
        flaky, tmp_path, MPCandidateQuery(), RetryPolicy(backoff=1.5, sleep=waits.append)
    )
    assert len(docs) == 14 and waits == [1.5, 3.0]


def test_local_sources(tmp_path, shared_dir):
    bundled = load_bundled()
    assert len(bundled.candidates) == 300 and bundled.candidates[0].source == "bundled"
    folder = tmp_path / "cifs"
    folder.mkdir()
    bundled.candidates[0].structure.to(filename=str(folder / "a.cif"))
    (folder / "bad.cif").write_text("garbage")
    batch = load_local(folder)
    assert len(batch.candidates) == 1 and batch.candidates[0].material_id == "a.cif"
    assert batch.failures[0]["material_id"] == "bad.cif"
    with pytest.raises(AnisoscreenError, match="does not exist"):
        load_local(tmp_path / "missing")


def small_pool(path: Path) -> Path:
    docs = recorded_docs()
    docs.append({"material_id": "mp-broken", "structure": {"lattice": "nonsense"}})
    path.write_text(json.dumps(docs))
    return path


@pytest.mark.slow
def test_screening_flow_end_to_end_and_idempotent(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    overrides = {"data_dir": str(tmp_path / "d")}
    maker = local_maker(folder, pool, tmp_path / "d")
    flow = maker.make("run-1")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    assert len(responses) == len(flow.jobs) == 4
    with ResultsStore(settings) as results:
        runs = results.query(ScreeningRunDoc)
        assert len(runs) == 1
        run = runs[0]
        n_candidates = run.n_candidates
        assert run.n_input == 17 and run.removed_by["unreadable"] == 1
        assert run.removed_by["num_sites"] == 1 and run.removed_by["energy_above_hull"] == 1
        assert n_candidates == 14 - run.removed_by["unseen_elements"]
        preds = results.query(PredictionDoc)
        assert len(preds) == run.n_predicted == n_candidates
        assert all(p.dimensionality is not None and p.crystal_system for p in preds)
        assert all(p.band_gap is not None and p.model == "tiny" for p in preds)
        assert results.count("candidates") == n_candidates
    # the prediction stage computed the descriptors (scaling out with its shards), so the
    # ranking stage only ranked; they are those of the descriptors module
    outputs = {
        name: next(iter(responses[ref.uuid].values())).output for name, ref in flow.output.items()
    }
    assert outputs["predictions"].n_descriptors_computed == n_candidates
    assert 0 < outputs["predictions"].descriptor_seconds < outputs["predictions"].seconds
    assert outputs["ranking"].n_descriptors_computed == 0
    with ResultsStore(settings) as results:
        structures = {c.material_id: c.structure for c in results.query(CandidateDoc)}
    expected = descriptors(structures, processes=1)
    for p in preds:
        assert (int(p.dimensionality), p.crystal_system) == (
            expected[p.material_id]["dimensionality"],
            expected[p.material_id]["crystal_system"],
        )
    # predictions stored before the prediction stage computed descriptors get them in ranking
    with ResultsStore(settings) as results:
        results.upsert(
            [
                p.model_copy(update={"dimensionality": None, "crystal_system": None})
                for p in preds[:3]
            ]
        )

    def rank():
        ranked = run_locally(
            rank_candidates(outputs["predictions"], 1, overrides),
            store=build_job_store(settings),
            create_folders=False,
            log=False,
        )
        return next(iter(next(iter(ranked.values())).values())).output

    # found in the descriptor cache by structure hash: nothing computed
    assert rank().n_descriptors_computed == 0
    with ResultsStore(settings) as results:
        assert results.count("descriptors") == n_candidates
        results.upsert(
            [
                p.model_copy(update={"dimensionality": None, "crystal_system": None})
                for p in preds[:3]
            ]
        )
        results.store("descriptors").remove_docs({})  # a store from before the cache
    assert rank().n_descriptors_computed == 3
    with ResultsStore(settings) as results:
        after = {p.material_id: p for p in results.query(PredictionDoc)}
    for p in preds:
        assert (after[p.material_id].dimensionality, after[p.material_id].crystal_system) == (
            p.dimensionality,
            p.crystal_system,
        )
    # a second run reuses every prediction and writes no duplicates
    run_locally(
        maker.make("run-2"), store=build_job_store(settings), create_folders=False, log=False
    )
    with ResultsStore(settings) as results:
        second = [r for r in results.query(ScreeningRunDoc) if r.run_id == "run-2"][0]
        assert second.n_predicted == 0 and second.n_reused == n_candidates
        assert results.count("predictions") == n_candidates


def test_a_cold_screen_writes_each_prediction_once_with_its_descriptors(
    tiny_model, tmp_path, monkeypatch
):
    folder, _ = tiny_model
    data = tmp_path / "d"
    settings = get_settings(data_dir=data)
    written: list[PredictionDoc] = []
    upsert = ResultsStore.upsert

    def recorded(self, docs):
        docs = list(docs)
        written.extend(d for d in docs if isinstance(d, PredictionDoc))
        return upsert(self, docs)

    monkeypatch.setattr(ResultsStore, "upsert", recorded)
    # the candidate stage's idle core starts on the candidates in batches of 4
    monkeypatch.setattr(early_descriptors, "OFFER_BATCH", 4)
    maker = local_maker(folder, small_pool(tmp_path / "pool.json"), data, processes=2)
    flow = maker.make("cold")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    candidates = next(iter(responses[flow.output["candidates"].uuid].values())).output
    predictions = next(iter(responses[flow.output["predictions"].uuid].values())).output
    ids = [d.material_id for d in written]
    assert len(ids) == len(set(ids)) == predictions.n_predicted > 0  # one write each
    assert all(d.crystal_system and d.space_group_number for d in written)
    with ResultsStore(settings) as results:
        structures = {c.material_id: c.structure for c in results.query(CandidateDoc)}
        hashes = {c.structure_hash for c in results.query(CandidateDoc)}
        # each structure's descriptors computed once: while read, or beside the model
        n_computed = candidates.n_descriptors_computed + predictions.n_descriptors_computed
        assert results.count("descriptors") == n_computed == len(hashes)
    expected = descriptors(structures, processes=1)
    for doc in written:
        assert (doc.dimensionality, doc.crystal_system, doc.space_group_number) == (
            expected[doc.material_id]["dimensionality"],
            expected[doc.material_id]["crystal_system"],
            expected[doc.material_id]["space_group_number"],
        )


@pytest.mark.slow
def test_killed_prediction_resumes_without_loss_or_duplicates(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    data = tmp_path / "d"
    script = textwrap.dedent(f"""
        import sys
        from anisoscreen.screening import jobs
        from anisoscreen.candidates.filters import ScreeningCriteria
        from anisoscreen.screening.flows import ScreeningMaker
        from anisoscreen.settings import get_settings
        from anisoscreen.store import build_job_store
        from jobflow import run_locally

        def report(stage, advance, total):
            if stage == "predict":
                print("progress", advance, flush=True)

        jobs.set_progress_reporter(report)
        maker = ScreeningMaker.from_options(source={str(pool)!r}, model={str(folder)!r}, device="cpu", batch_size=1,
                               processes=1, store={{"data_dir": {str(data)!r}}},
                               criteria=ScreeningCriteria(exclude_known_dielectrics=False))
        run_locally(maker.make(), store=build_job_store(get_settings(data_dir={str(data)!r})),
                    create_folders=False, log=False)
    """)
    env = {**os.environ, "ANISOSCREEN_DATA_DIR": str(data)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    lines = 0
    for line in proc.stdout:
        lines += line.startswith("progress")
        if lines == 3:  # the initial report plus two stored batches
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    settings = get_settings(data_dir=data)
    with ResultsStore(settings) as results:
        partial = results.count("predictions")
        expected = results.count("candidates")
    assert 0 < partial < expected
    maker = local_maker(folder, pool, data, batch_size=1)
    run_locally(maker.make(), store=build_job_store(settings), create_folders=False, log=False)
    with ResultsStore(settings) as results:
        run = results.query(ScreeningRunDoc)[0]
        assert run.n_reused == partial and run.n_predicted == expected - partial
        ids = [p.material_id for p in results.query(PredictionDoc)]
        assert len(ids) == len(set(ids)) == expected


@pytest.mark.slow
def test_run_screen_cli_dry_run_and_summary(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    runner = CliRunner()
    dry = runner.invoke(
        app,
        [
            "run-screen",
            "--source",
            str(pool),
            "--model",
            str(folder),
            "--dry-run",
            "--data-dir",
            str(tmp_path / "d"),
        ],
    )
    assert dry.exit_code == 0, dry.output
    assert "removed, not fewer than 40 sites: 1" in dry.output and "nothing written" in dry.output
    assert (
        not (tmp_path / "d" / "store").exists()
        or ResultsStore(get_settings(data_dir=tmp_path / "d")).count("predictions") == 0
    )
    real = runner.invoke(
        app,
        screen_args(folder, pool, tmp_path / "d", "--describe-top", "1", "--include-known"),
    )
    # the pool's deliberately broken record is listed and ends the run with FailedRecordsError
    # (exit status 3 through the console entry point); everything else is stored
    from anisoscreen.errors import FailedRecordsError

    assert isinstance(real.exception, FailedRecordsError), real.output
    assert "mp-broken: invalid structure" in real.output
    assert "top 10 by anisotropy ratio" in real.output and "time per stage" in real.output, (
        real.output
    )
    with ResultsStore(get_settings(data_dir=tmp_path / "d")) as results:
        ranked = sorted(
            results.query(PredictionDoc), key=lambda p: p.anisotropy_ratio, reverse=True
        )
    assert ranked[0].description and ranked[0].formula_pretty[:2] in ranked[0].description
    assert all(p.description is None for p in ranked[1:])
    missing = runner.invoke(
        app, ["run-screen", "--source", str(tmp_path / "nope.json"), "--model", str(folder)]
    )
    assert missing.exit_code != 0


def test_dataset_build_from_recorded_mp_responses(shared_dir, tmp_path):
    """The MP dielectric builder on recorded responses, interrupted once and resumed."""
    from anisoscreen.model.training.dataset import clean_entries, load_entries
    from anisoscreen.model.training.mp_dataset import build_dielectric_dataset

    with gzip.open(shared_dir / "data" / "mp_dielectric_tensors.json.gz", "rt") as handle:
        source = [r for r in json.load(handle) if r["material_id"]][:7]
    dielectric_docs = [
        {
            "material_id": r["material_id"],
            "electronic": r["eps_electronic"],
            "ionic": r["eps_ionic"],
            "total": r["eps_total"],
            "e_electronic": 0.0,
            "n": 0.0,
        }
        for r in source
    ]
    summary_docs = [
        {
            "material_id": r["material_id"],
            "formula_pretty": r["formula"],
            "nsites": r["nsites"],
            "band_gap": r["band_gap"],
            "structure": r["structure"],
            "energy_above_hull": 0.0,
        }
        for r in source
    ]

    class Endpoint(RecordedSearcher):
        def search(self, **kwargs):
            self.calls.append(kwargs)
            if len(self.calls) in self.fail_on:
                raise ConnectionError("502 Bad Gateway")
            docs = [
                d
                for d in self.docs
                if d["material_id"] in kwargs.get("material_ids", [d["material_id"]])
            ]
            return [{k: d[k] for k in kwargs["fields"]} for d in docs]

    out = tmp_path / "mp_dielectric.json.gz"
    with pytest.raises(AnisoscreenError, match="chunk 2/3"):
        build_dielectric_dataset(
            Endpoint(dielectric_docs, fail_on={3}),
            Endpoint(summary_docs),
            out,
            tmp_path / "cache",
            chunk_size=3,
            retry=RetryPolicy(0),
        )
    assert not out.exists()
    dielectric = Endpoint(dielectric_docs)
    assert (
        build_dielectric_dataset(
            dielectric, Endpoint(summary_docs), out, tmp_path / "cache", chunk_size=3
        )
        == 7
    )
    assert len(dielectric.calls) == 2  # the ids and chunk 1 were cached
    entries = load_entries(out)
    by_id = {r["material_id"]: r for r in source}
    for entry in entries:
        assert entry.eps_electronic.tolist() == by_id[entry.material_id]["eps_electronic"]
        assert entry.structure == Structure.from_dict(by_id[entry.material_id]["structure"])
    assert clean_entries(entries)[1].n_input == 7
    result = CliRunner().invoke(app, ["dataset", "build", "--from-mp", "--output", str(out)])
    assert isinstance(result.exception, AnisoscreenError) and "MP_API_KEY" in str(result.exception)


def test_model_training_set_joins_the_known_materials(tiny_model, tmp_path):
    from anisoscreen.screening.jobs import filter_source

    folder, _ = tiny_model
    trained = json.loads((folder / "metrics.json").read_text())["material_ids"]
    docs = recorded_docs()[:3]
    docs[0] = {**docs[0], "material_id": trained[0]}
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(docs))
    criteria, _, result = filter_source(str(pool), ScreeningCriteria(), str(folder))
    assert set(trained) <= set(criteria.extra_known_ids)
    assert trained[0] not in {d.material_id for d in result.kept}


@dataclass
class _ObservedPredictionMaker(PredictionMaker):
    """A user's own prediction stage: the default one under its own name, noting its input."""

    name: str = "my predict"
    seen: list = dataclasses.field(default_factory=list)

    def make(self, candidates):
        self.seen.append(candidates)
        return super().make(candidates)


def test_a_custom_prediction_maker_replaces_the_stage(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    store = {"data_dir": str(tmp_path / "d")}
    custom = _ObservedPredictionMaker(model=str(folder), device="cpu", batch_size=4, store=store)
    maker = ScreeningMaker.from_options(
        prediction_maker=custom,
        source=str(pool),
        model=str(folder),
        processes=1,
        store=store,
        criteria=ScreeningCriteria(exclude_known_dielectrics=False),
    )
    assert maker.prediction_maker is custom and maker.candidate_maker.model == str(folder)
    flow = maker.make("custom")
    assert [job.name for job in flow.jobs][:3] == ["candidates", "my predict", "rank"]
    assert custom.seen == [flow.jobs[0].output]  # wired to the candidate stage's output
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    ranking = responses[flow.jobs[2].uuid][1].output
    with ResultsStore(settings) as results:
        preds = results.query(PredictionDoc)
    assert preds and all(p.model == "tiny" for p in preds)
    assert len(ranking.ranking) == len(preds)
    # a flat option that only the given stage would take is refused, not silently dropped
    with pytest.raises(AnisoscreenError, match="device would be ignored"):
        ScreeningMaker.from_options(prediction_maker=custom, device="cuda")
    with pytest.raises(TypeError, match="unknown screening options: colour"):
        ScreeningMaker.from_options(colour="red")


def test_a_repeat_with_nothing_to_predict_builds_no_networks(tiny_model, tmp_path, monkeypatch):
    """Nothing new to predict: the model set is known from its files, its networks never built."""
    from anisoscreen.model.inference import Predictor
    from anisoscreen.screening.jobs import predict_candidates

    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    overrides = {"data_dir": str(tmp_path / "d")}
    maker = local_maker(folder, pool, tmp_path / "d")
    run_locally(
        maker.make("cold"), store=build_job_store(settings), create_folders=False, log=False
    )
    with ResultsStore(settings) as results:
        ids = sorted(results.keys(PredictionDoc, "material_id"))

    def predict(store_overrides):
        job = predict_candidates(ids, model=str(folder), device="cpu", store=store_overrides)
        responses = run_locally(
            job, store=build_job_store(settings), create_folders=False, log=False
        )
        return responses[job.uuid][1].output

    loaded = Predictor.load(str(folder), settings.data_dir, "cpu")

    def refuse(*args, **kwargs):
        raise AssertionError("a repeat with nothing to predict must not build the networks")

    monkeypatch.setattr(Predictor, "load", classmethod(refuse))
    repeat = predict(overrides)
    assert repeat.n_predicted == 0 and repeat.n_reused == len(ids) > 0
    assert repeat.n_descriptors_computed == 0
    assert repeat.material_ids == ids and repeat.ionic_model is None
    assert (repeat.model, repeat.model_version, repeat.model_checksum, repeat.device) == (
        loaded.model.name,
        loaded.model.version,
        loaded.model.checksum,
        str(loaded.device),
    )
