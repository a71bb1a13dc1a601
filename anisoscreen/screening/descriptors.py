"""Ranking descriptors: structural dimensionality, crystal system, and the a_r ordering.

Dimensionality follows the reference paper: bonds from CrystalNN, then Larsen et al.'s
algorithm gives 0D/1D/2D/3D connectivity (:mod:`anisoscreen.bonding` computes both,
identical to pymatgen's but ~10x faster). spglib runs once per structure: its 0.1 Å
dataset gives the crystal system and the symmetry operations the bonding reuses. It still
costs ~20 ms per cell, so it runs in parallel over cores. robocrys's full text description
(~2 s a structure, plus ~10 s to import) is offered only for the top candidates.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import cast

from pymatgen.core import Structure

from anisoscreen.worker_lifetime import pool_initializer_args

__all__ = [
    "DESCRIPTOR_VERSION",
    "MIN_PARALLEL",
    "DescriptorJobs",
    "StructureDescriptors",
    "crystal_system",
    "describe",
    "descriptors",
    "dimensionality",
    "iter_descriptors",
]

StructureDescriptors = dict[str, object]

DESCRIPTOR_VERSION = 1
"""Version of what :func:`iter_descriptors` computes; raise it when a result would change,
so that descriptors cached under the old one are recomputed."""

MIN_PARALLEL = 8
"""Fewest structures worth worker processes (fewer are computed in the calling process)."""


def dimensionality(structure: Structure, dataset=None) -> int | None:
    """Larsen dimensionality (0-3) of the CrystalNN-bonded structure; ``None`` if it fails.

    ``dataset``: the structure's spglib dataset, when already computed (see
    :func:`~anisoscreen.bonding.crystalnn_bonds`).
    """
    from anisoscreen.bonding import crystalnn_bonds, larsen_dimensionality

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return larsen_dimensionality(
                len(structure), crystalnn_bonds(structure, dataset=dataset)
            )
    except Exception:  # CrystalNN can fail on exotic coordination; report unknown
        return None


def crystal_system(structure: Structure, symprec: float = 0.1) -> str | None:
    """Crystal system from spglib (``None`` if symmetry detection fails)."""
    return _crystal_system_of(_analyzer(structure, symprec))


def _crystal_system_of(analyzer) -> str | None:
    try:
        return analyzer.get_crystal_system() if analyzer is not None else None
    except Exception:
        return None


def _analyzer(structure: Structure, symprec: float):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return SpacegroupAnalyzer(structure, symprec=symprec)
    except Exception:
        return None


def _descriptors_of(given: Structure | dict | tuple) -> StructureDescriptors:
    """Dimensionality, crystal system and space group from one spglib run (0.1 Å).

    ``given`` may also be what worker processes receive: a compact ``(lattice, species,
    frac_coords)`` tuple of an ordered structure, or a structure dict.
    """
    if isinstance(given, tuple):
        lattice, species, frac_coords, properties = given
        structure = Structure(lattice, species, frac_coords, site_properties=properties)
    elif isinstance(given, dict):
        structure = Structure.from_dict(given)
    else:
        structure = given
    analyzer = _analyzer(structure, 0.1)
    if analyzer is None:
        return {
            "dimensionality": dimensionality(structure),
            "crystal_system": None,
            "space_group_symbol": None,
            "space_group_number": None,
        }
    return {
        "dimensionality": dimensionality(structure, analyzer.get_symmetry_dataset()),
        "crystal_system": _crystal_system_of(analyzer),
        **_space_group_of(analyzer),
    }


def _space_group_of(analyzer) -> dict[str, object]:
    """Hermann-Mauguin symbol and number of the space group (``None`` when it fails)."""
    try:
        return {
            "space_group_symbol": analyzer.get_space_group_symbol(),
            "space_group_number": int(analyzer.get_space_group_number()),
        }
    except Exception:
        return {"space_group_symbol": None, "space_group_number": None}


def iter_descriptors(
    structures: Mapping[str, Structure],
    processes: int | None = None,
) -> Iterator[tuple[str, StructureDescriptors]]:
    """``(material_id, descriptors)`` of every structure, in order, as each is computed.

    Runs in parallel over cores; the workers die with this process (no orphan survives a
    killed CLI), and a consumer can store results as they come, so a kill keeps them.
    """
    with DescriptorJobs(structures, processes) as jobs:
        for key in structures:
            yield key, jobs.result(key)


class DescriptorJobs:
    """Descriptors of structures computed in worker processes while the caller goes on.

    Every structure is handed to the workers at once (``processes`` of them, ``None``: one
    per core; a few at a time, as compact arrays), and :meth:`add` hands over more;
    :meth:`result` takes one by key, in any order, waiting only if it is not done yet, and
    :meth:`finished` takes all those done without waiting. With one process or fewer than
    :data:`MIN_PARALLEL` structures nothing runs in the background unless ``background``:
    :meth:`result` computes in this process. The workers die with this process; leaving the
    ``with`` block (or :meth:`close`) cancels what was not started. ``background`` workers
    import the descriptor modules themselves, so that the caller's core does not wait on that.
    """

    def __init__(
        self,
        structures: Mapping[str, Structure],
        processes: int | None = None,
        chunk: int = 4,
        background: bool = False,
    ) -> None:
        self._structures: dict[str, Structure] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[str, tuple[Future, int]] = {}
        self._chunk = chunk
        processes = processes or os.cpu_count() or 1
        if background or (processes > 1 and len(structures) >= MIN_PARALLEL):
            if not background:  # imported here once: the forked workers inherit the modules
                import pymatgen.symmetry.analyzer  # noqa: F401

                import anisoscreen.bonding  # noqa: F401

            self._pool = ProcessPoolExecutor(processes, **pool_initializer_args())
        self.add(structures)

    def add(self, structures: Mapping[str, Structure]) -> None:
        """Hand more structures to the workers (a key already given is not computed again)."""
        new = {k: s for k, s in structures.items() if k not in self._structures}
        self._structures.update(new)
        if self._pool is None:
            return
        keys = list(new)
        for start in range(0, len(keys), self._chunk):
            part = keys[start : start + self._chunk]
            future = self._pool.submit(_descriptors_of_many, [_payload(new[k]) for k in part])
            for position, key in enumerate(part):
                self._futures[key] = (future, position)

    def finished(self) -> dict[str, StructureDescriptors]:
        """The descriptors the workers have finished, by key (none is computed here)."""
        done: dict[str, StructureDescriptors] = {}
        for key, (future, position) in self._futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                done[key] = cast(StructureDescriptors, future.result()[position])
        return done

    def __len__(self) -> int:
        return len(self._structures)

    def __contains__(self, key: object) -> bool:
        return key in self._structures

    def done(self, key: str) -> bool:
        """Whether :meth:`result` of ``key`` returns without waiting for a worker."""
        entry = self._futures.get(key)
        return entry is None or entry[0].done()

    def result(self, key: str) -> StructureDescriptors:
        """The descriptors of structure ``key`` (waits for its worker if needed)."""
        entry = self._futures.get(key)
        if entry is None:
            return _descriptors_of(self._structures[key])
        future, position = entry
        return cast(StructureDescriptors, future.result()[position])

    def close(self) -> None:
        """Cancel the work not started and let the workers end."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> DescriptorJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _descriptors_of_many(given: list[Structure | dict | tuple]) -> list[StructureDescriptors]:
    """:func:`_descriptors_of` of each of a few structures (one task of a worker)."""
    return [_descriptors_of(one) for one in given]


def _payload(structure: Structure) -> tuple | dict:
    """What a worker process needs to rebuild ``structure`` (arrays, cheaper than a dict)."""
    if structure.is_ordered:
        species = [site.specie for site in structure]
        return (structure.lattice.matrix, species, structure.frac_coords, structure.site_properties)
    return structure.as_dict()


def descriptors(
    structures: Mapping[str, Structure],
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, StructureDescriptors]:
    """Dimensionality and crystal system of every structure, in parallel over cores."""
    results = {}
    for material_id, values in iter_descriptors(structures, processes):
        results[material_id] = values
        if progress:
            progress(1)
    return results


def describe(structure: Structure) -> str | None:
    """Robocrys's condensed text description (slow: use for top candidates only)."""
    from robocrys import StructureCondenser, StructureDescriber

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            condensed = StructureCondenser().condense_structure(structure)
            return cast(str, StructureDescriber().describe(condensed))
    except Exception:  # robocrys fails on some unusual bonding; the ranking goes on
        return None
