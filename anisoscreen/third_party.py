"""The private third-party APIs the package calls, each behind one adapter.

A private name (leading underscore) of another package can change in any release. Every such
call goes through this module, which records the versions it was verified with
(:data:`VERIFIED`); ``tests/test_third_party.py`` checks that the installed versions are those,
so an upgrade that could break one fails there first, pointing here.

The results store's montydb internals are the store's own concern (its storage adapter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from importlib.metadata import version
from types import ModuleType
from typing import Any

__all__ = [
    "VERIFIED",
    "crystalnn_semicircle_integral",
    "installed_versions",
    "module_children",
    "run_exit_handlers",
    "sevenn_keys",
]

VERIFIED: dict[str, str] = {
    "pymatgen": "2026.10.24",
    "sevenn": "0.13.0",
    "torch": "2.13.0",
}
"""The package versions whose private APIs below were verified (``torch``: without local tag)."""


def installed_versions() -> dict[str, str]:
    """The installed versions of the packages in :data:`VERIFIED` (local tags dropped)."""
    return {name: version(name).split("+")[0] for name in VERIFIED}


def crystalnn_semicircle_integral(dist_bins: Sequence[float], idx: int) -> float:
    """Pymatgen's ``CrystalNN._semicircle_integral``: the CrystalNN weight of bin ``idx``."""
    from pymatgen.analysis.local_env import CrystalNN

    return CrystalNN._semicircle_integral(dist_bins, idx)


def sevenn_keys() -> ModuleType:
    """SevenNet's private ``sevenn._keys`` module: the names of its graph-data fields."""
    import sevenn._keys as keys

    return keys


def module_children(module: Any) -> Iterator[tuple[str, Any]]:
    """``(name, child)`` of a ``torch.nn.Module``'s private ``_modules``, in order, ``None``s too.

    Unlike ``named_children()``, this keeps every registered slot (and repeats), which is how
    a SevenNet model's sequence of layers is cut at a named layer.
    """
    yield from module._modules.items()


def run_exit_handlers() -> None:
    """What CPython's normal exit does before its teardown, run now, in the same order.

    ``threading._shutdown`` joins the threads a normal exit waits for (with the thread pools'
    own exit hooks), then ``atexit._run_exitfuncs`` runs the exit handlers. Both are private:
    the interpreter's finalisation calls them. A process that then ends by ``os._exit`` has
    done everything a normal exit does but tear the interpreter down.
    """
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
