"""How many sites a CIF can expand to, known before pymatgen expands it.

A CIF lists the asymmetric unit and the symmetry operations; pymatgen applies every
operation to every listed position. 500 general positions in Fm-3m (192 operations) make
96,000 sites, which takes minutes. :func:`cif_site_bound` reads the CIF's blocks without
expanding them and returns positions x operations summed over the blocks (pymatgen parses
them all): an upper bound of the site count, reached when every position is general.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_CIF_SITES", "MAX_SPACE_GROUP_ORDER", "cif_site_bound", "cif_size_error"]

MAX_CIF_SITES = 5000
"""Largest site bound (positions x symmetry operations) read from one CIF."""
MAX_SPACE_GROUP_ORDER = 192
"""Most operations of a space group (Fm-3m and the other cubic F groups, conventional cell)."""

_OPERATIONS = re.compile(r"(symop_operation_xyz|equiv_pos_as_xyz)_?$", re.IGNORECASE)
_SYMBOL = re.compile(r"space_group_name|space_group_symbol", re.IGNORECASE)
_NUMBER = re.compile(r"(int_tables_number|space_group_it_number)_?$", re.IGNORECASE)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 1


def _group_order(data: dict[str, Any]) -> int:
    """Operations of the block's space group: listed, else from its symbol or number."""
    from pymatgen.symmetry.groups import SpaceGroup

    listed = [_length(v) for k, v in data.items() if _OPERATIONS.search(k)]
    if listed:
        return max(listed)
    named = False
    for key, value in data.items():
        if not isinstance(value, str) or value in ("?", "."):
            continue
        try:
            if _SYMBOL.search(key):
                named = True
                return SpaceGroup(re.sub(r"[\s_]", "", value)).order
            if _NUMBER.search(key):
                named = True
                return SpaceGroup.from_int_number(int(value)).order
        except Exception:  # a symbol pymatgen reads differently: assume the worst
            continue
    return MAX_SPACE_GROUP_ORDER if named else 1


def cif_site_bound(text: str) -> int:
    """Positions x symmetry operations of every block of the CIF ``text``, summed."""
    from pymatgen.io.cif import CifFile

    total = 0
    for block in CifFile.from_str(text).data.values():
        rows = max(
            (_length(v) for k, v in block.data.items() if k.lower().startswith("_atom_site_")),
            default=0,
        )
        if rows:
            total += rows * _group_order(block.data)
    return total


def cif_size_error(text: str, limit: int | None = None) -> str | None:
    """Why the CIF ``text`` is too large to expand (one line), or ``None``."""
    limit = MAX_CIF_SITES if limit is None else limit
    bound = cif_site_bound(text)
    if bound <= limit:
        return None
    return (
        f"the CIF expands to up to {bound} sites (positions x symmetry operations), more than "
        f"the {limit} read from one file"
    )
