"""Oracle files of simulated campaigns: their shape, checked before anything heavy loads.

An oracle is a JSON(.gz) list of records with a ``material_id``, a pymatgen ``structure``
dict and the labelled eps_inf tensor (3x3) under one of :data:`TENSOR_KEYS`: anisoscreen's
own ``dielectric_tensor``, the shared MP DFPT set's ``eps_electronic`` or an mp-api
``DielectricDoc``'s ``electronic``. So the shared set itself, or any subset of it, is an
oracle; ``anisoscreen.campaign.simulate.build_oracle`` writes the split the shipped model
never trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anisoscreen.candidates.json_cache import read_json
from anisoscreen.errors import AnisoscreenError

__all__ = ["TENSOR_KEYS", "oracle_tensor", "read_oracle_records"]

TENSOR_KEYS = ("dielectric_tensor", "eps_electronic", "electronic")
"""Accepted names of the labelled eps_inf tensor, in order of preference."""


def oracle_tensor(record: dict[str, Any]) -> Any:
    """The labelled tensor of a record (the first of :data:`TENSOR_KEYS` present)."""
    for key in TENSOR_KEYS:
        if record.get(key) is not None:
            return record[key]
    raise KeyError(" or ".join(TENSOR_KEYS))


def _is_3x3(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(row, list) and len(row) == 3 for row in value)
    )


def read_oracle_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of an oracle file, after checking every one's shape (JSON only, fast).

    Raises
    ------
    AnisoscreenError
        The file is missing, not JSON, or a record lacks a ``material_id``, a ``structure``
        dict or a 3x3 tensor; the message names the first bad record and the accepted keys.
    """
    path = Path(path)
    if not path.is_file():
        raise AnisoscreenError(f"oracle file {path} not found")
    try:
        records = read_json(path)
    except (OSError, ValueError) as exc:
        raise AnisoscreenError(f"oracle file {path} is not readable JSON: {exc}") from exc
    expected = (
        f"a list of {{material_id, structure, {' | '.join(TENSOR_KEYS)} (3x3)}}; see "
        "'anisoscreen campaign simulate --help'"
    )
    if not isinstance(records, list) or not records:
        raise AnisoscreenError(f"{path} is not an oracle file: expected {expected}")
    for i, record in enumerate(records):
        problem = None
        if not isinstance(record, dict):
            problem = "not an object"
        elif not record.get("material_id"):
            problem = "no material_id"
        elif not isinstance(record.get("structure"), dict):
            problem = "no structure dict"
        else:
            try:
                tensor = oracle_tensor(record)
            except KeyError:
                problem = f"no {' or '.join(TENSOR_KEYS)}"
            else:
                if not _is_3x3(tensor):
                    problem = "the tensor is not 3x3"
        if problem:
            raise AnisoscreenError(
                f"{path} is not an oracle file: record {i} has {problem}; expected {expected}"
            )
    return records
