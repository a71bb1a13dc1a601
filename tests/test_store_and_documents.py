"""Documents round-trip through stores and jobflow; upserts never duplicate; settings precedence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from jobflow import Flow, job, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import (
    CandidateDoc,
    Dimensionality,
    PredictionDoc,
    ScreeningRunDoc,
    ValidationDoc,
    structure_id,
)
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, StoreConfigError, build_job_store, build_store


@pytest.fixture
def aln() -> Structure:
    return Structure(
        Lattice.hexagonal(3.11, 4.98),
        ["Al", "Al", "N", "N"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )


def prediction(material_id="mp-661", model="m1", scale=1.0) -> PredictionDoc:
    return PredictionDoc.from_tensor(
        np.diag([4.372, 4.372, 4.573]) * scale,
        material_id=material_id,
        formula_pretty="AlN",
        model=model,
        model_version="1.0",
        model_checksum="abc",
        dimensionality=Dimensionality.THREE_D,
    )


def test_prediction_derives_scalars():
    doc = prediction()
    assert doc.eigenvalues == pytest.approx([4.372, 4.372, 4.573])
    assert doc.eps_poly == pytest.approx(4.439)
    assert doc.anisotropy_ratio == pytest.approx(4.573 / 4.372)


def test_tensor_fields_are_validated():
    with pytest.raises(ValueError, match="3x3"):
        PredictionDoc(**{**prediction().model_dump(), "dielectric_tensor": [[1, 2], [3, 4]]})


def test_candidate_from_structure_and_stable_id(aln):
    doc = CandidateDoc.from_structure(aln, source="test")
    assert doc.formula_pretty == "AlN" and doc.nsites == 4 and doc.elements == ["Al", "N"]
    shuffled = Structure.from_sites(list(reversed(aln.sites)))
    assert structure_id(shuffled) == doc.material_id
    moved = aln.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert structure_id(moved) != doc.material_id


def test_round_trip_through_memory_store(memory_results, aln):
    cand = CandidateDoc.from_structure(aln, source="test", material_id="mp-661", band_gap=4.1)
    val = ValidationDoc(
        material_id="mp-661",
        formula_pretty="AlN",
        job_uuid="u1",
        epsilon_electronic=np.diag([4.372, 4.372, 4.573]).tolist(),
    )
    run = ScreeningRunDoc(run_id="r1", source="bundled", removed_by={"band_gap": 3})
    assert memory_results.upsert([cand, prediction(), val, run]) == 4
    back = memory_results.query(CandidateDoc)[0]
    assert back.structure == aln and back.band_gap == 4.1
    stored = memory_results.query(PredictionDoc)[0]
    assert stored.model_dump(exclude={"last_updated", "created_at"}) == prediction().model_dump(
        exclude={"last_updated", "created_at"}
    )
    assert stored.dimensionality is Dimensionality.THREE_D
    assert memory_results.query(ValidationDoc)[0].epsilon_electronic[2][2] == 4.573
    assert memory_results.query(ScreeningRunDoc)[0].removed_by == {"band_gap": 3}


def test_upsert_is_keyed_on_material_and_model(memory_results):
    memory_results.upsert([prediction(), prediction(model="m2")])
    memory_results.upsert([prediction(scale=2.0)])  # same (material_id, model): replaced
    assert memory_results.count("predictions") == 2
    docs = {d.model: d for d in memory_results.query(PredictionDoc)}
    assert docs["m1"].eps_poly == pytest.approx(2 * 4.439)
    assert docs["m2"].eps_poly == pytest.approx(4.439)
    assert memory_results.keys(PredictionDoc, "material_id") == {"mp-661"}


def test_embedded_store_persists_between_instances(tmp_path):
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        results.upsert([prediction(), prediction("mp-2")])
    with ResultsStore(settings) as results:
        assert results.counts()["predictions"] == 2
        assert results.location.endswith("(embedded SQLite)")
    assert (tmp_path / "d" / "anisoscreen.sqlite").is_file()


def test_embedded_bulk_upsert_inserts_replaces_and_skips_unchanged(tmp_path, monkeypatch):
    """More documents than one write chunk: new ones inserted, changed ones replaced in place,
    unchanged ones not rewritten, repeated keys within one call resolved to the last."""
    import anisoscreen.store.results as results_module
    from anisoscreen.store.codec import decode
    from anisoscreen.store.sqlite import SQLiteStore

    monkeypatch.setattr(results_module, "WRITE_CHUNK", 40)
    outcomes: list[tuple[int, int, int]] = []
    original = SQLiteStore.upsert_records

    def spy(self, records):
        counts = original(self, records)
        outcomes.append(tuple(counts))
        return counts

    monkeypatch.setattr(SQLiteStore, "upsert_records", spy)
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        assert results.upsert(prediction(f"mp-{i}") for i in range(100)) == 100
        assert outcomes == [(40, 0, 0), (40, 0, 0), (20, 0, 0)]
        store = results.store("predictions")
        rows = "SELECT json_extract(doc, '$.material_id'), id, doc FROM predictions"
        before = {mid: (row_id, doc) for mid, row_id, doc in store._collection.execute(rows)}
        generation = results.revision()

        outcomes.clear()
        results.upsert([prediction(f"mp-{i}") for i in range(100)])  # identical: no rewrite
        assert outcomes == [(0, 0, 40), (0, 0, 40), (0, 0, 20)]
        assert results.revision() == generation  # nothing written, nothing to re-read
        unchanged = {mid: (row_id, doc) for mid, row_id, doc in store._collection.execute(rows)}
        assert unchanged == before  # not even the timestamps were rewritten

        outcomes.clear()
        changed = [prediction(f"mp-{i}", scale=2.0) for i in range(0, 100, 10)]
        results.upsert(changed + [prediction("mp-200"), prediction("mp-200", scale=3.0)])
        assert outcomes == [(1, 10, 0)]
        assert results.revision() == generation + 1
        assert results.count("predictions") == 101
        docs = {d.material_id: d for d in results.query(PredictionDoc)}
        assert docs["mp-10"].eps_poly == pytest.approx(2 * 4.439)
        assert docs["mp-11"].eps_poly == pytest.approx(4.439)
        assert docs["mp-200"].eps_poly == pytest.approx(3 * 4.439)
        stored_first = decode(before["mp-10"][1])
        assert docs["mp-10"].created_at == stored_first["created_at"]  # kept on replace
        assert docs["mp-10"].last_updated > stored_first["last_updated"]
        after = {mid: row_id for mid, row_id, _ in store._collection.execute(rows)}
        assert all(after[k] == v[0] for k, v in before.items())  # replaced in place


def test_embedded_in_queries_match_mongo_semantics(tmp_path, memory_results):
    """The embedded store's set-based $in gives what a Mongo-like store gives."""
    docs = [prediction(f"mp-{i}", model="m1" if i % 3 else "m2") for i in range(30)]
    for i, doc in enumerate(docs):
        doc.elements = ["Al", "N"] if i % 2 else ["Ga", "O"]
    with ResultsStore(get_settings(data_dir=tmp_path / "d")) as embedded:
        embedded.upsert(docs)
        memory_results.upsert(docs)
        queries = [
            {"material_id": {"$in": [f"mp-{i}" for i in range(0, 30, 4)]}, "model": "m1"},
            {"elements": {"$in": ["O", "Xe"]}},  # array field: any element listed
            {"material_id": {"$in": []}},
            {"material_id": {"$in": ["mp-1", "mp-2"]}, "elements": {"$in": ["N"]}},
        ]
        for criteria in queries:
            got = {d.material_id for d in embedded.query(PredictionDoc, criteria)}
            expected = {d.material_id for d in memory_results.query(PredictionDoc, criteria)}
            assert got == expected, criteria
        assert len(embedded.query(PredictionDoc, {"elements": {"$in": ["O"]}}, limit=4)) == 4
        top = embedded.query(
            PredictionDoc,
            {"material_id": {"$in": ["mp-3", "mp-7", "mp-9"]}},
            sort={"material_id": -1},
            limit=2,
        )
        assert [d.material_id for d in top] == ["mp-9", "mp-7"]
        assert embedded.keys(
            PredictionDoc, "material_id", {"material_id": {"$in": ["mp-5", "x"]}}
        ) == {"mp-5"}


def test_interrupted_batch_keeps_earlier_writes(memory_results):
    def docs():
        yield prediction("mp-1")
        yield prediction("mp-2")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        memory_results.upsert(docs())
    assert memory_results.keys(PredictionDoc, "material_id") == {"mp-1", "mp-2"}


def test_killed_writer_never_corrupts_embedded_store(tmp_path):
    """SIGKILL a process mid-way through writing; every stored record stays readable."""
    data = tmp_path / "d"
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from anisoscreen.settings import get_settings
        from anisoscreen.store import ResultsStore
        from anisoscreen.schemas import PredictionDoc
        results = ResultsStore(get_settings(data_dir={str(data)!r}))
        for i in range(100000):
            results.upsert([PredictionDoc.from_tensor(np.eye(3) * (1 + i % 7), material_id=f"mp-{{i}}",
                formula_pretty="X", model="m", model_version="1", model_checksum="c")])
            print("stored", i + 1, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # killed mid-stream, once 20 writes are through
        if int(line.split()[1]) >= 20:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ResultsStore(get_settings(data_dir=data)) as results:
        docs = results.query(PredictionDoc)
        assert len(docs) >= 6
        assert all(d.eps_poly == pytest.approx(1 + int(d.material_id[3:]) % 7) for d in docs)
        results.upsert([prediction("mp-0", model="m")])  # still writable; replaces, no duplicate
        assert results.count("predictions", {"material_id": "mp-0"}) == 1


def test_documents_pass_through_jobflow(aln):
    @job
    def make_candidate(structure):
        return CandidateDoc.from_structure(structure, source="jobflow", material_id="mp-661")

    @job
    def predict_it(candidate):
        assert isinstance(candidate, CandidateDoc)
        return prediction(candidate.material_id)

    first = make_candidate(aln)
    second = predict_it(first.output)
    store = build_job_store(get_settings(store="memory"))
    responses = run_locally(Flow([first, second]), store=store, ensure_success=True)
    out = responses[second.uuid][1].output
    assert isinstance(out, PredictionDoc)
    assert out.anisotropy_ratio == pytest.approx(4.573 / 4.372)
    assert isinstance(responses[first.uuid][1].output.structure, Structure)
    assert "data" in store.additional_stores


def test_store_specs(tmp_path):
    settings = get_settings(store="memory")
    assert isinstance(build_store(settings, "predictions"), MemoryStore)
    uri = build_store(get_settings(store="mongodb://user:pw@db.example:27017"), "predictions")
    assert uri.collection_name == "predictions" and uri.database == "anisoscreen"
    assert "db.example" in uri.name
    spec = tmp_path / "store.yaml"
    spec.write_text(
        "'@module': maggma.stores.mongolike\n'@class': MemoryStore\ncollection_name: x\n"
    )
    from_file = build_store(get_settings(store=str(spec), collection_prefix="run1_"), "validations")
    assert isinstance(from_file, MemoryStore) and from_file.collection_name == "run1_validations"
    with pytest.raises(StoreConfigError, match="unknown store"):
        build_store(get_settings(store="redis://x"), "predictions")
    with pytest.raises(StoreConfigError, match="does not exist"):
        build_store(get_settings(store=str(tmp_path / "missing.yaml")), "predictions")
    assert (
        ResultsStore(get_settings(store="mongodb://user:pw@db.example")).location
        == "mongodb://***@db.example"
    )


def test_settings_precedence(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    monkeypatch.setenv("ANISOSCREEN_CONFIG", str(config))
    config.write_text("store: from-yaml.yaml\nbatch_size: 7\nmodel: yaml-model\n")
    s = get_settings()
    assert (s.store, s.batch_size, s.model) == ("from-yaml.yaml", 7, "yaml-model")
    monkeypatch.setenv("ANISOSCREEN_STORE", "memory")
    monkeypatch.setenv("ANISOSCREEN_BATCH_SIZE", "9")
    s = get_settings()
    assert (s.store, s.batch_size, s.model) == ("memory", 9, "yaml-model")
    s = get_settings(store="embedded", batch_size=None)
    assert (s.store, s.batch_size) == ("embedded", 9)


def test_api_key_is_secret(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", "super-secret-key")
    s = get_settings()
    assert s.mp_api_key.get_secret_value() == "super-secret-key"
    assert "super-secret-key" not in repr(s) and "super-secret-key" not in str(s.describe())


def test_store_errors_are_user_errors():
    assert issubclass(StoreConfigError, AnisoscreenError)
