"""A screen's work outside the network: structures parsed once, descriptors cached by hash."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from anisoscreen.candidates import parsed
from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.candidates.sources import load_bundled
from anisoscreen.schemas import CandidateDoc, PredictionDoc, structure_hash
from anisoscreen.screening import descriptors
from anisoscreen.screening.jobs import (
    _add_descriptors,
    _candidate_records,
    _PendingDescriptors,
    fetch_candidates,
)
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


@pytest.fixture(scope="module")
def pool() -> list[CandidateDoc]:
    """Six small cells of the bundled pool (real MP structures)."""
    return [c for c in load_bundled().candidates if c.nsites <= 8][:6]


@pytest.fixture(autouse=True)
def _fresh_parsed():
    parsed.clear()
    yield
    parsed.clear()


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """Counts every descriptor computation (in-process: ``processes=1``)."""
    calls: list[int] = []
    original = descriptors._descriptors_of

    def counted(structure):
        calls.append(1)
        return original(structure)

    monkeypatch.setattr(descriptors, "_descriptors_of", counted)
    return calls


def prediction(candidate: CandidateDoc, model: str) -> PredictionDoc:
    """A stored prediction of ``candidate`` by ``model`` (a fixed, real tensor)."""
    return PredictionDoc.from_tensor(
        np.diag([2.0, 3.0, 4.0]),
        material_id=candidate.material_id,
        formula_pretty=candidate.formula_pretty,
        model=model,
        model_version="1",
        model_checksum=model * 8,
    )


def test_structure_hash_ignores_site_order_wrapping_and_noise_but_not_changes(pool):
    structure = pool[0].structure
    reference = structure_hash(structure)
    order = list(range(len(structure)))[::-1]
    permuted = Structure.from_sites([structure[i] for i in order])
    assert structure_hash(permuted) == reference
    shifted = structure.copy()
    shifted.translate_sites([0], [1.0, -1.0, 2.0], frac_coords=True, to_unit_cell=False)
    assert structure_hash(shifted) == reference
    noisy = Structure(
        structure.lattice.matrix + 1e-7,
        structure.species,
        structure.frac_coords + 1e-7,
    )
    assert structure_hash(noisy) == reference
    moved = structure.copy()
    moved.translate_sites([0], [0.01, 0.0, 0.0], frac_coords=True)
    strained = structure.copy()
    strained.scale_lattice(structure.volume * 1.01)
    swapped = structure.copy()
    swapped.replace(0, "Na" if structure[0].species_string != "Na" else "K")
    hashes = {structure_hash(s) for s in (moved, strained, swapped)}
    assert reference not in hashes and len(hashes) == 3
    # a site at fractional coordinate 1 - 1e-9 is the site at 0
    edge = Structure(structure.lattice, ["Si"], [[1 - 1e-9, 0.5, 0.25]])
    assert structure_hash(edge) == structure_hash(
        Structure(structure.lattice, ["Si"], [[0.0, 0.5, 0.25]])
    )


def test_descriptors_are_computed_once_per_structure_and_reused(pool, memory_results, computed):
    results = memory_results
    ids = [c.material_id for c in pool]
    results.upsert(pool)
    results.upsert(prediction(c, "m1") for c in pool)
    known, n = _add_descriptors(results, ids, "m1", processes=1, total=None)
    assert n == len(computed) == len(pool) and set(known) == set(ids)
    expected = descriptors.descriptors({c.material_id: c.structure for c in pool}, processes=1)
    stored = {p.material_id: p for p in results.query(PredictionDoc, {"model": "m1"})}
    for material_id, values in expected.items():
        assert stored[material_id].crystal_system == values["crystal_system"]
        assert stored[material_id].space_group_number == values["space_group_number"]
        assert stored[material_id].dimensionality == values["dimensionality"]
    assert results.count("descriptors") == len(pool)
    computed.clear()

    # a repeat computes nothing, and rewrites nothing
    before = {p.material_id: p.last_updated for p in results.query(PredictionDoc)}
    assert _add_descriptors(results, ids, "m1", processes=1, total=None)[1] == 0
    assert {p.material_id: p.last_updated for p in results.query(PredictionDoc)} == before

    # a second model on the same structures: nothing computed, its predictions filled in
    results.upsert(prediction(c, "m2") for c in pool)
    assert _add_descriptors(results, ids, "m2", processes=1, total=None)[1] == 0
    m2 = {p.material_id: p for p in results.query(PredictionDoc, {"model": "m2"})}
    assert all(m2[i].crystal_system == stored[i].crystal_system for i in ids)

    # the same structure under another id (with its sites reordered): found by its hash
    twin = pool[0].structure
    twin = Structure.from_sites(list(twin)[::-1])
    copy = CandidateDoc.from_structure(twin, source="local", material_id="twin-1")
    results.upsert([copy])
    results.upsert([prediction(copy, "m1")])
    assert _add_descriptors(results, ["twin-1"], "m1", processes=1, total=None)[1] == 0
    assert computed == []
    twin_doc = results.query(PredictionDoc, {"material_id": "twin-1"})[0]
    assert twin_doc.space_group_number == stored[ids[0]].space_group_number

    # a changed structure under a known id is computed again, once
    changed = pool[1].structure.copy()
    changed.scale_lattice(changed.volume * 1.2)
    new = CandidateDoc.from_structure(changed, source="local", material_id="fresh-1")
    results.upsert([new])
    results.upsert([prediction(new, "m1")])
    assert _add_descriptors(results, ["fresh-1"], "m1", processes=1, total=None)[1] == 1
    assert len(computed) == 1 and results.count("descriptors") == len(pool) + 1


def test_a_cache_of_another_descriptor_version_is_not_used(
    pool, memory_results, computed, monkeypatch
):
    results = memory_results
    ids = [c.material_id for c in pool[:2]]
    results.upsert(pool[:2])
    results.upsert(prediction(c, "m1") for c in pool[:2])
    _add_descriptors(results, ids, "m1", processes=1, total=None)
    results.upsert(prediction(c, "m2") for c in pool[:2])
    # m1's predictions hold the descriptors: clear them so only the cache could answer
    results.upsert(
        p.model_copy(update={"crystal_system": None, "space_group_number": None})
        for p in results.query(PredictionDoc, {"model": "m1"})
    )
    computed.clear()
    from anisoscreen.screening import descriptor_cache

    monkeypatch.setattr(descriptor_cache, "DESCRIPTOR_VERSION", descriptors.DESCRIPTOR_VERSION + 1)
    assert _add_descriptors(results, ids, "m2", processes=1, total=None)[1] == 2


def test_new_predictions_get_their_descriptors_before_their_first_write(
    pool, memory_results, computed
):
    results = memory_results
    ids = [c.material_id for c in pool]
    results.upsert(pool)
    expected = descriptors.descriptors({c.material_id: c.structure for c in pool}, processes=1)
    # m1 predicted the first two (their descriptors are stored on m1's predictions)
    results.upsert(prediction(c, "m1") for c in pool[:2])
    _add_descriptors(results, ids[:2], "m1", processes=1, total=None)
    # m2's older prediction of the third material holds other descriptors: it is being
    # replaced, so they are not reused
    older = {"crystal_system": "cubic", "space_group_number": 225, "dimensionality": 0}
    assert expected[ids[2]]["space_group_number"] != 225
    results.upsert([prediction(pool[2], "m2").model_copy(update=older)])
    computed.clear()
    with _PendingDescriptors.start(results, ids, "m2", processes=1) as pending:
        assert set(pending.known) == set(ids[:2]) and computed == []  # started, not computed
        docs, cache_docs = pending.attach([prediction(c, "m2") for c in pool])
    assert [d.material_id for d in docs] == ids
    for doc in docs:
        values = expected[doc.material_id]
        assert doc.crystal_system == values["crystal_system"]
        assert doc.space_group_symbol == values["space_group_symbol"]
        assert doc.space_group_number == values["space_group_number"]
        assert doc.dimensionality == values["dimensionality"]
    # the other four were computed once each, and their cache documents come with them
    assert pending.n_computed == len(computed) == len(pool) - 2
    assert sorted(d.structure_hash for d in cache_docs) == sorted(
        c.structure_hash for c in pool[2:]
    )
    # written with the predictions, nothing is left for the post pass to compute or rewrite
    results.upsert([*cache_docs, *docs])
    before = {p.material_id: p.last_updated for p in results.query(PredictionDoc, {"model": "m2"})}
    assert _add_descriptors(results, ids, "m2", processes=1, total=None)[1] == 0
    after = {p.material_id: p.last_updated for p in results.query(PredictionDoc, {"model": "m2"})}
    assert after == before


def test_the_prediction_stage_reads_parsed_structures_not_the_store(pool, tmp_path, monkeypatch):
    import json

    source = tmp_path / "pool.json"
    source.write_text(
        json.dumps(
            [{"material_id": c.material_id, "structure": c.structure.as_dict()} for c in pool[:4]]
        )
    )
    settings = get_settings(data_dir=tmp_path / "d")
    overrides = {"data_dir": str(tmp_path / "d")}
    criteria = ScreeningCriteria(exclude_known_dielectrics=False)
    output = fetch_candidates.original(str(source), criteria, None, overrides)
    ids = output.material_ids
    assert len(ids) == 4

    decoded: list[int] = []
    original = Structure.from_dict.__func__  # type: ignore[attr-defined]

    def counted(cls, *args, **kwargs):
        decoded.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Structure, "from_dict", classmethod(counted))
    with ResultsStore(settings) as results:
        records = list(_candidate_records(results, ids))
        assert decoded == [] and parsed.counts().hits == 4
        assert [r.material_id for r in records] == ids  # the order of the candidate stage
        by_id = {c.material_id: c.structure for c in pool}
        assert all(r.structure == by_id[r.material_id] for r in records)
        assert all(r.fields.keys() == {"energy_above_hull", "band_gap"} for r in records)

        # a candidate changed in the store meanwhile is read from the store, not the parse
        changed = pool[0].structure.copy()
        changed.scale_lattice(changed.volume * 1.1)
        results.upsert([CandidateDoc.from_structure(changed, source="other", material_id=ids[0])])
        records = {r.material_id: r for r in _candidate_records(results, ids)}
        assert len(decoded) == 1 and records[ids[0]].structure == changed
        assert records[ids[0]].source == "other"


def test_filters_on_arrays_agree_with_the_per_candidate_tests():
    from anisoscreen.candidates.filters import CandidateFields, _criteria, filter_fields

    docs = load_bundled().candidates
    docs[0] = docs[0].model_copy(update={"energy_above_hull": None, "band_gap": None})
    for settings in (
        ScreeningCriteria(),
        ScreeningCriteria(exclude_known_dielectrics=False, max_sites=12, min_band_gap=2.0),
        ScreeningCriteria(model_elements=["O", "Mg", "Si", "Al", "Ca", "Na", "K", "Li", "Zn"]),
    ):
        kept, removed, _ = filter_fields(CandidateFields.of(docs), settings)
        expected_removed = {c.name: 0 for c in _criteria(settings)}
        expected_kept = []
        for i, doc in enumerate(docs):
            failed = next((c for c in _criteria(settings) if not c.keep(doc)), None)
            if failed is None:
                expected_kept.append(i)
            else:
                expected_removed[failed.name] += 1
        assert kept.tolist() == expected_kept and removed == expected_removed
        assert 0 < len(kept) < len(docs)


def test_a_repeated_candidate_stage_reads_the_source_cache_and_parses_nothing(
    tmp_path, monkeypatch
):
    import gzip
    import json

    from anisoscreen import structure_checks

    docs = json.loads(
        gzip.decompress(
            __import__("importlib")
            .resources.files("anisoscreen.data")
            .joinpath("bundled_candidates.json.gz")
            .read_bytes()
        )
    )[:40]
    docs.append({"material_id": "mp-broken", "structure": {"lattice": "nonsense"}})
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(docs))
    overrides = {"data_dir": str(tmp_path / "d")}
    criteria = ScreeningCriteria(exclude_known_dielectrics=False)
    cold = fetch_candidates.original(str(source), criteria, None, overrides)
    assert cold.n_input == 41 and cold.removed_by["unreadable"] == 1
    assert len(list((tmp_path / "d" / "cache" / "sources").glob("*.json"))) == 1

    parsed.clear()
    with ResultsStore(get_settings(**overrides)) as results:
        before = {c.material_id: c.last_updated for c in results.query(CandidateDoc)}
    work: list[str] = []
    monkeypatch.setattr(
        Structure, "from_dict", classmethod(lambda cls, *a, **k: work.append("parse"))
    )
    monkeypatch.setattr(structure_checks, "check_structure", lambda *a, **k: work.append("check"))
    repeat = fetch_candidates.original(str(source), criteria, None, overrides)
    assert work == []
    # the cold stage's idle cores described what they could; the repeat reads no structure
    assert repeat.n_descriptors_computed == 0
    same = {"seconds", "n_descriptors_computed"}
    assert repeat.model_dump(exclude=same) == cold.model_dump(exclude=same)
    monkeypatch.undo()
    with ResultsStore(get_settings(**overrides)) as results:
        after = {c.material_id: c.last_updated for c in results.query(CandidateDoc)}
    assert after == before  # unchanged candidates are not rewritten

    # the structures of the cached candidates are parsed when a stage asks for them
    first = repeat.material_ids[0]
    with ResultsStore(get_settings(**overrides)) as results:
        stored = results.query(CandidateDoc, {"material_id": first})[0]
    assert parsed.structure_of(first, stored.structure_hash) == stored.structure

    # an edited file is read again
    source.write_text(json.dumps(docs[:10]))
    edited = fetch_candidates.original(str(source), criteria, None, overrides)
    assert edited.n_input == 10


def test_the_source_cache_keeps_the_most_recently_used_sources(tmp_path):
    import json
    import os

    from anisoscreen.candidates import source_cache
    from anisoscreen.candidates.sources import CandidateBatch

    cache = tmp_path / "cache"
    sources = []
    for k in range(4):
        path = tmp_path / f"pool-{k}.json"
        path.write_text(json.dumps([{"material_id": f"mp-{k}"}]))
        sources.append(str(path))

    def read(k: int, max_files: int = 3) -> source_cache.CandidateTable:
        table = source_cache.candidate_table(sources[k], cache, lambda: CandidateBatch([], []))
        source_cache.prune(cache, max_files=max_files)
        return table

    for k in range(3):
        assert not read(k).cached
        key = source_cache.source_key(sources[k])
        os.utime(cache / f"{key}.json", (1000.0 + k, 1000.0 + k))  # written in this order
    assert read(0).cached  # a hit marks pool 0 as the most recently used
    read(3)  # a fourth source: the least recently used (pool 1) goes
    kept = {p.stem for p in cache.glob("*.json")}
    assert kept == {source_cache.source_key(sources[k]) for k in (0, 2, 3)}
    # the byte bound keeps the most recently used file whatever its size
    removed = source_cache.prune(cache, max_bytes=1)
    assert len(removed) == 2 and len(list(cache.glob("*.json"))) == 1
