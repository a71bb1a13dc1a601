"""Out-of-distribution regimes: the data-set entries a starting model is trained without.

A regime is a set of entries a closed-loop campaign should discover without having seen
(:mod:`benchmarks.bench_campaign` ``--ood``):

* ``layered``: every entry the package tags 2D or layered, i.e. Larsen dimensionality 2 of
  its CrystalNN bonds (the ``2D`` error slice) or an empty slab wider than
  :data:`~anisoscreen.model.training.error_slices.LAYER_GAP` (the ``layered_gap`` slice).
  Its exfoliated copies (:mod:`anisoscreen.model.training.exfoliated`) go with it.
* ``chalcogenide``: every telluride and selenide (any structure holding Te or Se).

:func:`regime_indices` gives the members of a regime among data-set entries;
:func:`~anisoscreen.model.training.pipeline.train_model` leaves them out of training and
validation with ``exclude``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Structure

from anisoscreen.bonding import crystalnn_bonds, larsen_dimensionality
from anisoscreen.errors import AnisoscreenError
from anisoscreen.geometry import largest_empty_slab
from anisoscreen.model.training.dataset import DielectricEntry
from anisoscreen.model.training.error_slices import LAYER_GAP

__all__ = ["CHALCOGENS", "REGIMES", "in_regime", "is_chalcogenide", "is_layered", "regime_indices"]

CHALCOGENS = frozenset({"Se", "Te"})
"""Elements whose presence puts a structure in the ``chalcogenide`` regime."""


def is_layered(structure: Structure) -> bool:
    """Whether the package tags ``structure`` 2D (Larsen) or layered (an empty slab).

    An empty slab wider than ``LAYER_GAP`` is checked first (cheap); the CrystalNN bonds only
    when it is absent. A structure whose bonds cannot be found counts as not 2D.
    """
    if largest_empty_slab(structure)[0] > LAYER_GAP:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return larsen_dimensionality(len(structure), crystalnn_bonds(structure)) == 2
    except Exception:  # CrystalNN can fail on exotic coordination: not tagged
        return False


def is_chalcogenide(structure: Structure) -> bool:
    """Whether ``structure`` holds Te or Se."""
    return bool(CHALCOGENS & {el.symbol for el in structure.composition.elements})


REGIMES: dict[str, Callable[[Structure], bool]] = {
    "layered": is_layered,
    "chalcogenide": is_chalcogenide,
}
"""The regimes by name and the test that puts a structure in each."""


def in_regime(structure: Structure, regime: str) -> bool:
    """Whether ``structure`` belongs to ``regime`` (one of :data:`REGIMES`)."""
    if regime not in REGIMES:
        raise AnisoscreenError(f"unknown regime {regime!r}; use one of {sorted(REGIMES)}")
    return REGIMES[regime](structure)


def regime_indices(entries: Sequence[DielectricEntry], regime: str) -> np.ndarray:
    """Sorted indices of the ``entries`` in ``regime``."""
    return np.array(
        [i for i, e in enumerate(entries) if in_regime(e.structure, regime)], dtype=np.int64
    )
