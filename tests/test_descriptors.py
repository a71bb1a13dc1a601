"""Ranking descriptors: dimensionality and crystal systems, serial and in parallel.

Bond-level agreement with pymatgen is tested in test_bonding.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pymatgen.core import Structure

from anisoscreen.candidates.sources import load_bundled
from anisoscreen.screening import descriptors as ranking

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402


@pytest.fixture(scope="module")
def sample() -> list[Structure]:
    return [c.structure for c in load_bundled().candidates[:12]]


def test_known_dimensionalities():
    mos2 = crystals.mos2()
    nacl = crystals.nacl()
    assert ranking.dimensionality(mos2) == 2
    assert ranking.dimensionality(nacl) == 3
    assert ranking.crystal_system(mos2) == "hexagonal" and ranking.crystal_system(nacl) == "cubic"
    assert ranking.descriptors({"nacl": nacl}, processes=1)["nacl"]["space_group_symbol"] == "Fm-3m"
    assert ranking.descriptors({"nacl": nacl}, processes=1)["nacl"]["space_group_number"] == 225


def test_descriptors_parallel_equals_serial(sample):
    structures = {f"s{i}": s for i, s in enumerate(sample[:8])}
    seen = []
    parallel = ranking.descriptors(structures, processes=2, progress=seen.append)
    serial = ranking.descriptors(structures, processes=1)
    assert parallel == serial and sum(seen) == 8
    assert set(parallel["s0"]) == {
        "dimensionality",
        "crystal_system",
        "space_group_symbol",
        "space_group_number",
    }


def test_descriptor_jobs_run_in_workers_and_answer_in_any_order(sample):
    structures = {f"s{i}": s for i, s in enumerate(sample[:10])}
    serial = ranking.descriptors(structures, processes=1)
    with ranking.DescriptorJobs(structures, processes=2) as jobs:
        assert len(jobs) == 10 and "s9" in jobs and "other" not in jobs
        answers = {key: jobs.result(key) for key in reversed(list(structures))}
        assert all(jobs.done(key) for key in structures)
    assert answers == serial
    # fewer than MIN_PARALLEL structures: computed here, when asked, with the same values
    few = dict(list(structures.items())[: ranking.MIN_PARALLEL - 1])
    with ranking.DescriptorJobs(few, processes=2) as jobs:
        assert all(jobs.done(key) for key in few)
        assert {key: jobs.result(key) for key in few} == {key: serial[key] for key in few}
