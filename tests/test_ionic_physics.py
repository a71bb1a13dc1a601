"""The physics route of the ionic tensor: units against closed forms, sum rules, symmetry, flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.ionic_physics.force_constants import atom_permutations, gamma_force_constants
from anisoscreen.ionic_physics.formula import (
    E2_EV_ANGSTROM,
    EPS0_PREFACTOR,
    EV_A2_AMU_TO_THZ,
    THZ_TO_CM1,
    eps_ionic,
    eps_ionic_from_modes,
    gamma_modes,
    impose_born_asr,
    impose_force_constant_asr,
)
from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential
from anisoscreen.ionic_physics.route import (
    blend_ionic,
    ensemble_spread,
    physics_ionic,
    physics_spread,
    spread_share,
)


def rock_salt(a: float = 5.64, species: tuple[str, str] = ("Na", "Cl")) -> Structure:
    """Two-atom primitive rock-salt cell (nearest neighbours at a/2, next at a/sqrt 2)."""
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_constants_are_the_codata_values():
    # e^2/(4 pi eps0) in eV A; sqrt(eV/(A^2 amu))/(2 pi) in THz (phonopy VaspToTHz 15.633302)
    assert E2_EV_ANGSTROM == pytest.approx(14.3996454784, abs=1e-8)
    assert EPS0_PREFACTOR == pytest.approx(4 * math.pi * 14.3996454784, rel=1e-10)
    assert EV_A2_AMU_TO_THZ == pytest.approx(15.633302, abs=5e-6)  # CODATA 2018: ...3042
    assert THZ_TO_CM1 == pytest.approx(33.35641, abs=1e-5)


def test_diatomic_rigid_ion_closed_form():
    """Hand-built Phi of a diatomic crystal: eps0 = 4 pi e^2 Z^2 / (V mu omega^2)."""
    z, k, volume = 1.3, 2.5, 40.0
    masses = np.array([22.99, 35.45])
    mu = masses.prod() / masses.sum()
    phi = np.zeros((6, 6))
    for a in range(3):
        phi[a, a] = phi[3 + a, 3 + a] = k
        phi[a, 3 + a] = phi[3 + a, a] = -k
    born = np.stack([z * np.eye(3), -z * np.eye(3)])
    omega2 = k / mu
    expected = 4 * math.pi * E2_EV_ANGSTROM * z**2 / (volume * mu * omega2)
    assert expected == pytest.approx(4 * math.pi * E2_EV_ANGSTROM * z**2 / (volume * k))
    np.testing.assert_allclose(eps_ionic(born, phi, volume), expected * np.eye(3), rtol=1e-10)
    modes = gamma_modes(phi, masses, born)
    np.testing.assert_allclose(modes.omega2, [omega2] * 3, rtol=1e-10)
    np.testing.assert_allclose(
        modes.frequencies_thz, [math.sqrt(omega2) * EV_A2_AMU_TO_THZ] * 3, rtol=1e-10
    )
    np.testing.assert_allclose(
        eps_ionic_from_modes(modes, volume), expected * np.eye(3), rtol=1e-10, atol=1e-14
    )


def test_rock_salt_springs_match_the_closed_form():
    """Nearest-neighbour springs k in rock salt: Phi = 2k per axis, eps0 = 4 pi e^2 Z^2/(2kV)."""
    k, z = 1.7, 1.1
    structure = rock_salt()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(k, cutoff=3.0))
    block = np.array([[2 * k, -2 * k], [-2 * k, 2 * k]])
    np.testing.assert_allclose(fc.phi, np.kron(block, np.eye(3)), atol=1e-10)
    assert fc.n_displacements == 6 * 2  # both atoms inequivalent, 6 displacements each
    assert fc.max_residual_force < 1e-12
    born = np.stack([z * np.eye(3), -z * np.eye(3)])
    result = physics_ionic(structure, born, fc)
    expected = 4 * math.pi * E2_EV_ANGSTROM * z**2 / (structure.volume * 2 * k)
    np.testing.assert_allclose(result.eps_ionic, expected * np.eye(3), rtol=1e-10, atol=1e-14)
    masses = np.array([s.specie.atomic_mass for s in structure], dtype=float)
    mu = masses.prod() / masses.sum()
    nu = math.sqrt(2 * k / mu) * EV_A2_AMU_TO_THZ
    np.testing.assert_allclose(result.modes.frequencies_thz, [nu] * 3, rtol=1e-10)
    assert result.flags == []
    assert result.contributions.sum() == pytest.approx(expected, rel=1e-10)


def test_the_physics_spread_over_charge_members_follows_z_squared():
    """Members' charges Z (1 +- d): eps0 goes as Z^2, so its two values differ by 4 d eps0."""
    k, z, d = 1.7, 1.1, 0.05
    structure = rock_salt()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(k, cutoff=3.0))
    born = np.stack([z * np.eye(3), -z * np.eye(3)])
    eps0 = 4 * math.pi * E2_EV_ANGSTROM * z**2 / (structure.volume * 2 * k)
    members = np.stack([(1 + d) * born, (1 - d) * born])
    # std (ddof 1) of two values is their difference over sqrt 2; RMS over xx, yy, zz and
    # three zero off-diagonals is that times sqrt(1/2)
    expected = 4 * d * eps0 / math.sqrt(2) * math.sqrt(0.5)
    physics = physics_ionic(structure, born, fc)
    assert physics_spread(structure, physics, members) == pytest.approx(expected, rel=1e-10)
    same = np.stack([born, born])
    assert physics_spread(structure, physics, same) == pytest.approx(0, abs=1e-12)


def test_spread_weighted_blend_is_inverse_variance():
    std = np.diag([1.0, 2.0, 2.0])
    assert ensemble_spread(std) == pytest.approx(math.sqrt(9 / 6))
    shear = np.zeros((3, 3))
    shear[0, 1] = shear[1, 0] = 3.0  # a symmetric component counts once of six
    assert ensemble_spread(shear) == pytest.approx(math.sqrt(9 / 6))
    np.testing.assert_allclose(ensemble_spread(np.stack([std, shear])), [1.5**0.5] * 2)
    # share s_d^2 / (s_d^2 + c s_p^2); a certain direct value keeps the direct value
    assert spread_share(2.0, 1.0, 4.0) == pytest.approx(0.5)
    assert spread_share(2.0, 0.0, 4.0) == pytest.approx(1.0)
    assert spread_share(0.0, 0.0, 4.0) == 0.0
    np.testing.assert_allclose(spread_share(np.array([1.0, 3.0]), 1.0, 1.0), [0.5, 0.9])
    direct, physics = np.eye(3) * 4.0, np.eye(3) * 10.0
    value, method = blend_ionic(direct, physics, 0.9, None, 0.25)
    np.testing.assert_allclose(value, 0.25 * 0.9 * physics + 0.75 * direct)
    assert method == "blend"
    # without a physics value the share does not matter
    assert blend_ionic(direct, None, 0.9, None, 0.25)[1] == "direct"


def perovskite_distorted() -> Structure:
    """A strained, off-centred ABO3 cell (tetragonal, 5 atoms, two O orbits)."""
    lattice = Lattice.tetragonal(3.9, 4.1)
    return Structure(
        lattice,
        ["Ba", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.52], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]],
    )


def species_springs(zi: int, zj: int, distance: float) -> float:
    return 0.5 + 0.1 * (zi + zj) / 10 + 1.0 / distance


def test_symmetry_reduced_displacements_equal_the_full_set():
    structure = perovskite_distorted()
    potential = HarmonicSpringPotential(species_springs, cutoff=3.5)
    reduced = gamma_force_constants(structure, potential)
    full = gamma_force_constants(structure, potential, use_symmetry=False)
    assert reduced.n_displacements == 6 * 4  # Ba, Ti, apical O, the two equatorial O as one
    assert full.n_displacements == 6 * 5
    assert len(atom_permutations(structure)) == 8  # 4mm
    np.testing.assert_allclose(reduced.phi, full.phi, atol=1e-10)
    # sum rule and symmetry
    np.testing.assert_allclose(reduced.phi, reduced.phi.T, atol=1e-12)
    np.testing.assert_allclose(reduced.phi.reshape(5, 3, 5, 3).sum(axis=2), 0, atol=1e-10)


def test_eps0_rotates_with_the_crystal():
    structure = perovskite_distorted()
    potential = HarmonicSpringPotential(species_springs, cutoff=3.5)
    rng = np.random.default_rng(1)
    born = impose_born_asr(rng.normal(size=(5, 3, 3)) + np.eye(3))
    eps = physics_ionic(structure, born, gamma_force_constants(structure, potential)).eps_ionic
    angle = 0.7
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    rotated = Structure(
        Lattice(structure.lattice.matrix @ rotation.T),
        structure.species,
        structure.frac_coords,
    )
    born_rotated = np.einsum("ac,icd,bd->iab", rotation, born, rotation)
    fc = gamma_force_constants(rotated, potential)
    eps_rotated = physics_ionic(rotated, born_rotated, fc).eps_ionic
    np.testing.assert_allclose(eps_rotated, rotation @ eps @ rotation.T, atol=1e-9)
    assert np.all(np.linalg.eigvalsh(eps) > 0)


def test_phi_inverse_and_mode_sum_agree_for_sum_rule_charges():
    structure = perovskite_distorted()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(species_springs, cutoff=3.5))
    born = impose_born_asr(np.random.default_rng(2).normal(size=(5, 3, 3)))
    masses = np.array([s.specie.atomic_mass for s in structure], dtype=float)
    modes = gamma_modes(fc.phi, masses, born)
    assert len(modes.omega2) == 12 and np.all(modes.omega2 > 0)
    np.testing.assert_allclose(
        eps_ionic_from_modes(modes, structure.volume),
        eps_ionic(born, fc.phi, structure.volume),
        rtol=1e-9,
        atol=1e-12,
    )


def test_sum_rules_are_imposed():
    rng = np.random.default_rng(3)
    born = impose_born_asr(rng.normal(size=(4, 3, 3)))
    np.testing.assert_allclose(born.sum(axis=0), 0, atol=1e-12)
    phi = rng.normal(size=(12, 12))
    fixed = impose_force_constant_asr(0.5 * (phi + phi.T))
    np.testing.assert_allclose(fixed.reshape(4, 3, 4, 3).sum(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(fixed, fixed.T, atol=1e-12)


def test_a_soft_mode_is_flagged_and_left_out():
    """A nearly free sublattice: the soft mode would give eps0 ~ 1e4; it is flagged instead."""
    k_soft = 1e-4
    structure = rock_salt()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(k_soft, cutoff=3.0))
    born = np.stack([np.eye(3), -np.eye(3)])
    result = physics_ionic(structure, born, fc, min_frequency_thz=1.0)
    assert "soft_modes" in result.flags and "imaginary_modes" not in result.flags
    assert not result.included.any()
    np.testing.assert_allclose(result.eps_ionic, 0)
    unflagged = eps_ionic(born, fc.phi, structure.volume)
    assert unflagged[0, 0] > 1e3  # what the formula alone would have said


def test_a_soft_non_polar_mode_is_left_out_without_a_flag():
    structure = rock_salt()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(1e-4, cutoff=3.0))
    result = physics_ionic(structure, np.zeros((2, 3, 3)), fc)
    assert result.flags == [] and result.n_dropped == 3
    np.testing.assert_allclose(result.eps_ionic, 0)


def test_an_unstable_cell_is_flagged_imaginary():
    structure = rock_salt()
    fc = gamma_force_constants(structure, HarmonicSpringPotential(-1.0, cutoff=3.0))
    result = physics_ionic(structure, np.stack([np.eye(3), -np.eye(3)]), fc)
    assert "imaginary_modes" in result.flags
    assert np.all(result.modes.frequencies_thz < 0)


@pytest.mark.slow
def test_sevennet_rock_salt_force_constants():
    """SevenNet-0 on NaCl: symmetric, sum rule, a stable TO mode near experiment (~4.9 THz)."""
    from anisoscreen.ionic_physics.potentials import SevenNetPotential

    structure = rock_salt()
    fc = gamma_force_constants(structure, SevenNetPotential("sevennet-0"))
    np.testing.assert_allclose(fc.phi, fc.phi.T, atol=1e-12)
    np.testing.assert_allclose(fc.phi.reshape(2, 3, 2, 3).sum(axis=2), 0, atol=1e-10)
    assert fc.raw_asymmetry < 1e-3
    assert fc.max_residual_force < 1e-3  # forces vanish by symmetry
    born = np.stack([1.1 * np.eye(3), -1.1 * np.eye(3)])
    result = physics_ionic(structure, born, fc)
    assert result.flags == []
    assert np.all(result.modes.frequencies_thz > 3.5)
    assert np.all(result.modes.frequencies_thz < 6.5)
    # triply degenerate TO mode, isotropic eps0 (up to float32 finite-difference noise)
    frequencies = result.modes.frequencies_thz
    np.testing.assert_allclose(frequencies, frequencies[0], rtol=1e-4)
    eps = result.eps_ionic
    np.testing.assert_allclose(eps, eps[0, 0] * np.eye(3), atol=1e-4 * eps[0, 0])
    assert 1.0 < eps[0, 0] < 5.0  # DFPT (PBE) for NaCl: about 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("potential", "fidelity"),
    [("sevennet-0", None), ("sevennet-l3i5", None), ("sevennet-mf-0", "PBE")],
)
def test_sevennet_forces_are_the_checkpoints_own(potential, fidelity):
    """Batched displaced copies give the forces of sevenn's own calculator (MF-0: at PBE)."""
    import contextlib
    import io

    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    from anisoscreen.ionic_physics.potentials import SEVENNET_CHECKPOINTS, SevenNetPotential

    structure = perovskite_distorted()
    copies = structure.cart_coords + 0.02 * np.random.default_rng(0).standard_normal((3, 5, 3))
    forces = SevenNetPotential(potential, batch_size=2).forces(structure, copies)
    with contextlib.redirect_stdout(io.StringIO()):
        calculator = SevenNetCalculator(SEVENNET_CHECKPOINTS[potential], modal=fidelity)
    for copy, ours in zip(copies, forces, strict=True):
        moved = Structure(structure.lattice, structure.species, copy, coords_are_cartesian=True)
        atoms = AseAtomsAdaptor.get_atoms(moved)
        atoms.calc = calculator
        reference = atoms.get_forces()
        assert np.abs(reference).max() > 0.05  # displaced: not trivially zero
        np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_born_sources(tmp_path):
    import gzip
    import json

    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.ionic_physics.born import born_charges

    structure = perovskite_distorted()
    nominal = born_charges("nominal", structure)
    np.testing.assert_allclose(nominal[:, 0, 0], [2, 4, -2, -2, -2])
    np.testing.assert_allclose(nominal[:, 0, 1], 0)
    dfpt = np.random.default_rng(4).normal(size=(5, 3, 3))
    data = tmp_path / "dfpt.json.gz"
    with gzip.open(data, "wt") as handle:
        json.dump([{"material_id": "mp-1", "born": dfpt.tolist()}], handle)
    got = born_charges("dfpt", structure, "mp-1", data)
    np.testing.assert_allclose(got, dfpt - dfpt.mean(axis=0))  # sum rule imposed
    with pytest.raises(AnisoscreenError, match="no DFPT Born charges"):
        born_charges("dfpt", structure, "mp-2", data)
    with pytest.raises(AnisoscreenError, match="unknown Born source"):
        born_charges("predicted", structure)


def test_dfpt_charges_follow_the_sites_and_records_without_an_mp_id(tmp_path):
    """A record's charges go to the matching sites, found by MP id or by structure id."""
    import gzip
    import json

    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.ionic_physics.born import born_charges
    from anisoscreen.schemas import structure_id

    structure = perovskite_distorted()
    dfpt = np.random.default_rng(5).normal(size=(5, 3, 3))
    records = [
        {"material_id": "mp-1", "structure": structure.as_dict(), "born": dfpt.tolist()},
        {"structure": rock_salt().as_dict(), "born": [np.eye(3).tolist(), (-np.eye(3)).tolist()]},
    ]
    data = tmp_path / "dfpt.json.gz"
    with gzip.open(data, "wt") as handle:
        json.dump(records, handle)
    expected = dfpt - dfpt.mean(axis=0)
    np.testing.assert_allclose(born_charges("dfpt", structure, "mp-1", data), expected)
    # the same crystal with its sites in reverse order, one moved by a lattice vector
    order = [4, 3, 2, 1, 0]
    shuffled = Structure(
        structure.lattice,
        [structure[i].species for i in order],
        [structure[i].frac_coords + (1.0 if i == 2 else 0.0) for i in order],
    )
    np.testing.assert_allclose(born_charges("dfpt", shuffled, "mp-1", data), expected[order])
    # a record without an MP id is found by the structure id its entry gets
    salt = born_charges("dfpt", rock_salt(), structure_id(rock_salt()), data)
    np.testing.assert_allclose(salt[:, 0, 0], [1.0, -1.0])
    # another structure under the record's id gets no charges, even with as many sites
    strained = structure.copy()
    strained.apply_strain(0.02)
    with pytest.raises(AnisoscreenError, match="belong to another structure"):
        born_charges("dfpt", strained, "mp-1", data)
    moved = structure.copy()
    moved.translate_sites([0], [0.05, 0.0, 0.0])
    with pytest.raises(AnisoscreenError, match="belong to another structure"):
        born_charges("dfpt", moved, "mp-1", data)
