"""Tensor core: irreps round trips, invariants, validation messages, point-group checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
matrices = arrays(np.float64, (3, 3), elements=finite)
rotations = st.integers(0, 2**32 - 1).map(lambda s: Rotation.random(random_state=s).as_matrix())


def positive_definite(m: np.ndarray) -> np.ndarray:
    """A symmetric tensor with eigenvalues >= 1 built from any matrix."""
    return m @ m.T / 10 + np.eye(3)


def test_change_of_basis_is_orthonormal():
    q = tm.change_of_basis().reshape(6, 9)
    np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-14)


def test_isotropic_tensor_has_only_scalar_irrep():
    irreps = tm.tensor_to_irreps(3.0 * np.eye(3))
    np.testing.assert_allclose(irreps, [3.0 * np.sqrt(3), 0, 0, 0, 0, 0], atol=1e-12)


@given(matrices)
def test_irreps_round_trip(m):
    sym = tm.symmetrize(m)
    np.testing.assert_allclose(tm.irreps_to_tensor(tm.tensor_to_irreps(sym)), sym, atol=1e-10)


@given(arrays(np.float64, (6,), elements=finite))
def test_tensor_round_trip_from_irreps(x):
    np.testing.assert_allclose(tm.tensor_to_irreps(tm.irreps_to_tensor(x)), x, atol=1e-10)


@given(matrices)
def test_torch_twins_match_numpy(m):
    import torch

    sym = tm.symmetrize(m)
    irreps = tm.tensor_to_irreps_torch(torch.tensor(sym))
    np.testing.assert_allclose(irreps.numpy(), tm.tensor_to_irreps(sym), atol=1e-10)
    np.testing.assert_allclose(tm.irreps_to_tensor_torch(irreps).numpy(), sym, atol=1e-10)


def test_irreps_match_e3nn_cartesian_tensor():
    import torch
    from e3nn.io import CartesianTensor

    sym = tm.symmetrize(np.arange(9.0).reshape(3, 3))
    expected = CartesianTensor("ij=ji").from_cartesian(torch.tensor(sym)).numpy()
    np.testing.assert_allclose(tm.tensor_to_irreps(sym), expected, atol=1e-5)


@given(matrices, rotations)
@settings(max_examples=50)
def test_eigenvalues_and_ratio_are_rotation_invariant(m, r):
    eps = positive_definite(m)
    rotated = tm.rotate(eps, r)
    np.testing.assert_allclose(tm.eigenvalues(rotated), tm.eigenvalues(eps), atol=1e-9)
    assert tm.anisotropy_ratio(rotated) == pytest.approx(tm.anisotropy_ratio(eps), rel=1e-9)
    assert tm.polycrystalline_average(rotated) == pytest.approx(tm.polycrystalline_average(eps))


@given(matrices, rotations)
@settings(max_examples=50)
def test_scalar_irrep_is_rotation_invariant_and_l2_norm_preserved(m, r):
    sym = tm.symmetrize(m)
    a, b = tm.tensor_to_irreps(sym), tm.tensor_to_irreps(tm.rotate(sym, r))
    assert b[0] == pytest.approx(a[0], abs=1e-9)
    assert np.linalg.norm(b[1:]) == pytest.approx(np.linalg.norm(a[1:]), abs=1e-9)


def test_summary_numbers():
    eps = np.diag([4.372, 4.372, 4.573])
    s = tm.summarize(eps)
    np.testing.assert_allclose(s.eigenvalues, [4.372, 4.372, 4.573])
    assert s.eps_poly == pytest.approx((2 * 4.372 + 4.573) / 3)
    assert s.anisotropy_ratio == pytest.approx(4.573 / 4.372)
    assert tm.anisotropy_ratio(2.5 * np.eye(3)) == 1.0


def test_vectorised_over_stacks():
    stack = np.stack([np.eye(3), np.diag([1.0, 2.0, 4.0])])
    np.testing.assert_allclose(tm.anisotropy_ratio(stack), [1.0, 4.0])
    np.testing.assert_allclose(tm.polycrystalline_average(stack), [1.0, 7 / 3])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.eye(2), "expected a 3x3 tensor"),
        ([[1, 0, 0], [0, np.nan, 0], [0, 0, 1]], "non-finite"),
        ([[2, 1, 0], [0, 2, 0], [0, 0, 2]], "not symmetric"),
        (np.diag([0.5, 2, 2]), "below 1"),
        ("abc", "not a numeric"),
    ],
)
def test_validation_messages(value, message):
    with pytest.raises(tm.TensorValidationError, match=message):
        tm.validate_dielectric_tensor(value)


def test_validation_accepts_dfpt_rounding_and_symmetrises():
    eps = [[8.47, 0.122, 0.35], [0.123, 8.376, 0.237], [0.35, 0.238, 8.969]]
    out = tm.validate_dielectric_tensor(eps)
    np.testing.assert_allclose(out, out.T)
    assert tm.validate_dielectric_tensor(-np.eye(3), min_eigenvalue=None) is not None


def test_anisotropy_ratio_refuses_non_positive_tensors():
    with pytest.raises(tm.TensorValidationError, match="positive-definite"):
        tm.anisotropy_ratio(np.diag([-1.0, 1.0, 2.0]))


def _hexagonal() -> Structure:
    return Structure(
        Lattice.hexagonal(3.11, 4.98),
        ["Al", "Al", "N", "N"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )


def test_point_group_cubic_requires_isotropy():
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    assert tm.respects_point_group(2.3 * np.eye(3), nacl)
    assert not tm.respects_point_group(np.diag([2.3, 2.3, 2.5]), nacl)


def test_point_group_hexagonal_requires_uniaxial_along_c():
    aln = _hexagonal()
    assert tm.respects_point_group(np.diag([4.372, 4.372, 4.573]), aln)
    assert not tm.respects_point_group(np.diag([4.573, 4.372, 4.372]), aln)
    # a rotated crystal carries its tensor along: check in the rotated frame
    r = Rotation.from_euler("zyx", [20, 35, 50], degrees=True).as_matrix()
    rotated = Structure(Lattice(aln.lattice.matrix @ r.T), aln.species, aln.frac_coords)
    assert tm.respects_point_group(tm.rotate(np.diag([4.372, 4.372, 4.573]), r), rotated)
    assert tm.point_group_violation(np.diag([4.372, 4.372, 4.573]), rotated) > 1e-2


def test_torch_basis_first_built_under_inference_mode_still_trains():
    """Evaluation before training (any order of tests or calls) must not poison the cache."""
    import torch

    tm._torch_basis_cached.cache_clear()
    with torch.inference_mode():
        tm.tensor_to_irreps_torch(torch.eye(3, dtype=torch.float64))
    x = torch.eye(3, dtype=torch.float64, requires_grad=True)
    tm.irreps_to_tensor_torch(tm.tensor_to_irreps_torch(2.0 * x)).sum().backward()
    # d sum(sym(2x)) / dx = 2 everywhere
    np.testing.assert_allclose(x.grad.numpy(), np.full((3, 3), 2.0), atol=1e-12)


# -- optics ------------------------------------------------------------------------------------


def test_calcite_like_tensor_is_uniaxial_negative_with_optic_axis_along_c():
    # calcite at 589 nm: n_o = 1.6584, n_e = 1.4864, optic axis along c (hexagonal setting)
    n_o, n_e = 1.6584, 1.4864
    eps = np.diag([n_o**2, n_o**2, n_e**2])
    optics = tm.optical_properties(eps)
    np.testing.assert_allclose(optics.refractive_indices, [n_e, n_o, n_o], atol=1e-12)
    assert optics.birefringence == pytest.approx(0.1720, abs=1e-12)
    assert optics.character == "uniaxial negative"
    assert optics.optic_axial_angle is None
    assert len(optics.optic_axes) == 1
    lattice = Lattice.hexagonal(4.99, 17.06).matrix
    uvw = tm.cartesian_to_crystal_direction(optics.optic_axes[0], lattice)
    np.testing.assert_allclose(uvw, [0, 0, 1], atol=1e-12)
    assert tm.birefringence(eps) == pytest.approx(n_o - n_e)


def test_rutile_like_tensor_is_uniaxial_positive():
    # rutile TiO2: n_o = 2.6124 < n_e = 2.8993 (633 nm), optic axis along z
    optics = tm.optical_properties(np.diag([2.6124**2, 2.8993**2, 2.6124**2]))
    assert optics.character == "uniaxial positive"
    np.testing.assert_allclose(np.abs(optics.optic_axes[0]), [0, 1, 0], atol=1e-12)


def test_isotropic_within_tolerance():
    optics = tm.optical_properties(np.diag([4.0, 4.0 + 1e-4, 4.0]))
    assert optics.character == "isotropic"
    assert optics.optic_axes.shape == (0, 3)


def test_biaxial_optic_axial_angle_and_circular_sections():
    # n_alpha, n_beta, n_gamma = 1.5, 1.6, 1.7: by hand
    # cos^2 Vz = 1.5^2 (1.7^2 - 1.6^2) / (1.6^2 (1.7^2 - 1.5^2)) = 0.7425 / 1.6384 = 0.45319
    # Vz = 47.686 deg, 2Vz = 95.37 deg > 90 -> optically negative
    r = Rotation.from_euler("zyx", [20, 35, -50], degrees=True).as_matrix()
    eps = tm.rotate(np.diag([1.5**2, 1.6**2, 1.7**2]), r)
    optics = tm.optical_properties(eps)
    assert optics.optical_class == "biaxial"
    assert optics.optic_axial_angle == pytest.approx(
        2 * np.degrees(np.arccos(0.45319**0.5)), abs=1e-3
    )
    assert optics.optic_axial_angle == pytest.approx(95.37, abs=0.01)
    assert optics.character == "biaxial negative"
    # the section of the indicatrix normal to an optic axis is a circle of radius n_beta
    impermeability = np.linalg.inv(eps)
    for axis in optics.optic_axes:
        basis = np.linalg.svd(axis[None, :])[2][1:]  # two unit vectors normal to the axis
        section = basis @ impermeability @ basis.T
        np.testing.assert_allclose(section, np.eye(2) / 1.6**2, atol=1e-12)


def test_biaxial_positive_when_n_beta_close_to_n_alpha():
    optics = tm.optical_properties(np.diag([1.50**2, 1.52**2, 1.70**2]))
    assert optics.character == "biaxial positive"
    assert optics.optic_axial_angle < 90


def test_crystal_direction_in_hexagonal_lattice():
    lattice = Lattice.hexagonal(3.0, 5.0).matrix
    np.testing.assert_allclose(
        tm.cartesian_to_crystal_direction([1, 0, 0], lattice), [1, 0, 0], atol=1e-12
    )
    np.testing.assert_allclose(
        tm.cartesian_to_crystal_direction([0, 1, 0], lattice), [0.5, 1, 0], atol=1e-12
    )


def test_refractive_indices_vectorised_and_non_positive():
    n = tm.refractive_indices(np.stack([np.diag([1.0, 4.0, 9.0]), np.diag([-1.0, 4.0, 9.0])]))
    np.testing.assert_allclose(n[0], [1, 2, 3])
    assert np.isnan(n[1, 0])
    with pytest.raises(tm.TensorValidationError, match="positive-definite"):
        tm.optical_properties(np.diag([-1.0, 4.0, 9.0]))


def test_uniaxial_indices_about_the_lattice_c_axis():
    # calcite-like, with the optic axis along c of a rotated cell
    r = Rotation.from_euler("xz", [30, 10], degrees=True).as_matrix()
    eps = tm.rotate(np.diag([1.6584**2, 1.6584**2, 1.4864**2]), r)
    n_o, n_e = tm.uniaxial_indices(eps, r @ np.array([0.0, 0.0, 2.5]))
    assert (n_o, n_e) == pytest.approx((1.6584, 1.4864), abs=1e-12)
    # about a perpendicular axis the "extraordinary" index is the ordinary one
    n_o2, n_e2 = tm.uniaxial_indices(eps, r @ np.array([1.0, 0.0, 0.0]))
    assert n_e2 == pytest.approx(1.6584, abs=1e-12)
    assert n_o2 == pytest.approx(np.sqrt((1.6584**2 + 1.4864**2) / 2), abs=1e-12)


def test_unique_axis_of_a_primitive_rhombohedral_cell_is_the_threefold_axis():
    # calcite-like R-3c: in the primitive cell no lattice vector is the 3-fold axis
    conventional = Structure.from_spacegroup(
        "R-3c", Lattice.hexagonal(4.99, 17.06), ["Ca", "C", "O"],
        [[0, 0, 0], [0, 0, 0.25], [0.257, 0, 0.25]],
    )  # fmt: skip
    primitive = conventional.get_primitive_structure()
    axis = tm.unique_axis(primitive)
    assert abs(axis @ np.array([0.0, 0.0, 1.0])) == pytest.approx(1.0, abs=1e-6)
    assert all(abs(abs(v @ axis) / np.linalg.norm(v) - 1) > 1e-3 for v in primitive.lattice.matrix)
    assert tm.unique_axis(Structure(Lattice.orthorhombic(3, 4, 5), ["Si"], [[0, 0, 0]])) is None
