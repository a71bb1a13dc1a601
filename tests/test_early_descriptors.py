"""Descriptors computed while the candidates are read: what is handed over, and what is cached."""

from __future__ import annotations

import time

import pytest

from anisoscreen.candidates.filters import CandidateFields, ScreeningCriteria, filter_fields
from anisoscreen.candidates.sources import load_bundled, load_local, watching_candidates
from anisoscreen.schemas import CandidateDoc
from anisoscreen.screening import descriptor_cache, early_descriptors
from anisoscreen.screening import descriptors as ranking
from anisoscreen.screening.early_descriptors import EarlyDescriptors, idle_cores
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


@pytest.fixture(scope="module")
def bundled() -> list[CandidateDoc]:
    return load_bundled().candidates[:12]


def _wait_for(jobs: ranking.DescriptorJobs, n: int, timeout: float = 120.0) -> None:
    """Until the workers of ``jobs`` have finished ``n`` structures."""
    deadline = time.monotonic() + timeout
    while len(jobs.finished()) < n:
        assert time.monotonic() < deadline, "the descriptor workers did not finish"
        time.sleep(0.05)


def test_idle_cores_leave_one_for_the_reader_and_no_more_than_it_feeds():
    assert idle_cores(3) == 2 and idle_cores(1) == 0
    assert idle_cores(64) == early_descriptors.MAX_WORKERS == 3
    assert 0 <= idle_cores(None) <= 3


def test_descriptor_jobs_take_more_structures_and_report_those_finished(bundled):
    structures = {doc.structure_hash: doc.structure for doc in bundled[:5]}
    serial = ranking.descriptors(structures, processes=1)
    keys = list(structures)
    with ranking.DescriptorJobs({}, processes=1, chunk=2, background=True) as jobs:
        assert len(jobs) == 0 and jobs.finished() == {}
        jobs.add({k: structures[k] for k in keys[:3]})
        jobs.add({k: structures[k] for k in keys[1:]})  # keys 1-2 again: not computed twice
        assert len(jobs) == 5
        _wait_for(jobs, 5)
        assert jobs.finished() == serial
        assert {k: jobs.result(k) for k in keys} == serial


def test_only_the_candidates_that_pass_and_are_not_cached_go_to_the_workers(
    bundled, tmp_path, monkeypatch
):
    monkeypatch.setattr(early_descriptors, "OFFER_BATCH", 4)
    criteria = ScreeningCriteria(max_sites=12, exclude_known_dielectrics=False)
    kept, _, _ = filter_fields(CandidateFields.of(bundled), criteria)
    passing = [bundled[i] for i in kept]
    assert 2 < len(passing) < len(bundled)  # the criterion removes some, keeps some
    structures = {doc.structure_hash: doc.structure for doc in bundled}
    serial = ranking.descriptors(structures, processes=1)
    cached = str(passing[0].structure_hash)
    handed: list[str] = []
    started: list[ranking.DescriptorJobs] = []
    add = ranking.DescriptorJobs.add

    def recorded(self, given):
        handed.extend(given)
        if self not in started:
            started.append(self)
        return add(self, given)

    monkeypatch.setattr(ranking.DescriptorJobs, "add", recorded)
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        results.upsert([descriptor_cache.as_doc(cached, serial[cached])])
        with EarlyDescriptors(results, criteria, workers=1) as early:
            for doc in bundled[:-1]:  # 11 offered: two batches of 4 go, the last 3 wait
                early.offer(doc)
            first_eight = {str(d.structure_hash) for d in bundled[:8]}
            expected = [
                str(d.structure_hash)
                for d in passing
                if d.structure_hash in first_eight and d.structure_hash != cached
            ]
            assert handed == expected
            _wait_for(started[0], len(expected))
            assert early.store() == len(expected)
        stored = descriptor_cache.lookup(results, structures)
    assert set(stored) == {cached, *expected}
    for key in stored:
        assert stored[key] == descriptor_cache.descriptor_values(serial[key])


def test_no_worker_starts_without_an_idle_core_or_a_full_batch(bundled, tmp_path):
    settings = get_settings(data_dir=tmp_path / "d")
    criteria = ScreeningCriteria(exclude_known_dielectrics=False)
    with ResultsStore(settings) as results:
        with EarlyDescriptors(results, criteria, workers=0) as early:
            for doc in bundled:
                early.offer(doc)
            assert early.store() == 0
        with EarlyDescriptors(results, criteria, workers=1) as early:
            for doc in bundled[: early_descriptors.OFFER_BATCH - 1]:
                early.offer(doc)
            assert early.store() == 0
        assert results.count("descriptors") == 0


def test_a_watcher_sees_each_candidate_read_in_its_block_only(tmp_path):
    seen: list[str] = []
    pool = load_bundled()
    source = tmp_path / "pool.json"
    source.write_text(
        "["
        + ",".join(
            f'{{"material_id": "{d.material_id}", "structure": {d.structure.to_json()}}}'
            for d in pool.candidates[:3]
        )
        + ', {"material_id": "broken", "structure": {"lattice": "nonsense"}}]'
    )
    with watching_candidates(lambda doc: seen.append(doc.material_id)):
        batch = load_local(source)
    assert seen == [d.material_id for d in batch.candidates] and len(seen) == 3
    load_local(source)
    assert len(seen) == 3
