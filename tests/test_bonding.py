"""Fast CrystalNN bonds and Larsen dimensionality agree with pymatgen's reference code."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
from pymatgen.analysis.dimensionality import get_dimensionality_larsen
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Structure
from pymatgen.core.local_env import VoronoiNN

from anisoscreen.bonding import FastVoronoiNN, crystalnn_bonds, larsen_dimensionality
from anisoscreen.candidates.sources import load_bundled

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402


def graph_bonds(graph) -> list[tuple]:
    out = []
    for u, v, data in graph.graph.edges(data=True):
        image = tuple(data["to_jimage"])
        out.append((u, v, image) if u <= v else (v, u, tuple(-x for x in image)))
    return sorted(set(out))


def canonical(bonds) -> list[tuple]:
    out = set()
    for i, j, image in bonds:
        out.add((i, j, image) if i <= j else (j, i, tuple(-x for x in image)))
        if i == j:  # a self-bond to an image is the same bond as to the opposite image
            out.add((i, j, tuple(-x for x in image)))
    return sorted(out)


@pytest.fixture(scope="module")
def sample() -> list[Structure]:
    # every 10th bundled structure: a spread of chemistries, symmetries and cell sizes
    return [c.structure for c in load_bundled().candidates[::10]]


def test_fast_voronoi_polyhedra_equal_pymatgen(sample):
    for structure in sample[:8]:
        for n in range(len(structure)):
            reference = VoronoiNN(weight="solid_angle", cutoff=7.0).get_voronoi_polyhedra(
                structure, n
            )
            fast = FastVoronoiNN(weight="solid_angle", cutoff=7.0).get_voronoi_polyhedra(
                structure, n
            )
            # same facets, keyed by the same neighbour index; their order follows qhull's
            # ridge order, which depends on the scipy build and last-bit rounding of inputs
            assert sorted(fast) == sorted(reference)
            for key, stats in reference.items():
                got = fast[key]
                assert got["site"].index == stats["site"].index
                assert got["site"].image == stats["site"].image
                for field in ("solid_angle", "volume", "face_dist", "area"):
                    assert got[field] == pytest.approx(stats[field], rel=1e-9, abs=1e-12)
                assert got["n_verts"] == stats["n_verts"]


def test_bonds_and_dimensionality_equal_pymatgen(sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in sample:
            direct = CrystalNN().get_bonded_structure(structure)
            bonds = crystalnn_bonds(structure)
            assert canonical(bonds) == canonical(graph_bonds(direct)), structure.formula
            assert larsen_dimensionality(len(structure), bonds) == get_dimensionality_larsen(direct)


def test_the_fast_voronoi_is_only_swapped_in_during_the_call(sample):
    import pymatgen.core.local_env as local_env

    crystalnn_bonds(sample[0])
    assert local_env.VoronoiNN is VoronoiNN


def test_larsen_dimensionality_of_hand_made_bond_graphs():
    assert larsen_dimensionality(2, [(0, 1, (0, 0, 0))]) == 0  # a dimer
    assert larsen_dimensionality(1, [(0, 0, (1, 0, 0))]) == 1  # a chain along a
    chain_and_layer = [(0, 0, (0, 0, 1)), (1, 1, (1, 0, 0)), (1, 1, (0, 1, 0))]
    assert larsen_dimensionality(2, chain_and_layer) == 2  # the highest component wins
    # a zig-zag whose cycle only closes through two bonds
    assert larsen_dimensionality(2, [(0, 1, (0, 0, 0)), (1, 0, (0, 1, 0))]) == 1
    framework = [(0, 0, (1, 0, 0)), (0, 0, (0, 1, 0)), (0, 0, (0, 0, 1))]
    assert larsen_dimensionality(1, framework) == 3
    assert larsen_dimensionality(3, []) == 0


def test_layered_and_framework_crystals():
    mos2 = crystals.mos2()
    nacl = crystals.nacl()
    assert larsen_dimensionality(len(mos2), crystalnn_bonds(mos2)) == 2
    assert larsen_dimensionality(len(nacl), crystalnn_bonds(nacl)) == 3


def test_bonds_from_the_crystal_system_dataset_equal_pymatgen(sample):
    """Ranking reuses spglib's 0.1 Å dataset; operations inexact at 0.01 Å must not be used."""
    import numpy as np
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in sample[:12]:
            # a near-symmetric copy: symmetric at 0.1 Å, not at 0.01 Å
            shaken = structure.copy()
            for i, shift in enumerate(rng.normal(0, 0.02, (len(shaken), 3))):
                shaken.translate_sites([i], shift, frac_coords=False, to_unit_cell=False)
            for s in (structure, shaken):
                dataset = SpacegroupAnalyzer(s, symprec=0.1).get_symmetry_dataset()
                direct = CrystalNN().get_bonded_structure(s)
                bonds = crystalnn_bonds(s, dataset=dataset)
                assert canonical(bonds) == canonical(graph_bonds(direct)), s.formula
                assert larsen_dimensionality(len(s), bonds) == get_dimensionality_larsen(direct)


def test_descriptors_use_one_spglib_run_and_match_the_separate_functions(sample, monkeypatch):
    import spglib
    from pymatgen.symmetry.analyzer import _get_symmetry_dataset

    from anisoscreen.screening import descriptors as ranking

    structures = {str(i): s for i, s in enumerate(sample[:6])}
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    separate = {
        k: {
            "dimensionality": ranking.dimensionality(s),
            "crystal_system": ranking.crystal_system(s),
            "space_group_symbol": SpacegroupAnalyzer(s, 0.1).get_space_group_symbol(),
            "space_group_number": SpacegroupAnalyzer(s, 0.1).get_space_group_number(),
        }
        for k, s in structures.items()
    }
    _get_symmetry_dataset.cache_clear()  # pymatgen caches datasets per cell and tolerance
    calls = []
    original = spglib.get_symmetry_dataset
    monkeypatch.setattr(
        spglib, "get_symmetry_dataset", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    assert ranking.descriptors(structures, processes=1) == separate
    assert len(calls) == len(structures)


@pytest.mark.slow
def test_bonds_and_dimensionality_equal_pymatgen_on_200_pool_structures():
    """The shared pool (cells under 40 sites, as screened), 200 structures spread over it."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from anisoscreen.candidates.sources import load_local
    from anisoscreen.settings import get_settings

    pool = get_settings().shared / "data" / "mp_candidates_oxides.json.gz"
    structures = [c.structure for c in load_local(str(pool)).candidates if c.nsites < 40]
    step = len(structures) // 200
    dimensionalities = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in structures[::step][:200]:
            direct = CrystalNN().get_bonded_structure(structure)
            expected = canonical(graph_bonds(direct))
            dimensionality = get_dimensionality_larsen(direct)
            # both ways the screening computes them: own symmetry search, crystal-system dataset
            dataset = SpacegroupAnalyzer(structure, symprec=0.1).get_symmetry_dataset()
            for bonds in (crystalnn_bonds(structure), crystalnn_bonds(structure, dataset=dataset)):
                assert canonical(bonds) == expected, structure.formula
                assert larsen_dimensionality(len(structure), bonds) == dimensionality
            dimensionalities.append(dimensionality)
    assert len(dimensionalities) == 200
    assert len(set(dimensionalities)) >= 3  # the sample spans layered, chain and framework


def test_dual_hull_facets_equal_the_voronoi_cell(sample):
    """CrystalNN's facets from the polar dual's hull are the Voronoi tessellation's."""
    import numpy as np

    from anisoscreen.bonding import (
        _central_cell_facets,
        _dual_hull_facets,
        _sorted_points,
    )

    n_checked = 0
    for structure in sample[:10]:
        for n in range(len(structure)):
            _, cart, dist, _, _ = _sorted_points(
                structure.lattice, structure.frac_coords, structure[n].coords, 7.0
            )
            voronoi = _central_cell_facets(cart, dist, 4.5)
            hull = _dual_hull_facets(cart, dist, 4.5)
            assert hull is not None and not voronoi.unbounded
            # zero-area facets (neighbours touching at an edge or vertex, solid angle ~1e-14
            # to 1e-9 sr from round-off) may be on either side; CrystalNN weighs them as 0
            kept = voronoi.solid_angle > 1e-9
            real = hull.solid_angle > 1e-9
            assert hull.other[real].tolist() == sorted(voronoi.other[kept].tolist())
            order = np.argsort(voronoi.other[kept])
            np.testing.assert_allclose(
                hull.solid_angle[real], voronoi.solid_angle[kept][order], 1e-9, atol=1e-15
            )
            np.testing.assert_allclose(
                hull.volume[real], voronoi.volume[kept][order], 1e-9, atol=1e-15
            )
            n_checked += 1
    assert n_checked > 50
