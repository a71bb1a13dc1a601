"""Units and conventions of the harmonic ionic tensor, written down once.

Units are VASP's: lengths in angstrom, energies in eV, charges in units of ``e``, masses in
amu. Then

* Born effective charges ``Z*_i,ab = dP_a / du_i,b`` (``P`` the dipole per cell in ``e``
  angstrom, ``u_i`` the displacement of atom ``i``): first index the field/polarisation
  direction, second the displacement direction, as VASP's OUTCAR and MP's ``born`` field.
* Force constants at Gamma ``Phi_ia,jb = d^2 E / du_i,a du_j,b`` in eV/A^2 (``3N x 3N``, the
  sum over all periodic images of ``j``).
* The static ionic tensor of the rigid-ion harmonic crystal (Gaussian units; ``e^2`` in eV A
  is ``e^2 / (4 pi eps_0)`` = :data:`E2_EV_ANGSTROM`):

      eps0_ab = (4 pi e^2 / V) * sum_ij Z*_i,ac (Phi^+)_ic,jd Z*_j,bd

  with ``V`` the cell volume in A^3 and ``Phi^+`` the pseudo-inverse of ``Phi`` on the
  optical subspace (the three uniform translations projected out). Equivalently, as a sum
  over the optical Gamma modes ``m`` of the dynamical matrix ``D = M^-1/2 Phi M^-1/2``
  (eigenvalue ``omega_m^2``, unit eigenvector ``e_m``):

      eps0_ab = (4 pi e^2 / V) * sum_m  S_m,ab / omega_m^2,
      S_m,ab = p_m,a p_m,b,  p_m,a = sum_i,c Z*_i,ac e_m,ic / sqrt(M_i)

  (``p_m`` is the mode effective charge vector, ``S_m`` the mode oscillator strength in
  ``e^2 / amu``, ``omega^2`` in eV / (A^2 amu)). :data:`EV_A2_AMU_TO_THZ` turns ``sqrt`` of
  such an eigenvalue into THz (ordinary frequency ``nu = omega / 2 pi``).

Closed-form check (the test suite's): a diatomic rigid-ion crystal with charges ``+-Z``,
masses ``m1, m2`` and one spring ``k`` between the sublattices along each axis has
``Phi = k [[1, -1], [-1, 1]]`` per axis, ``omega^2 = k / mu`` (``mu`` the reduced mass) and
``eps0 = 4 pi e^2 Z^2 / (V k) = 4 pi e^2 Z^2 / (V mu omega^2)`` on the diagonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from anisoscreen.errors import AnisoscreenError

__all__ = [
    "AMU_KG",
    "E2_EV_ANGSTROM",
    "EPS0_PREFACTOR",
    "EV_A2_AMU_TO_THZ",
    "EV_J",
    "THZ_TO_CM1",
    "GammaModes",
    "eps_ionic",
    "eps_ionic_from_modes",
    "gamma_modes",
    "impose_born_asr",
    "impose_force_constant_asr",
    "modes_with_charges",
    "optical_pseudo_inverse",
    "symmetrize_force_constants",
    "translation_projector",
]

EV_J = 1.602176634e-19
"""One electronvolt in joules (exact, SI 2019); also ``e`` in coulombs."""
AMU_KG = 1.66053906660e-27
"""One atomic mass unit in kg (CODATA 2018)."""
_EPSILON_0 = 8.8541878128e-12  # F/m, CODATA 2018
E2_EV_ANGSTROM = EV_J / (4.0 * math.pi * _EPSILON_0) * 1e10
"""``e^2 / (4 pi eps_0)`` in eV A: 14.3996454784..."""
EPS0_PREFACTOR = 4.0 * math.pi * E2_EV_ANGSTROM
"""``4 pi e^2`` in eV A (= ``e^2 / eps_0``): multiply ``Z Phi^+ Z / V`` (A^-3 A^2/eV) by it."""
EV_A2_AMU_TO_THZ = math.sqrt(EV_J / (1e-20 * AMU_KG)) / (2.0 * math.pi * 1e12)
"""``sqrt(omega^2 [eV/(A^2 amu)])`` in THz of ordinary frequency: 15.633302..."""
THZ_TO_CM1 = 1e12 / 2.99792458e10
"""1 THz in cm^-1: 33.35641..."""


def translation_projector(masses: np.ndarray | None, n_atoms: int) -> np.ndarray:
    """Projector (3N x 3N) onto the three uniform translations.

    With ``masses`` the translations are taken in the mass-weighted space (``sqrt(M_i)`` per
    atom, the acoustic modes of ``D``); without, in the plain displacement space (``Phi``'s
    null space).
    """
    weights = np.ones(n_atoms) if masses is None else np.sqrt(np.asarray(masses, dtype=float))
    basis = np.zeros((3 * n_atoms, 3))
    for a in range(3):
        basis[a::3, a] = weights
    basis /= np.linalg.norm(basis, axis=0)
    return basis @ basis.T


def symmetrize_force_constants(phi: np.ndarray) -> np.ndarray:
    """``(Phi + Phi^T) / 2`` of a (3N, 3N) matrix."""
    return 0.5 * (phi + phi.T)


def impose_force_constant_asr(phi: np.ndarray) -> np.ndarray:
    """``Phi`` with the uniform translations projected out on both sides (stays symmetric).

    ``P Phi P`` with ``P = 1 - T`` (``T`` the translation projector) is the symmetric matrix
    closest to ``Phi`` (Frobenius norm) whose rows and columns sum to zero per atom and axis:
    a uniform translation costs no energy.
    """
    n = phi.shape[0] // 3
    projector = np.eye(3 * n) - translation_projector(None, n)
    return projector @ phi @ projector


def impose_born_asr(born: np.ndarray) -> np.ndarray:
    """Born charges (N, 3, 3) minus their mean, so they sum to zero (charge neutrality)."""
    born = np.asarray(born, dtype=float)
    return born - born.mean(axis=0, keepdims=True)


def optical_pseudo_inverse(
    phi: np.ndarray, min_eigenvalue: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-inverse of ``Phi`` on its optical subspace, and the eigenvalues it dropped.

    The three translations are projected out first; the remaining eigenvalues below
    ``min_eigenvalue`` (eV/A^2; soft or unstable directions) are left out of the inverse and
    returned, so a caller can flag them.
    """
    n = phi.shape[0] // 3
    translations = translation_projector(None, n)
    optical = impose_force_constant_asr(symmetrize_force_constants(phi))
    values, vectors = np.linalg.eigh(optical)
    # the three translation eigenvectors (eigenvalue 0 by construction) never count
    overlap = np.einsum("ik,ij,jk->k", vectors, translations, vectors)
    keep = (overlap < 0.5) & (values > min_eigenvalue)
    dropped = values[(overlap < 0.5) & ~keep]
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return inverse, dropped


def eps_ionic(
    born: np.ndarray, phi: np.ndarray, volume: float, min_eigenvalue: float = 1e-8
) -> np.ndarray:
    """Static ionic tensor ``(4 pi e^2 / V) Z*^T Phi^+ Z*`` (3x3), units of the module doc.

    Parameters
    ----------
    born
        Born charges (N, 3, 3) in e, ``born[i, a, b] = dP_a / du_i,b``.
    phi
        Gamma force constants (3N, 3N) in eV/A^2, atom-major (``3 i + a``).
    volume
        Cell volume in A^3.
    min_eigenvalue
        Optical eigenvalues of ``Phi`` below this (eV/A^2) are left out of the inverse.
    """
    born = np.asarray(born, dtype=float)
    n = born.shape[0]
    if phi.shape != (3 * n, 3 * n):
        raise AnisoscreenError(f"Phi has shape {phi.shape}, expected {(3 * n, 3 * n)}")
    if volume <= 0:
        raise AnisoscreenError("the cell volume must be positive")
    inverse, _ = optical_pseudo_inverse(phi, min_eigenvalue)
    # (3N, 3): row (i, b) -> Z*_i,ab for polarisation direction a
    charges = born.transpose(0, 2, 1).reshape(3 * n, 3)
    tensor = EPS0_PREFACTOR / volume * charges.T @ inverse @ charges
    return np.asarray(0.5 * (tensor + tensor.T))


@dataclass(frozen=True)
class GammaModes:
    """Gamma-point modes of a cell (from the dynamical matrix), acoustic ones removed.

    Attributes
    ----------
    omega2
        (M,) optical eigenvalues ``omega^2`` in eV/(A^2 amu), ascending (negative: unstable).
    vectors
        (3N, M) unit eigenvectors of ``D`` (mass-weighted displacements).
    frequencies_thz
        (M,) ordinary frequencies in THz, negative for imaginary modes (``-sqrt|omega^2|``).
    mode_charges
        (M, 3) mode effective charge vectors ``p_m`` in e / sqrt(amu); ``None`` without
        charges.
    oscillator_strengths
        (M, 3, 3) ``S_m = p_m p_m^T`` in e^2/amu; ``None`` without charges.
    """

    omega2: np.ndarray
    vectors: np.ndarray
    frequencies_thz: np.ndarray
    mode_charges: np.ndarray | None
    oscillator_strengths: np.ndarray | None

    @property
    def frequencies_cm1(self) -> np.ndarray:
        """Frequencies in cm^-1 (negative for imaginary modes)."""
        return self.frequencies_thz * THZ_TO_CM1


def gamma_modes(phi: np.ndarray, masses: np.ndarray, born: np.ndarray | None = None) -> GammaModes:
    """Optical Gamma modes of ``Phi`` (eV/A^2) with ``masses`` (amu) and optional charges.

    The three acoustic modes (mass-weighted uniform translations) are projected out exactly
    and dropped, so ``omega2`` holds ``3N - 3`` values.
    """
    masses = np.asarray(masses, dtype=float)
    n = len(masses)
    inv_sqrt = np.repeat(1.0 / np.sqrt(masses), 3)
    dynamical = symmetrize_force_constants(phi * inv_sqrt[:, None] * inv_sqrt[None, :])
    acoustic = translation_projector(masses, n)
    optical = np.eye(3 * n) - acoustic
    values, vectors = np.linalg.eigh(optical @ dynamical @ optical)
    overlap = np.einsum("ik,ij,jk->k", vectors, acoustic, vectors)
    keep = np.argsort(overlap)[: 3 * n - 3]
    keep = keep[np.argsort(values[keep])]
    values, vectors = values[keep], vectors[:, keep]
    frequencies = np.sign(values) * np.sqrt(np.abs(values)) * EV_A2_AMU_TO_THZ
    modes = GammaModes(values, vectors, frequencies, None, None)
    return modes if born is None else modes_with_charges(modes, masses, born)


def modes_with_charges(modes: GammaModes, masses: np.ndarray, born: np.ndarray) -> GammaModes:
    """``modes`` with the mode effective charges and oscillator strengths of ``born`` (N, 3, 3).

    The eigenvectors do not depend on the charges, so other charges on the same force
    constants need no new diagonalisation.
    """
    masses = np.asarray(masses, dtype=float)
    inv_sqrt = np.repeat(1.0 / np.sqrt(masses), 3)
    charges = np.asarray(born, dtype=float).transpose(0, 2, 1).reshape(3 * len(masses), 3)
    mode_charges = (modes.vectors * inv_sqrt[:, None]).T @ charges
    strengths = np.einsum("ma,mb->mab", mode_charges, mode_charges)
    return replace(modes, mode_charges=mode_charges, oscillator_strengths=strengths)


def eps_ionic_from_modes(
    modes: GammaModes, volume: float, include: np.ndarray | None = None
) -> np.ndarray:
    """``(4 pi e^2 / V) sum_m S_m / omega_m^2`` over the modes in ``include`` (default: all).

    Modes with ``omega^2 <= 0`` must be excluded by the caller (``include``); they raise.
    """
    if modes.oscillator_strengths is None:
        raise AnisoscreenError("these modes were computed without Born charges")
    mask = np.ones(len(modes.omega2), dtype=bool) if include is None else np.asarray(include)
    if np.any(modes.omega2[mask] <= 0):
        raise AnisoscreenError("a mode with omega^2 <= 0 cannot enter the ionic tensor")
    terms = modes.oscillator_strengths[mask] / modes.omega2[mask, None, None]
    return np.asarray(EPS0_PREFACTOR / volume * terms.sum(axis=0))
