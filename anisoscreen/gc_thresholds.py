"""The garbage collector's thresholds for one ``anisoscreen`` command.

A screen keeps every structure it parses until its last stage (pymatgen sites and their
compositions: millions of objects for a pool of a few thousand), and CPython 3.11 runs a full
collection each time the objects that survived grow by a quarter, each one traversing them all.
A cold ``run-screen`` of the 3,688-structure pool spent 2.6 s of its main thread in 11 such
collections on 2 cores, 2.9 s in all collections (``gc_seconds`` in
``benchmarks/bench_screening.py --cli``; 0.3-0.4 s at these thresholds).
The package makes no reference cycles that need prompt collection, so a command collects
less often, as mypy does for the same reason: the youngest generation every
:data:`YOUNG_THRESHOLD` allocations, the older ones after :data:`OLDER_THRESHOLD` of the
younger's collections. Library callers keep their own settings: only the console script
(:func:`anisoscreen.cli.run`) sets these.
"""

from __future__ import annotations

import gc

__all__ = ["OLDER_THRESHOLD", "YOUNG_THRESHOLD", "set_command_thresholds"]

YOUNG_THRESHOLD = 100_000
"""Allocations (less deallocations) between collections of the youngest generation."""
OLDER_THRESHOLD = 50
"""Collections of a generation between two of the next older one."""


def set_command_thresholds() -> None:
    """Collect garbage at the thresholds of an ``anisoscreen`` command (for this process)."""
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
