"""What a model file says about itself, read without torch.

A model file is a ``torch.save`` archive: a zip whose ``<name>/data.pkl`` is the pickled
payload, in which every tensor is a call to a ``torch`` function on a storage kept outside the
pickle (see :mod:`anisoscreen.model.checkpoint`). Its name, version, config and metadata are
plain Python values, so they can be read without importing torch (about a second on 2 cores),
which is what a screen's candidate stage and a repeated screen need of a model. The pickle is
read by an unpickler that knows only ``collections.OrderedDict`` and stands a placeholder in for
every ``torch`` name; any other name stops it, so nothing in the file is ever imported or run.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["read_header"]


def read_header(path: Path, model_format: str) -> dict[str, Any] | None:
    """The payload of model file ``path`` without its weights (``state_dicts`` dropped).

    ``None`` when the file is not a zip holding one pickled dict of ``model_format``: the
    caller then reads it with ``torch.load``, which gives the errors of a damaged file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(names) != 1:
                return None
            with archive.open(names[0]) as pickled:
                payload = _HeaderUnpickler(pickled).load()
    except Exception:  # anything unexpected: torch.load reads it, or says what is wrong
        return None
    if not isinstance(payload, dict) or payload.get("format") != model_format:
        return None
    payload.pop("state_dicts", None)
    return payload


def _placeholder(*_: object) -> None:
    """What a ``torch`` name reads as: a tensor, a storage or a dtype is not needed here."""


class _HeaderUnpickler(pickle.Unpickler):
    """Reads plain values and ``OrderedDict``s; every ``torch`` name becomes a placeholder."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _placeholder
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a model file")

    def persistent_load(self, pid: Any) -> None:
        """A tensor's storage, kept outside the pickle: not read."""
