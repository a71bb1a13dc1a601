"""Tabulated elemental properties, a fixed per-element input for the networks.

A one-hot embedding learns each element from the structures that hold it; an element seen in
a few dozen training crystals gets a poorly determined embedding. Electronegativity, radii,
ionisation energy, electron affinity and the place in the periodic table carry what the
element's polarisability depends on, and they are the same for every element, seen or not.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["ELEMENT_PROPERTIES", "element_property_table"]

ELEMENT_PROPERTIES = (
    "X",  # Pauling electronegativity
    "atomic_radius",
    "average_ionic_radius",
    "ionization_energy",
    "electron_affinity",
    "row",
    "group",
)
"""The pymatgen ``Element`` attributes tabulated, in column order."""


def _value(element: Any, name: str) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = getattr(element, name)
        return float(value) if value is not None else float("nan")
    except (ValueError, TypeError, AttributeError, KeyError):
        return float("nan")


@lru_cache(maxsize=1)
def element_property_table(num_elements: int = 118) -> np.ndarray:
    """(num_elements + 1, len(ELEMENT_PROPERTIES)) standardised properties; row ``Z``, row 0 zero.

    Each column is shifted and scaled to zero mean and unit variance over the elements that
    have the property; a missing value (no electronegativity for most noble gases, for
    example) is the column mean, zero.
    """
    from pymatgen.core import Element

    raw = np.array(
        [
            [_value(Element.from_Z(z), name) for name in ELEMENT_PROPERTIES]
            for z in range(1, num_elements + 1)
        ]
    )
    mean, std = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
    table = np.nan_to_num((raw - mean) / np.where(std > 0, std, 1.0), nan=0.0)
    out = np.zeros((num_elements + 1, len(ELEMENT_PROPERTIES)))
    out[1:] = table
    out.setflags(write=False)
    return out
