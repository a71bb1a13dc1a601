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
