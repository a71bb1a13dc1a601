"""Ranking descriptors: structural dimensionality, crystal system, and the a_r ordering.

Dimensionality follows the reference paper: bonds from CrystalNN, then Larsen et al.'s
algorithm (pymatgen ``get_dimensionality_larsen``) gives 0D/1D/2D/3D connectivity. It costs
~0.1 s per cell, so it runs in parallel over cores. robocrys's full text description (~2 s a
structure, plus ~10 s to import) is offered only for the top candidates.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from pymatgen.core import Structure

__all__ = ["StructureDescriptors", "crystal_system", "describe", "descriptors", "dimensionality"]

StructureDescriptors = dict[str, object]


def _site_operations(structure: Structure, symprec: float):
    """For every site: (representative site, rotation, translation) mapping rep -> site."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    dataset = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
    frac = structure.frac_coords
    ops = []
    for j, i in enumerate(dataset.equivalent_atoms):
        if i == j:
            ops.append((j, None, None))
            continue
        for rot, trans in zip(dataset.rotations, dataset.translations, strict=True):
            delta = rot @ frac[i] + trans - frac[j]
            if np.allclose(delta, np.round(delta), atol=symprec):
                ops.append((int(i), rot, trans - np.round(delta)))
                break
        else:  # no operation found within tolerance: compute this site directly
            ops.append((j, None, None))
    return ops


def symmetric_nn_info(structure: Structure, strategy, symprec: float = 0.01) -> list[list[dict]]:
    """``strategy.get_nn_info`` for every site, computed for symmetry-distinct sites only.

    Neighbours of a site equivalent to a computed one are the images of that site's neighbours
    under the space-group operation relating the two (near-neighbour algorithms such as CrystalNN
    depend on geometry only), so a cell with ``k`` distinct sites costs ``k`` evaluations.
    """
    frac = structure.frac_coords
    ops = _site_operations(structure, symprec)
    computed = {i: strategy.get_nn_info(structure, i) for i in {rep for rep, _, _ in ops}}
    infos = []
    for j, (rep, rot, trans) in enumerate(ops):
        if rot is None:
            infos.append(computed[rep] if rep == j else strategy.get_nn_info(structure, j))
            continue
        neighbors = []
        for nb in computed[rep]:
            q = rot @ (frac[nb["site_index"]] + np.asarray(nb["image"])) + trans
            delta = q - frac
            delta_wrapped = delta - np.round(delta)
            k = int(np.argmin(np.linalg.norm(delta_wrapped @ structure.lattice.matrix, axis=1)))
            if np.linalg.norm(delta_wrapped[k] @ structure.lattice.matrix) > 10 * symprec:
                neighbors = strategy.get_nn_info(structure, j)  # operation too imprecise
                break
            image = tuple(int(x) for x in np.round(delta[k]))
            neighbors.append({"site_index": k, "image": image, "weight": nb["weight"]})
        infos.append(neighbors)
    return infos


def bonded_structure(structure: Structure, symprec: float = 0.01):
    """CrystalNN bonding as a pymatgen ``StructureGraph`` (symmetry-accelerated)."""
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import CrystalNN

    graph = StructureGraph.from_empty_graph(structure, name="bonds")
    for i, neighbors in enumerate(symmetric_nn_info(structure, CrystalNN(), symprec)):
        for nb in neighbors:
            graph.add_edge(
                from_index=i,
                from_jimage=(0, 0, 0),
                to_index=nb["site_index"],
                to_jimage=nb["image"],
                weight=nb["weight"],
                warn_duplicates=False,
            )
    return graph


def dimensionality(structure: Structure) -> int | None:
    """Larsen dimensionality (0-3) of the CrystalNN-bonded structure; ``None`` if it fails."""
    from pymatgen.analysis.dimensionality import get_dimensionality_larsen

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(get_dimensionality_larsen(bonded_structure(structure)))
    except Exception:  # CrystalNN can fail on exotic coordination; report unknown
        return None


def crystal_system(structure: Structure, symprec: float = 0.1) -> str | None:
    """Crystal system from spglib (``None`` if symmetry detection fails)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return SpacegroupAnalyzer(structure, symprec=symprec).get_crystal_system()
    except Exception:
        return None


def _descriptors_of(structure_dict: dict) -> StructureDescriptors:
    structure = Structure.from_dict(structure_dict)
    return {
        "dimensionality": dimensionality(structure),
        "crystal_system": crystal_system(structure),
    }


def descriptors(
    structures: Mapping[str, Structure],
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, StructureDescriptors]:
    """Dimensionality and crystal system of every structure, in parallel over cores."""
    ids = list(structures)
    processes = processes or os.cpu_count() or 1
    payload = [structures[i].as_dict() for i in ids]
    if processes == 1 or len(ids) < 8:
        results = []
        for item in payload:
            results.append(_descriptors_of(item))
            if progress:
                progress(1)
    else:
        results = []
        with ProcessPoolExecutor(processes) as pool:
            for result in pool.map(_descriptors_of, payload, chunksize=4):
                results.append(result)
                if progress:
                    progress(1)
    return dict(zip(ids, results, strict=False))


def describe(structure: Structure) -> str | None:
    """robocrys's condensed text description (slow: use for top candidates only)."""
    from robocrys import StructureCondenser, StructureDescriber

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            condensed = StructureCondenser().condense_structure(structure)
            return StructureDescriber().describe(condensed)
    except Exception:  # robocrys fails on some unusual bonding; the ranking goes on
        return None
