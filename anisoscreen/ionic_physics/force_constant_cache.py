"""Gamma force constants cached in the results store by structure hash and potential.

The force constants are the refine stage's cost (seconds to tens of seconds a structure on a
CPU) and depend on the structure and the potential alone, so they are stored once per
:func:`~anisoscreen.schemas.structure_hash` and potential name in the ``force_constants``
collection (:class:`~anisoscreen.schemas.ForceConstantsDoc`), each as soon as it is computed:
a refine stage or an evaluation killed part-way, run again, computes only what is missing,
and a later run with another model, Born source or material id computes none of them again.
The hash does not depend on the order of the sites: a structure met again with its sites in
another order gets the stored force constants permuted to its order. An entry of another
:data:`FORCE_CONSTANTS_VERSION` is not used.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.ionic_physics.force_constants import (
    ForceConstants,
    Potential,
    gamma_force_constants,
)
from anisoscreen.ionic_physics.sites import site_order
from anisoscreen.schemas import ForceConstantsDoc, structure_hash
from anisoscreen.store import ResultsStore

__all__ = ["FORCE_CONSTANTS_VERSION", "as_doc", "cached_force_constants", "lookup"]

FORCE_CONSTANTS_VERSION = 1
"""Version of :func:`gamma_force_constants` (0.01 A central differences, group-averaged)."""


def as_doc(structure: Structure, potential: str, fc: ForceConstants) -> ForceConstantsDoc:
    """The cache document of ``structure``'s force constants under ``potential``."""
    return ForceConstantsDoc(
        structure_hash=structure_hash(structure),
        potential=potential,
        version=FORCE_CONSTANTS_VERSION,
        phi=fc.phi.tolist(),
        residual_forces=np.asarray(fc.residual_forces).tolist(),
        species=[site.species_string for site in structure],
        frac_coords=structure.frac_coords.tolist(),
        raw_asymmetry=fc.raw_asymmetry,
        n_displacements=fc.n_displacements,
        n_operations=fc.n_operations,
        seconds=fc.seconds,
    )


def lookup(results: ResultsStore, structure: Structure, potential: str) -> ForceConstants | None:
    """The cached force constants of ``structure`` under ``potential``, in its site order.

    A document of the same structure hash whose sites do not match ``structure`` one to one
    (or that does not record its sites) is not used.
    """
    criteria = {
        "structure_hash": structure_hash(structure),
        "potential": potential,
        "version": FORCE_CONSTANTS_VERSION,
    }
    for record in results.records("force_constants", criteria, limit=1):
        doc = ForceConstantsDoc.from_store(record)
        if doc.species is None or doc.frac_coords is None:
            return None
        stored = Structure(structure.lattice, doc.species, doc.frac_coords)
        try:
            order = site_order(stored, structure)
        except AnisoscreenError:
            return None
        n = len(order)
        phi = np.asarray(doc.phi, dtype=float).reshape(n, 3, n, 3)[order][:, :, order]
        return ForceConstants(
            phi=phi.reshape(3 * n, 3 * n),
            raw_asymmetry=doc.raw_asymmetry,
            residual_forces=np.asarray(doc.residual_forces, dtype=float)[order],
            n_displacements=doc.n_displacements,
            n_operations=doc.n_operations,
            seconds=doc.seconds,
        )
    return None


def cached_force_constants(
    structure: Structure, potential: Potential, results: ResultsStore | None
) -> tuple[ForceConstants, bool]:
    """``(force constants, whether they came from the cache)`` of ``structure``.

    Computed with :func:`gamma_force_constants` when ``results`` holds none for the structure
    and ``potential.name``, and then stored there at once. ``results=None``: no cache.
    """
    if results is None:
        return gamma_force_constants(structure, potential), False
    found = lookup(results, structure, potential.name)
    if found is not None:
        return found, True
    fc = gamma_force_constants(structure, potential)
    results.upsert([as_doc(structure, potential.name, fc)])
    return fc, False
