"""Reading a nested document's value by a dotted path (``"a.b.c"``).

Both the results store (its query fields and unique keys) and the OPTIMADE paging (a
provider's nested attributes, e.g. ``_mp_stability.gga_gga+u_r2scan.energy_above_hull``)
address values this way; this module, at the lowest layer, is the one implementation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_path"]


def get_path(document: dict[str, Any], path: str | None) -> Any:
    """``document``'s value at the dotted ``path``.

    Parameters
    ----------
    document
        A (nested) dict, e.g. a stored document or an OPTIMADE entry's attributes.
    path
        Keys joined by dots; ``None`` means no such field.

    Returns
    -------
    Any
        The value, or ``None`` when ``path`` is ``None``, a key is missing, or a step on the way
        is not a dict.
    """
    if path is None:
        return None
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
