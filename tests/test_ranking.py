"""Dimensionality (CrystalNN + Larsen, symmetry-accelerated) and crystal systems."""

from __future__ import annotations

import warnings

import pytest
from pymatgen.analysis.dimensionality import get_dimensionality_larsen
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Lattice, Structure

from anisoscreen import ranking
from anisoscreen.candidates.sources import load_bundled


def bonds(graph) -> list[tuple]:
    out = []
    for u, v, data in graph.graph.edges(data=True):
        image = tuple(data["to_jimage"])
        out.append((u, v, image) if u <= v else (v, u, tuple(-x for x in image)))
    return sorted(out)


@pytest.fixture(scope="module")
def sample() -> list[Structure]:
    return [c.structure for c in load_bundled().candidates[:12]]


def test_symmetric_bonding_equals_direct_crystalnn(sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in sample:
            direct = CrystalNN().get_bonded_structure(structure)
            assert bonds(ranking.bonded_structure(structure)) == bonds(direct)
            assert ranking.dimensionality(structure) == get_dimensionality_larsen(direct)


def test_known_dimensionalities():
    mos2 = Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.16, 12.3), ["Mo", "S"], [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]]
    )
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert ranking.dimensionality(mos2) == 2
    assert ranking.dimensionality(nacl) == 3
    assert ranking.crystal_system(mos2) == "hexagonal" and ranking.crystal_system(nacl) == "cubic"


def test_descriptors_parallel_equals_serial(sample):
    structures = {f"s{i}": s for i, s in enumerate(sample[:8])}
    seen = []
    parallel = ranking.descriptors(structures, processes=2, progress=seen.append)
    serial = ranking.descriptors(structures, processes=1)
    assert parallel == serial and sum(seen) == 8
    assert set(parallel["s0"]) == {"dimensionality", "crystal_system"}
