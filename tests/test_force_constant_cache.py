"""Gamma force constants cached in the results store: computed once per structure and potential."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.ionic_physics import force_constant_cache
from anisoscreen.ionic_physics.force_constant_cache import (
    FORCE_CONSTANTS_VERSION,
    cached_force_constants,
)
from anisoscreen.ionic_physics.force_constants import gamma_force_constants
from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential
from anisoscreen.schemas import ForceConstantsDoc, structure_hash
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


def rock_salt(a: float = 5.64) -> Structure:
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


class CountingPotential(HarmonicSpringPotential):
    """Springs that count their force evaluations (one per call, a batch of copies each)."""

    def __init__(self, name: str = "counting-springs", spring=1.7) -> None:
        super().__init__(spring, cutoff=3.0)
        self.name, self.calls = name, 0

    def forces(self, structure, positions):
        self.calls += 1
        return super().forces(structure, positions)


@pytest.fixture
def results(tmp_path):
    with ResultsStore(get_settings(data_dir=tmp_path)) as store:
        yield store


def test_force_constants_are_computed_once_and_stored_at_once(results):
    structure, potential = rock_salt(), CountingPotential()
    first, cached = cached_force_constants(structure, potential, results)
    assert not cached and potential.calls == 1
    # stored as soon as computed: one document, keyed by structure hash and potential
    (doc,) = results.query(ForceConstantsDoc)
    assert doc.structure_hash == structure_hash(structure) and doc.potential == potential.name
    assert doc.species == ["Na", "Cl"] and len(doc.frac_coords) == 2
    assert doc.version == FORCE_CONSTANTS_VERSION and doc.n_displacements == first.n_displacements
    again, cached = cached_force_constants(structure, potential, results)
    assert cached and potential.calls == 1
    np.testing.assert_array_equal(again.phi, first.phi)
    np.testing.assert_array_equal(again.residual_forces, first.residual_forces)
    assert again.seconds == first.seconds and again.n_operations == first.n_operations
    # the expected values: the closed-form springs (Phi = 2k per axis for each pair of atoms)
    np.testing.assert_allclose(first.phi[:3, :3], 2 * 1.7 * np.eye(3), atol=1e-8)


def perovskite() -> Structure:
    """A distorted ABO3 cell: five sites, none equivalent by a pure permutation of rows."""
    return Structure(
        Lattice.tetragonal(3.9, 4.1),
        ["Ba", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.52], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]],
    )


def species_springs(zi: int, zj: int, distance: float) -> float:
    return 0.5 + 0.1 * (zi + zj) / 10 + 1.0 / distance


def test_the_same_structure_in_another_site_order_gets_its_own_order(results):
    structure = perovskite()
    potential = CountingPotential(spring=species_springs)
    potential.cutoff = 3.5
    cached_force_constants(structure, potential, results)
    # the same crystal with its sites in another order and one moved by a lattice vector
    order = [3, 0, 4, 2, 1]
    moved = Structure(
        structure.lattice,
        [structure[i].species for i in order],
        [structure[i].frac_coords + (1.0 if i == 4 else 0.0) for i in order],
    )
    found, cached = cached_force_constants(moved, potential, results)
    assert cached and potential.calls == 1
    direct = gamma_force_constants(moved, HarmonicSpringPotential(species_springs, cutoff=3.5))
    assert np.abs(direct.phi).max() > 0.1
    np.testing.assert_allclose(found.phi, direct.phi, atol=1e-8)
    np.testing.assert_allclose(found.residual_forces, direct.residual_forces, atol=1e-8)
    # another cell is another structure
    _, cached = cached_force_constants(rock_salt(5.70), potential, results)
    assert not cached and potential.calls == 2


def test_a_document_without_its_sites_is_not_used(results):
    structure, potential = rock_salt(), CountingPotential()
    cached_force_constants(structure, potential, results)
    (record,) = list(results.records("force_constants"))
    record.pop("_id", None)
    record["species"] = None
    results.upsert_records("force_constants", [record])
    _, cached = cached_force_constants(structure, potential, results)
    assert not cached and potential.calls == 2


def test_another_potential_or_version_computes_again(results, monkeypatch):
    structure = rock_salt()
    springs, stiffer = CountingPotential(), CountingPotential("stiffer-springs", spring=3.0)
    soft, _ = cached_force_constants(structure, springs, results)
    hard, cached = cached_force_constants(structure, stiffer, results)
    assert not cached and stiffer.calls == 1
    np.testing.assert_allclose(hard.phi, soft.phi * 3.0 / 1.7, rtol=1e-6)
    assert len(results.query(ForceConstantsDoc)) == 2
    monkeypatch.setattr(force_constant_cache, "FORCE_CONSTANTS_VERSION", 2)
    _, cached = cached_force_constants(structure, springs, results)
    assert not cached and springs.calls == 2


def test_without_a_store_nothing_is_cached():
    potential = CountingPotential()
    fc, cached = cached_force_constants(rock_salt(), potential, None)
    assert not cached and potential.calls == 1
    expected = gamma_force_constants(rock_salt(), HarmonicSpringPotential(1.7, cutoff=3.0))
    np.testing.assert_allclose(fc.phi, expected.phi)
