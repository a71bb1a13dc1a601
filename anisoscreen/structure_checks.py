"""Is this a physically possible bulk crystal? Checks run before the model sees a structure.

Every check gives a one-line reason; a structure with an error is reported as that record's
failure (``predict`` writes an ``error`` line, ``run-screen`` lists it among the run's
failures) and never stops the batch. The rules, in the order they are checked:

1. **finite numbers**: every lattice component and coordinate is finite (no NaN or inf);
2. **volume**: the cell volume (``|det|``: a left-handed cell is as valid as a right-handed
   one) is positive and at least ``MIN_VOLUME_PER_ATOM`` Å³ per atom (dense solids have
   5–6 Å³ per atom; 1 Å³ per atom gives nonsense such as ε ≈ 386);
3. **interatomic distance**: no two atoms (periodic images included) closer than
   ``MIN_DISTANCE`` Å (the shortest bond, H–H, is 0.74 Å);
4. **vacuum** (slabs, wires and isolated molecules in a box): along each lattice-plane
   normal, the widest empty gap between consecutive atomic planes is measured against
   ``MAX_VACUUM_GAP`` Å (layered crystals have gaps of about 3–4 Å). Vacuum along all three
   directions is an isolated molecule or cluster in a box: an **error**, since it is no
   crystal at all. Vacuum along one or two directions (a slab or a wire in a box) is a
   **warning**: the volume-aware model predicts ε∞ of the whole cell, vacuum included, which
   falls towards 1 as the vacuum grows (the dilution the physics tests check), so the number
   is meaningful but belongs to that cell, not to a bulk crystal. (Isolated atoms with no
   neighbour within the model's cutoff are reported by the graph builder.)
5. **density**: mass density between ``MIN_DENSITY`` and ``MAX_DENSITY`` g/cm³ (osmium, the
   densest element, is 22.6 g/cm³; the lightest molecular crystals and frameworks are
   above 0.02 g/cm³, PBE-relaxed solid H2 included).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.core import Structure

__all__ = [
    "MAX_DENSITY",
    "MAX_VACUUM_GAP",
    "MIN_DENSITY",
    "MIN_DISTANCE",
    "MIN_VOLUME_PER_ATOM",
    "StructureProblem",
    "check_structure",
    "structure_error",
    "structure_warnings",
]

MIN_DISTANCE = 0.5
"""Closest allowed approach of two atoms, in Å."""
MIN_VOLUME_PER_ATOM = 2.5
"""Smallest allowed cell volume per atom, in Å³."""
MIN_DENSITY = 0.02
"""Lowest plausible mass density, in g/cm³."""
MAX_DENSITY = 30.0
"""Highest plausible mass density, in g/cm³."""
MAX_VACUUM_GAP = 7.0
"""Widest empty gap between atomic planes of a bulk crystal, in Å."""

_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


@dataclass(frozen=True)
class StructureProblem:
    """One failed check: which rule, a one-line reason, and ``error`` or ``warning``."""

    rule: str
    message: str
    severity: str = "error"


def _finite(structure: Structure) -> StructureProblem | None:
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.isfinite(lattice).all():
        return StructureProblem("finite", "the lattice holds NaN or infinite numbers")
    coords = np.asarray(structure.frac_coords, dtype=float)
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if bad.size:
        sites = ", ".join(str(i) for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        return StructureProblem("finite", f"the coordinates of site(s) {sites} are NaN or infinite")
    return None


def _volume(structure: Structure) -> StructureProblem | None:
    volume = abs(float(np.linalg.det(structure.lattice.matrix)))  # a left-handed cell is valid
    if not volume > 1e-8:
        return StructureProblem(
            "volume", f"the cell volume is {volume:.3g} Å³; the lattice vectors must span 3D"
        )
    per_atom = volume / len(structure)
    if per_atom < MIN_VOLUME_PER_ATOM:
        return StructureProblem(
            "volume",
            f"{per_atom:.2f} Å³ per atom is below the physical minimum "
            f"({MIN_VOLUME_PER_ATOM} Å³; dense solids have 5-6)",
        )
    return None


def _distance(structure: Structure) -> StructureProblem | None:
    centre, neighbour, _, distances = structure.get_neighbor_list(r=MIN_DISTANCE, exclude_self=True)
    if len(distances) == 0:
        return None
    k = int(np.argmin(distances))
    i, j = int(centre[k]), int(neighbour[k])
    what = "an atom and its own periodic image" if i == j else f"sites {i} and {j}"
    return StructureProblem(
        "distance",
        f"{what} ({structure[i].specie}, {structure[j].specie}) are {distances[k]:.2f} Å "
        f"apart (minimum {MIN_DISTANCE} Å)",
    )


@lru_cache(maxsize=1)
def _atomic_masses() -> np.ndarray:
    from pymatgen.core import Element

    return np.array([0.0] + [float(Element.from_Z(z).atomic_mass) for z in range(1, 119)])


def _mass(structure: Structure) -> float:
    if structure.is_ordered:
        return float(_atomic_masses()[np.asarray(structure.atomic_numbers)].sum())
    return float(structure.composition.weight)


def _density(structure: Structure) -> StructureProblem | None:
    mass = _mass(structure)
    density = mass / structure.volume * _AMU_PER_A3_TO_G_PER_CM3
    if density > MAX_DENSITY:
        return StructureProblem(
            "density",
            f"density {density:.1f} g/cm³ is above any real solid (max {MAX_DENSITY})",
        )
    if density < MIN_DENSITY:
        return StructureProblem(
            "density",
            f"density {density:.3g} g/cm³ is below any real solid (min {MIN_DENSITY}); "
            "is it a molecule or slab in a box?",
        )
    return None


def largest_vacuum_gaps(structure: Structure) -> np.ndarray:
    """Widest empty gap (Å) between consecutive atomic planes along each lattice-plane normal."""
    frac = np.mod(np.asarray(structure.frac_coords, dtype=float), 1.0)
    reciprocal = structure.lattice.reciprocal_lattice_crystallographic.matrix
    spacings = 1.0 / np.linalg.norm(reciprocal, axis=1)  # d(100), d(010), d(001)
    gaps = np.empty(3)
    for axis in range(3):
        values = np.sort(frac[:, axis])
        steps = np.diff(np.concatenate([values, values[:1] + 1.0]))
        gaps[axis] = steps.max() * spacings[axis]
    return gaps


def _vacuum(structure: Structure) -> StructureProblem | None:
    gaps = largest_vacuum_gaps(structure)
    axis = int(np.argmax(gaps))
    if gaps[axis] < MAX_VACUUM_GAP:
        return None
    directions = [name for name, gap in zip("abc", gaps, strict=True) if gap >= MAX_VACUUM_GAP]
    kind = {1: "a slab", 2: "a wire", 3: "an isolated molecule or cluster"}[len(directions)]
    return StructureProblem(
        "vacuum",
        f"{gaps[axis]:.1f} Å of vacuum normal to {', '.join(directions)} "
        f"(bulk crystals have < {MAX_VACUUM_GAP} Å): this is {kind} in a box, not a crystal",
        "error" if len(directions) == 3 else "warning",
    )


_CHECKS = (_finite, _volume, _distance, _vacuum, _density)


def check_structure(structure: Structure) -> list[StructureProblem]:
    """Every failed rule of ``structure`` (empty: a plausible bulk crystal).

    The checks stop at the first failure of the finite-number and volume rules, because the
    later ones cannot be evaluated on such a cell.
    """
    if len(structure) == 0:
        return [StructureProblem("sites", "the structure has no sites")]
    problems: list[StructureProblem] = []
    for check in _CHECKS:
        problem = check(structure)
        if problem is not None:
            problems.append(problem)
            if problem.rule in ("finite", "volume"):
                break
    return problems


def structure_error(structure: Structure) -> str | None:
    """One line saying why ``structure`` is not a plausible bulk crystal, or ``None``.

    Warnings (a slab or wire in a box) are not errors: see :func:`structure_warnings`.
    """
    problems = [p for p in check_structure(structure) if p.severity == "error"]
    if not problems:
        return None
    return "; ".join(f"{p.message}" for p in problems)


def structure_warnings(structure: Structure) -> list[str]:
    """The warnings (not errors) of ``structure``: a slab or wire in a box."""
    return [p.message for p in check_structure(structure) if p.severity == "warning"]
