"""Dielectric-tensor mathematics: the one place where tensors change representation.

Documents carry tensors as plain 3x3 lists, computations use numpy and the model uses
torch. Every conversion between those forms, and between the Cartesian tensor and its
irreducible representation ``0e+2e``, lives here.

The irreducible basis is e3nn's ``CartesianTensor("ij=ji")``: a symmetric 3x3 tensor
``T`` maps to a 6-vector ``x = Q : T`` (one ``l=0`` and five ``l=2`` components), where
``Q`` is the (6, 3, 3) change of basis with orthonormal rows, so ``T = Q^T x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from pymatgen.core import Structure

__all__ = [
    "HBAR_C_EV_CM",
    "IRREPS",
    "OPTICAL_TOL",
    "OpticalProperties",
    "TensorSummary",
    "TensorValidationError",
    "absorption_coefficient",
    "anisotropy_ratio",
    "as_array",
    "as_list",
    "birefringence",
    "cartesian_to_crystal_direction",
    "change_of_basis",
    "eigenvalue_ratio",
    "eigenvalues",
    "irreps_to_tensor",
    "irreps_to_tensor_torch",
    "optical_properties",
    "point_group_violation",
    "polycrystalline_average",
    "refractive_indices",
    "respects_point_group",
    "rotate",
    "summarize",
    "symmetrize",
    "tensor_to_irreps",
    "tensor_to_irreps_torch",
    "uniaxial_indices",
    "unique_axis",
    "validate_dielectric_tensor",
    "voigt6_to_tensors",
]

HBAR_C_EV_CM = 1.973269804e-5
"""hbar * c in eV cm."""

IRREPS = "0e+2e"
"""e3nn irreps of a symmetric rank-2 tensor (1 scalar + 5 traceless components)."""

DEFAULT_SYMMETRY_TOL = 1e-3
"""Relative tolerance for symmetry checks (|T - T^T| / |T|)."""


class TensorValidationError(AnisoscreenError, ValueError):
    """A tensor that cannot be a (high-frequency) dielectric tensor."""


@lru_cache(maxsize=1)
def change_of_basis() -> np.ndarray:
    """Return e3nn's ``CartesianTensor("ij=ji")`` change of basis in float64.

    Returns
    -------
    numpy.ndarray
        Array of shape (6, 3, 3) with orthonormal rows (as 9-vectors).
    """
    from e3nn.io import CartesianTensor

    q = CartesianTensor("ij=ji").reduced_tensor_products().change_of_basis
    q = q.detach().cpu().double().numpy().reshape(6, 9)
    # e3nn builds Q in float32; a Loewdin orthonormalisation restores float64 accuracy
    # without changing the basis (the rows are orthonormal up to ~1e-8 already).
    w, v = np.linalg.eigh(q @ q.T)
    q = (v @ np.diag(w**-0.5) @ v.T) @ q
    q[np.abs(q) < 1e-12] = 0.0
    q.setflags(write=False)
    return q.reshape(6, 3, 3)


def as_array(tensor: Any) -> np.ndarray:
    """Convert a 3x3 list, numpy array or torch tensor into a float64 numpy array."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor, dtype=np.float64)


def voigt6_to_tensors(components: Any) -> np.ndarray:
    """VASP's 6 components (XX, YY, ZZ, XY, YZ, ZX) per energy -> an (n, 3, 3) array."""
    c = as_array(components)
    if c.ndim != 2 or c.shape[1] != 6:
        raise ValueError(f"expected (n, 6) dielectric components, got shape {c.shape}")
    out = np.empty((c.shape[0], 3, 3))
    out[:, 0, 0], out[:, 1, 1], out[:, 2, 2] = c[:, 0], c[:, 1], c[:, 2]
    out[:, 0, 1] = out[:, 1, 0] = c[:, 3]
    out[:, 1, 2] = out[:, 2, 1] = c[:, 4]
    out[:, 2, 0] = out[:, 0, 2] = c[:, 5]
    return out


def absorption_coefficient(energy: Any, eps_real: Any, eps_imag: Any) -> np.ndarray:
    """Absorption coefficient alpha(E) in cm^-1 from eps_1 and eps_2 along one direction.

    ``alpha = 2 E kappa / (hbar c)`` with the extinction coefficient
    ``kappa = sqrt((|eps| - eps_1) / 2)``. ``energy`` (eV) runs along the first axis of
    the eps arrays, which may have trailing axes, or broadcasts with them as given.
    """
    e1, e2 = np.asarray(eps_real, float), np.asarray(eps_imag, float)
    kappa = np.sqrt(np.clip((np.hypot(e1, e2) - e1) / 2.0, 0.0, None))
    energy = np.asarray(energy, float)
    if energy.ndim == 1 and kappa.ndim > 1 and kappa.shape[0] == energy.shape[0]:
        energy = energy.reshape((-1,) + (1,) * (kappa.ndim - 1))
    return 2.0 * energy * kappa / HBAR_C_EV_CM


def as_list(tensor: Any, ndigits: int | None = None) -> list[list[float]]:
    """Convert a tensor into the plain nested list stored in documents."""
    array = as_array(tensor)
    if ndigits is not None:
        array = np.round(array, ndigits)
    return array.tolist()


def symmetrize(tensor: Any) -> np.ndarray:
    """Return the symmetric part ``(T + T^T) / 2`` (works on stacks of tensors)."""
    array = as_array(tensor)
    return 0.5 * (array + np.swapaxes(array, -1, -2))


def tensor_to_irreps(tensor: Any) -> np.ndarray:
    """Project symmetric 3x3 tensor(s) onto the ``0e+2e`` irreps.

    Parameters
    ----------
    tensor
        Array-like of shape (..., 3, 3). The antisymmetric part, if any, is discarded.

    Returns
    -------
    numpy.ndarray
        Array of shape (..., 6).
    """
    array = as_array(tensor)
    if array.shape[-2:] != (3, 3):
        raise TensorValidationError(f"expected a (..., 3, 3) tensor, got shape {array.shape}")
    return np.einsum("kij,...ij->...k", change_of_basis(), array)


def irreps_to_tensor(irreps: Any) -> np.ndarray:
    """Build symmetric 3x3 tensor(s) from ``0e+2e`` irreps of shape (..., 6)."""
    array = as_array(irreps)
    if array.shape[-1] != 6:
        raise TensorValidationError(f"expected (..., 6) irreps, got shape {array.shape}")
    return np.einsum("kij,...k->...ij", change_of_basis(), array)


@lru_cache(maxsize=8)
def _torch_basis_cached(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    import torch

    # a normal tensor even when first asked for under torch.inference_mode(): the cached basis
    # is later used in training, where an inference tensor cannot be saved for backward
    with torch.inference_mode(False):
        return torch.tensor(np.array(change_of_basis()), dtype=dtype, device=device)


def _torch_basis(like: torch.Tensor) -> torch.Tensor:
    return _torch_basis_cached(like.dtype, like.device)


def tensor_to_irreps_torch(tensor: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`tensor_to_irreps` (differentiable, any device)."""
    import torch

    return torch.einsum("kij,...ij->...k", _torch_basis(tensor), tensor)


def irreps_to_tensor_torch(irreps: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`irreps_to_tensor` (differentiable, any device)."""
    import torch

    return torch.einsum("kij,...k->...ij", _torch_basis(irreps), irreps)


def eigenvalues(tensor: Any) -> np.ndarray:
    """Ascending eigenvalues of the symmetric part of tensor(s) (shape (..., 3))."""
    return np.linalg.eigvalsh(symmetrize(tensor))


def polycrystalline_average(tensor: Any) -> np.ndarray | float:
    """Polycrystalline (orientationally averaged) value: the mean of the eigenvalues.

    Equal to trace / 3.
    """
    value = np.trace(symmetrize(tensor), axis1=-2, axis2=-1) / 3.0
    return float(value) if np.ndim(value) == 0 else value


def eigenvalue_ratio(eigenvalues: np.ndarray, floor: float | None = None) -> np.ndarray:
    """``lambda_max / lambda_min`` from eigenvalues sorted ascending along the last axis.

    Parameters
    ----------
    eigenvalues
        Ascending eigenvalues, shape ``(..., 3)``.
    floor
        Clip the smallest eigenvalue at this positive value instead of raising: for scoring
        predictions (an ionic tensor may be singular), never for reporting a material's a_r.

    Raises
    ------
    TensorValidationError
        If ``floor`` is ``None`` and a smallest eigenvalue is not positive.
    """
    smallest = eigenvalues[..., 0]
    if floor is not None:
        smallest = np.clip(smallest, floor, None)
    elif np.any(smallest <= 0):
        raise TensorValidationError(
            "anisotropy ratio needs a positive-definite tensor; smallest eigenvalue "
            f"{np.min(smallest):.4g}"
        )
    return np.asarray(eigenvalues[..., -1] / smallest)


def anisotropy_ratio(tensor: Any, floor: float | None = None) -> np.ndarray | float:
    """Anisotropy ratio ``a_r = lambda_max / lambda_min`` (1 for an isotropic tensor).

    ``floor`` is passed to :func:`eigenvalue_ratio`.

    Raises
    ------
    TensorValidationError
        If ``floor`` is ``None`` and the smallest eigenvalue is not positive (the ratio is
        then meaningless).
    """
    value = eigenvalue_ratio(eigenvalues(tensor), floor)
    return float(value) if np.ndim(value) == 0 else value


@dataclass(frozen=True)
class TensorSummary:
    """Scalar descriptors of one dielectric tensor."""

    tensor: np.ndarray
    eigenvalues: np.ndarray
    eps_poly: float
    anisotropy_ratio: float


def summarize(tensor: Any) -> TensorSummary:
    """Symmetrise a tensor and compute its eigenvalues, eps_poly and a_r."""
    sym = symmetrize(tensor)
    eig = eigenvalues(sym)
    ratio = float(eig[-1] / eig[0]) if eig[0] > 0 else float("nan")
    return TensorSummary(sym, eig, float(eig.mean()), ratio)


def validate_dielectric_tensor(
    tensor: Any,
    *,
    symmetry_tol: float = DEFAULT_SYMMETRY_TOL,
    min_eigenvalue: float | None = 1.0,
    eigen_tol: float = 1e-6,
) -> np.ndarray:
    """Check that ``tensor`` can be a dielectric tensor and return it symmetrised.

    Parameters
    ----------
    tensor
        Array-like 3x3 tensor.
    symmetry_tol
        Largest allowed ``max|T - T^T| / max|T|``. DFPT outputs are symmetric to
        about 1e-3 relative (printed with three decimals).
    min_eigenvalue
        Lower bound for every eigenvalue (1 for an electronic dielectric tensor,
        ``None`` for no bound, e.g. for an ionic contribution).
    eigen_tol
        Slack on ``min_eigenvalue``.

    Raises
    ------
    TensorValidationError
        With a message that names the first failed check.
    """
    try:
        array = as_array(tensor)
    except (TypeError, ValueError) as exc:
        raise TensorValidationError(f"not a numeric 3x3 tensor: {exc}") from exc
    if array.shape != (3, 3):
        raise TensorValidationError(f"expected a 3x3 tensor, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise TensorValidationError("tensor has non-finite (NaN or infinite) components")
    scale = max(float(np.max(np.abs(array))), 1e-12)
    asym = float(np.max(np.abs(array - array.T))) / scale
    if asym > symmetry_tol:
        raise TensorValidationError(
            f"tensor is not symmetric: max|T - T^T|/max|T| = {asym:.3g} > {symmetry_tol:g}"
        )
    sym = symmetrize(array)
    if min_eigenvalue is not None:
        lowest = float(eigenvalues(sym)[0])
        if lowest < min_eigenvalue - eigen_tol:
            raise TensorValidationError(
                f"smallest eigenvalue {lowest:.4g} is below {min_eigenvalue:g}; "
                "an electronic dielectric tensor has all eigenvalues >= 1"
            )
    return sym


def rotate(tensor: Any, rotation: Any) -> np.ndarray:
    """Rotate tensor(s): ``R T R^T``."""
    r = as_array(rotation)
    return np.einsum("ij,...jk,lk->...il", r, as_array(tensor), r)


def _cartesian_point_group_ops(structure: Structure, symprec: float) -> list[np.ndarray]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
    return [op.rotation_matrix for op in analyzer.get_point_group_operations(cartesian=True)]


def point_group_violation(tensor: Any, structure: Structure, symprec: float = 0.01) -> float:
    """Largest relative change of ``tensor`` under the point-group operations of ``structure``.

    Neumann's principle: a property tensor is invariant under every operation of the
    crystal's point group, ``R T R^T = T``. The tensor must be expressed in the
    structure's Cartesian frame. Returns ``max_R |R T R^T - T| / |T|`` (0 when exact).
    """
    array = symmetrize(tensor)
    norm = max(float(np.linalg.norm(array)), 1e-12)
    ops = _cartesian_point_group_ops(structure, symprec)
    return max(float(np.linalg.norm(rotate(array, r) - array)) / norm for r in ops)


def respects_point_group(
    tensor: Any, structure: Structure, tol: float = 1e-3, symprec: float = 0.01
) -> bool:
    """Whether ``tensor`` obeys the point-group symmetry of ``structure``.

    Cubic crystals then have isotropic tensors, hexagonal / tetragonal / trigonal ones
    uniaxial tensors with the unique axis along c, orthorhombic ones principal axes
    along a, b, c, and monoclinic ones a principal axis along the unique axis.
    """
    return point_group_violation(tensor, structure, symprec) <= tol


# -- optics: refractive indices, birefringence, optical character ----------------------------

OPTICAL_TOL = 1e-3
"""Two principal refractive indices closer than this (absolute) count as equal."""


def refractive_indices(tensor: Any) -> np.ndarray:
    """Principal refractive indices ``n_i = sqrt(lambda_i)``, ascending (shape (..., 3)).

    ``lambda_i`` are the eigenvalues of the (high-frequency) dielectric tensor; a
    non-positive eigenvalue gives ``nan`` for that axis.
    """
    eig = eigenvalues(tensor)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(eig > 0, eig, np.nan))


def birefringence(tensor: Any) -> np.ndarray | float:
    """Birefringence ``dn = n_max - n_min`` of tensor(s) (0 for an isotropic tensor)."""
    n = refractive_indices(tensor)
    value = n[..., -1] - n[..., 0]
    return float(value) if np.ndim(value) == 0 else value


def cartesian_to_crystal_direction(vector: Any, lattice_matrix: Any) -> np.ndarray:
    """A Cartesian direction as a lattice direction ``[u, v, w]`` (``u a + v b + w c``).

    ``lattice_matrix`` has the lattice vectors as rows (pymatgen's ``Lattice.matrix``). The
    result is scaled so that its largest component is +1 in absolute value (sign: the
    largest component positive), which makes e.g. the c axis ``[0, 0, 1]``.
    """
    lattice = as_array(lattice_matrix)
    uvw = np.linalg.solve(lattice.T, as_array(vector))
    k = int(np.argmax(np.abs(uvw)))
    return uvw / uvw[k]


@dataclass(frozen=True)
class OpticalProperties:
    """The optics of one dielectric tensor below the gap.

    Attributes
    ----------
    refractive_indices
        ``n_alpha <= n_beta <= n_gamma`` (square roots of the ascending eigenvalues).
    principal_axes
        Rows: unit Cartesian axes of ``n_alpha``, ``n_beta``, ``n_gamma``.
    birefringence
        ``n_gamma - n_alpha``.
    optical_class
        ``"isotropic"``, ``"uniaxial"`` or ``"biaxial"``.
    optical_sign
        ``"+"`` or ``"-"`` (``None`` when isotropic). Uniaxial: the sign of
        ``n_e - n_o``. Biaxial: ``+`` when the ``n_gamma`` axis bisects the acute angle
        between the optic axes (``2V_z < 90 deg``), ``-`` otherwise.
    optic_axes
        Rows: unit Cartesian optic axes (none when isotropic, one when uniaxial, two when
        biaxial).
    optic_axial_angle
        ``2V_z`` in degrees, the angle between the optic axes bisected by the ``n_gamma``
        axis (``None`` unless biaxial).
    """

    refractive_indices: np.ndarray
    principal_axes: np.ndarray
    birefringence: float
    optical_class: str
    optical_sign: str | None
    optic_axes: np.ndarray
    optic_axial_angle: float | None

    @property
    def character(self) -> str:
        """``"isotropic"``, ``"uniaxial positive"``, ``"biaxial negative"``..."""
        if self.optical_sign is None:
            return self.optical_class
        sign = "positive" if self.optical_sign == "+" else "negative"
        return f"{self.optical_class} {sign}"


def optical_properties(tensor: Any, tol: float = OPTICAL_TOL) -> OpticalProperties:
    """Refractive indices, birefringence, optical character and optic axes of a tensor.

    Parameters
    ----------
    tensor
        A 3x3 dielectric tensor (eps_inf) with positive eigenvalues.
    tol
        Principal indices closer than ``tol`` are equal: all three -> isotropic; two ->
        uniaxial, the optic axis being the principal axis of the third index.

    Notes
    -----
    For a biaxial crystal the optic axes lie in the plane of the ``n_alpha`` (X) and
    ``n_gamma`` (Z) axes at ``+-V_z`` from Z, with
    ``cos^2 V_z = n_alpha^2 (n_gamma^2 - n_beta^2) / (n_beta^2 (n_gamma^2 - n_alpha^2))``
    (e.g. Born & Wolf, Principles of Optics, sec. 15.3).

    Raises
    ------
    TensorValidationError
        If an eigenvalue is not positive.
    """
    values, vectors = np.linalg.eigh(symmetrize(tensor))
    if values[0] <= 0:
        raise TensorValidationError(
            f"refractive indices need a positive-definite tensor; smallest eigenvalue "
            f"{values[0]:.4g}"
        )
    n = np.sqrt(values)
    axes = vectors.T
    dn = float(n[2] - n[0])
    if dn < tol:
        return OpticalProperties(n, axes, dn, "isotropic", None, np.zeros((0, 3)), None)
    if n[1] - n[0] < tol:  # n_o = n_alpha ~ n_beta < n_e = n_gamma
        return OpticalProperties(n, axes, dn, "uniaxial", "+", axes[2:3].copy(), None)
    if n[2] - n[1] < tol:  # n_e = n_alpha < n_o = n_beta ~ n_gamma
        return OpticalProperties(n, axes, dn, "uniaxial", "-", axes[0:1].copy(), None)
    na2, nb2, ng2 = values
    cos2 = na2 * (ng2 - nb2) / (nb2 * (ng2 - na2))
    vz = float(np.arccos(np.sqrt(np.clip(cos2, 0.0, 1.0))))
    x, z = axes[0], axes[2]
    optic = np.array(
        [np.cos(vz) * z + np.sin(vz) * x, np.cos(vz) * z - np.sin(vz) * x], dtype=float
    )
    two_v = float(np.degrees(2 * vz))
    sign = "+" if two_v < 90.0 else "-"
    return OpticalProperties(n, axes, dn, "biaxial", sign, optic, two_v)


def uniaxial_indices(tensor: Any, axis: Any) -> tuple[float, float]:
    """Ordinary and extraordinary indices ``(n_o, n_e)`` about a given optic axis.

    ``n_e = sqrt(c^T eps c)`` along the unit vector ``c`` of ``axis`` (e.g. the lattice
    vector c of a hexagonal, trigonal or tetragonal cell) and ``n_o = sqrt((tr eps -
    c^T eps c) / 2)``, the mean over the plane normal to it. Exact for a tensor that obeys
    the crystal's symmetry; for any other it compares along the crystal's axis, not along
    the tensor's own principal axes, so a wrongly oriented prediction shows as an error.
    """
    sym = symmetrize(tensor)
    c = as_array(axis)
    c = c / np.linalg.norm(c)
    along = float(c @ sym @ c)
    across = (float(np.trace(sym)) - along) / 2.0
    return float(np.sqrt(across)), float(np.sqrt(along))


def unique_axis(structure: Structure, symprec: float = 0.1) -> np.ndarray | None:
    """The Cartesian unit vector of the crystal's principal (3-, 4- or 6-fold) axis.

    Taken from the point-group operations in the structure's own Cartesian frame, so it is
    right for primitive cells too (the lattice vector c of a primitive rhombohedral or
    body-centred cell is not the unique axis). ``None`` when no axis of order >= 3 exists
    (cubic crystals have several; then the first found is returned).
    """
    best: tuple[int, np.ndarray] | None = None
    for rotation in _cartesian_point_group_ops(structure, symprec):
        proper = rotation * np.sign(np.linalg.det(rotation))
        cos = np.clip((np.trace(proper) - 1.0) / 2.0, -1.0, 1.0)
        angle = float(np.arccos(cos))
        if angle < 1e-3:
            continue
        order = int(round(2 * np.pi / angle))
        if order < 3:
            continue
        values, vectors = np.linalg.eig(proper)
        axis = np.real(vectors[:, int(np.argmin(np.abs(values - 1.0)))])
        if best is None or order > best[0]:
            best = (order, axis / np.linalg.norm(axis))
    return None if best is None else best[1]
