"""Ranking descriptors: dimensionality and crystal systems, serial and in parallel.

Bond-level agreement with pymatgen is tested in test_bonding.py."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.candidates.sources import load_bundled
from anisoscreen.screening import descriptors as ranking


@pytest.fixture(scope="module")
def sample() -> list[Structure]:
    return [c.structure for c in load_bundled().candidates[:12]]


def test_known_dimensionalities():
    mos2 = Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(3.16, 12.3),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]],
    )
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
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
