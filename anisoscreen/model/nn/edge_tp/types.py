"""What the edge tensor product's backends share: the layer's layout and the weight types.

The backends (:mod:`~anisoscreen.model.nn.edge_tp.torch_path`,
:mod:`~anisoscreen.model.nn.edge_tp.cpu_fused`) read a layer through :class:`EdgeTPLayout`
and never import :mod:`anisoscreen.model.nn.layers`: the layer knows its backends, not the
other way round (an import-linter contract in ``pyproject.toml`` holds this).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch

__all__ = ["EdgeTPLayout", "FusedPlan", "IndexedWeights"]


@dataclass(frozen=True)
class IndexedWeights:
    """Per-edge weights stored once per distinct row: edge ``e`` uses ``table[rows[e]]``.

    The radial weights depend on the edge length only, and a batch of crystals has far fewer
    distinct lengths than edges (the two directions of a bond, symmetry-equivalent bonds:
    about one in seven in a 64-structure batch of the MP oxide pool, float32), so the network
    evaluates its radial MLPs once per distinct length.
    """

    table: torch.Tensor
    rows: torch.Tensor

    def chunk(self, lo: int, hi: int) -> torch.Tensor:
        """The weights of edges ``lo:hi``, one row per edge."""
        return self.table.index_select(0, self.rows[lo:hi])


@dataclass(frozen=True)
class FusedPlan:
    """Column layout of the edge tensor product, one entry per input order ("group").

    Parameters
    ----------
    orders
        ``2 l1 + 1`` of each group.
    cols
        Output columns of each group (its paths' ``2 l3 + 1`` summed).
    weight_offsets
        First column of each group's weights in a row of per-edge weights.
    path_of_col
        For each group, the path (within the group) of every output column, int32.
    mul
        Channels of every order.
    """

    orders: tuple[int, ...]
    cols: tuple[int, ...]
    weight_offsets: tuple[int, ...]
    path_of_col: tuple[torch.Tensor, ...]
    mul: int

    @cached_property
    def weight_numel(self) -> int:
        """Per-edge weights of all groups (each group's paths times ``mul``)."""
        return sum(int(p[-1]) + 1 for p in self.path_of_col) * self.mul

    @cached_property
    def arrays(self) -> tuple:
        """The layout as the kernel's leading ctypes arguments (built once per plan)."""
        count = len(self.orders)
        return (
            count,
            (ctypes.c_int64 * count)(*self.orders),
            (ctypes.c_int64 * count)(*self.cols),
            (ctypes.c_int64 * count)(*self.weight_offsets),
            (ctypes.c_void_p * count)(*[p.data_ptr() for p in self.path_of_col]),
        )


class EdgeTPLayout(Protocol):
    """The layout of an edge tensor product, as a backend reads it.

    Implemented by :class:`~anisoscreen.model.nn.layers.EdgeTensorProduct`.

    Attributes
    ----------
    mul
        Channels of every order.
    l_in, l_out
        Input and output orders, ascending.
    spans
        Per input order ``l1``: ``(paths, 2 l3 + 1)`` of each output order it feeds, in the
        column layout (component-major within a span).
    span_sizes
        Per-edge weights of each span (``paths * mul``), span by span over ``l_in``.
    fused_plan
        The same layout for the fused kernel.
    """

    mul: int
    l_in: list[int]
    l_out: list[int]
    spans: dict[int, list[tuple[int, int]]]
    span_sizes: list[int]
    fused_plan: FusedPlan

    def coupling(self, l1: int) -> torch.Tensor:
        """The ``(sh_dim, cols * (2 l1 + 1))`` Clebsch-Gordan coefficients of order ``l1``."""
        ...

    def assemble(self, blocks: dict[tuple[int, int], list[torch.Tensor]]) -> dict:
        """Output per order from the per-chunk ``(l1, l3)`` blocks."""
        ...
