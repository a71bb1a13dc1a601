"""Static shards: the consecutive slices that a sharded stage runs as one job each.

The prediction stage (:func:`anisoscreen.screening.jobs.predict_in_shards`) shards its
candidate ids and the ionic refine stage
(:class:`anisoscreen.screening.ionic_refine.IonicRefineMaker`) the rows of a ranking; both
cut them here.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["shard_bounds", "shard_ids"]


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive shards of ``shard_size`` over ``n`` items.

    The last shard may be shorter; no items (``n <= 0``) give no shards.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, not {shard_size}")
    return [(start, min(start + shard_size, n)) for start in range(0, max(n, 0), shard_size)]


def shard_ids(ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """``ids`` cut into consecutive shards of ``shard_size`` (the last may be shorter).

    No ids give one empty shard, so that the stage still reports its model.
    """
    return [list(ids[start:stop]) for start, stop in shard_bounds(len(ids), shard_size)] or [[]]
