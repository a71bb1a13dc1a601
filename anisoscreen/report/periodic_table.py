"""Grid positions of the elements for periodic-table heat maps.

Main-group and transition elements sit at (period, group) from pymatgen's ``Element.row``
and ``Element.group``. The lanthanides (La-Lu) and actinides (Ac-Lr) are drawn in two
separate rows below the main table, as usual, leaving group 3 of periods 6 and 7 empty.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["F_BLOCK_GAP", "element_position", "grid_positions", "per_element_values"]

F_BLOCK_GAP = 0.5
"""Vertical gap (in cell heights) between period 7 and the lanthanide row."""

_LANTHANIDES = range(57, 72)
_ACTINIDES = range(89, 104)


def element_position(symbol: str) -> tuple[float, int]:
    """(row, column) of an element's cell; rows count from 1 (period 1) downwards.

    Columns are groups 1-18. Lanthanides take row ``8 + F_BLOCK_GAP``, actinides
    ``9 + F_BLOCK_GAP``, in columns 3-17 (La/Ac first).
    """
    from pymatgen.core import Element

    element = Element(symbol)
    z = element.Z
    if z in _LANTHANIDES:
        return 8 + F_BLOCK_GAP, 3 + (z - _LANTHANIDES.start)
    if z in _ACTINIDES:
        return 9 + F_BLOCK_GAP, 3 + (z - _ACTINIDES.start)
    return float(element.row), int(element.group)


@lru_cache(maxsize=1)
def grid_positions(max_z: int = 103) -> dict[str, tuple[float, int]]:
    """Positions of every element up to atomic number ``max_z`` (default: up to Lr)."""
    from pymatgen.core import Element

    return {el.symbol: element_position(el.symbol) for el in Element if max_z >= el.Z}


def per_element_values(element_lists, values=None, reducer: str = "mean") -> dict[str, float]:
    """Aggregate a value per element over materials.

    Parameters
    ----------
    element_lists
        For each material, the elements it contains.
    values
        One value per material (``None`` with ``reducer="count"``).
    reducer
        ``"mean"`` of the values of the materials containing the element, or ``"count"`` of
        those materials.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    values = list(values) if values is not None else [1.0] * len(element_lists)
    for elements, value in zip(element_lists, values, strict=True):
        if value is None:
            continue
        for symbol in set(elements):
            sums[symbol] = sums.get(symbol, 0.0) + float(value)
            counts[symbol] = counts.get(symbol, 0) + 1
    if reducer == "count":
        return {symbol: float(n) for symbol, n in counts.items()}
    if reducer == "mean":
        return {symbol: sums[symbol] / counts[symbol] for symbol in sums}
    raise ValueError(f"unknown reducer {reducer!r}; use 'mean' or 'count'")
