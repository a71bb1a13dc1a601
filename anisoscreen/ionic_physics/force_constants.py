"""Gamma-point force constants of a potential by symmetric finite differences of the forces.

Only the symmetry-inequivalent atoms are displaced (``+-h`` along x, y, z, as phonopy's
displacements would be at Gamma); the rows of their images follow from the space group,
``Phi_p(i),p(j) = R Phi_ij R^T`` for an operation with Cartesian rotation ``R`` that maps atom
``i`` to ``p(i)``. The matrix is then averaged over the group, symmetrised and the
translations are projected out (acoustic sum rule). The forces of the undisplaced cell come
out too: large residual forces mean the potential disagrees with DFT about the structure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.ionic_physics.formula import (
    impose_force_constant_asr,
    symmetrize_force_constants,
)
from anisoscreen.ionic_physics.sites import match_sites

__all__ = [
    "ForceConstants",
    "Potential",
    "atom_permutations",
    "gamma_force_constants",
]


class Potential(Protocol):
    """Forces on copies of one cell with displaced atoms (the interface Phi needs)."""

    name: str

    def forces(self, structure: Structure, positions: np.ndarray) -> np.ndarray:
        """Forces (B, N, 3) in eV/A on ``structure`` with Cartesian ``positions`` (B, N, 3)."""
        ...


@dataclass(frozen=True)
class ForceConstants:
    """Gamma force constants of one cell.

    Attributes
    ----------
    phi
        (3N, 3N) symmetrised, sum-rule-obeying force constants in eV/A^2.
    raw_asymmetry
        Largest ``|Phi - Phi^T|`` before symmetrisation (eV/A^2), a finite-difference check.
    residual_forces
        (N, 3) forces of the undisplaced cell in eV/A.
    n_displacements
        Force evaluations of displaced cells (``6 x`` the inequivalent atoms).
    n_operations
        Space-group operations used to fill the rows of equivalent atoms.
    seconds
        Wall time of the force evaluations and the assembly.
    """

    phi: np.ndarray
    raw_asymmetry: float
    residual_forces: np.ndarray
    n_displacements: int
    n_operations: int
    seconds: float

    @property
    def max_residual_force(self) -> float:
        """Largest residual force norm in eV/A."""
        return float(np.linalg.norm(self.residual_forces, axis=1).max())


def atom_permutations(
    structure: Structure, symprec: float = 1e-3
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(R_cart, perm)`` of each space-group operation: atom ``i`` goes to ``perm[i]``.

    Operations whose image of the cell does not map every atom onto an atom of the same
    species within ``10 * symprec`` (fractional) are skipped; the identity is always there.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    identity = (np.eye(3), np.arange(len(structure)))
    try:
        operations = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(
            cartesian=True
        )
    except Exception:  # spglib failure on a pathological cell: no symmetry used
        return [identity]
    frac = structure.frac_coords
    species = [site.species for site in structure]
    inverse_lattice = np.linalg.inv(structure.lattice.matrix)
    result = [identity]
    for op in operations:
        rotation = np.asarray(op.rotation_matrix)
        if np.allclose(rotation, np.eye(3)) and np.allclose(op.translation_vector, 0):
            continue
        image = op.operate_multi(structure.cart_coords) @ inverse_lattice
        perm = match_sites(image, species, frac, species, 10 * symprec)
        if perm is not None:
            result.append((rotation, perm))
    return result


def gamma_force_constants(
    structure: Structure,
    potential: Potential,
    step: float = 0.01,
    symprec: float = 1e-3,
    use_symmetry: bool = True,
) -> ForceConstants:
    """Gamma force constants of ``structure`` under ``potential`` (central differences).

    Parameters
    ----------
    structure
        The cell (its atoms are displaced in place, periodic images move with them).
    potential
        Anything with :class:`Potential`'s ``forces``.
    step
        Displacement in A.
    symprec
        Symmetry tolerance (A-ish, spglib's) for finding equivalent atoms.
    use_symmetry
        Displace only inequivalent atoms (otherwise every atom).
    """
    start = time.perf_counter()
    n = len(structure)
    if n == 0:
        raise AnisoscreenError("an empty structure has no force constants")
    operations = (
        atom_permutations(structure, symprec) if use_symmetry else [(np.eye(3), np.arange(n))]
    )
    # representatives and, for every atom, (representative, operation) mapping onto it
    source: dict[int, tuple[int, int]] = {}
    representatives: list[int] = []
    for i in range(n):
        if i in source:
            continue
        representatives.append(i)
        for k, (_, perm) in enumerate(operations):
            source.setdefault(int(perm[i]), (i, k))
    base = structure.cart_coords
    copies = [base]
    for i in representatives:
        for a in range(3):
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved[i, a] += sign * step
                copies.append(moved)
    forces = np.asarray(potential.forces(structure, np.stack(copies)), dtype=float)
    residual = forces[0]
    rows: dict[int, np.ndarray] = {}
    for r, i in enumerate(representatives):
        block = np.zeros((3, n, 3))  # [a, j, b] = Phi_ia,jb
        for a in range(3):
            plus, minus = forces[1 + 6 * r + 2 * a], forces[2 + 6 * r + 2 * a]
            block[a] = -(plus - minus) / (2.0 * step)
        rows[i] = block
    phi = np.zeros((n, 3, n, 3))
    for k in range(n):
        i, op = source[k]
        rotation, perm = operations[op]
        # Phi_p(i),p(j) = R Phi_ij R^T
        rotated = np.einsum("ac,cjd,bd->jab", rotation, rows[i], rotation)
        phi[k, :, perm, :] = rotated
    asymmetry = float(np.abs(phi.reshape(3 * n, 3 * n) - phi.reshape(3 * n, 3 * n).T).max())
    # average over the group: finite-difference noise that breaks the symmetry cancels
    averaged = np.zeros_like(phi)
    axes = np.arange(3)
    for rotation, perm in operations:
        image = np.zeros_like(phi)
        image[np.ix_(perm, axes, perm, axes)] = np.einsum(
            "ac,icjd,bd->iajb", rotation, phi, rotation
        )
        averaged += image
    flat = (averaged / len(operations)).reshape(3 * n, 3 * n)
    flat = impose_force_constant_asr(symmetrize_force_constants(flat))
    return ForceConstants(
        phi=flat,
        raw_asymmetry=asymmetry,
        residual_forces=residual,
        n_displacements=len(copies) - 1,
        n_operations=len(operations),
        seconds=time.perf_counter() - start,
    )
