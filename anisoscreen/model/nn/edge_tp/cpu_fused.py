"""Fused CPU kernel of the edge tensor product, as a ``torch.library`` custom op.

:class:`~anisoscreen.model.nn.layers.EdgeTensorProduct` on CPU spends most of its time writing
and re-reading a per-edge ``(edges, columns, channels)`` tensor: the product of the gathered
source features with the Clebsch-Gordan-contracted spherical harmonics, then its weighting by
the radial weights, then its sum over edges. ``kernels/edge_tp.cpp`` does the gather, the
product, the weighting and the sum in registers, one destination node and eight channels at a
time, and has its own backward pass (gradients with respect to features, weights and
couplings), so it serves training as well as inference.

Building, caching and loading the library is :mod:`anisoscreen.model.nn.edge_tp.kernel`'s
concern (its public names are re-exported here).

The op is registered with ``torch.library.custom_op`` (``anisoscreen::edge_tp_fused``, with a
fake kernel and autograd through ``anisoscreen::edge_tp_fused_backward``), so
``torch.compile`` and ``torch.export`` trace through it.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from anisoscreen.model.nn.edge_tp.kernel import (
    _SUFFIX,
    CACHE_ENV,
    DISABLE_ENV,
    MAX_L,
    UnsafeKernelCacheError,
    cache_dir,
    describe,
    kernel_available,
    library_path,
    load_kernel,
)
from anisoscreen.model.nn.edge_tp.types import EdgeTPLayout, FusedPlan, IndexedWeights

__all__ = [
    "CACHE_ENV",
    "DISABLE_ENV",
    "MAX_L",
    "FusedPlan",
    "UnsafeKernelCacheError",
    "cache_dir",
    "describe",
    "edge_tensor_product",
    "fused_edge_tensor_product",
    "kernel_available",
    "library_path",
    "load_kernel",
]


def _pointers(tensors) -> ctypes.Array | None:
    if tensors is None:
        return None
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


def _shared_arguments(plan, couplings, xs, weights, rows, src, dst) -> tuple:
    """The leading arguments of both kernel entry points, in their order."""
    return (
        *plan.arrays,
        _pointers(couplings),
        _pointers(xs),
        weights.data_ptr(),
        rows.data_ptr(),
        weights.shape[1],
        src.data_ptr(),
        dst.data_ptr(),
        len(src),
    )


_PLANS: dict[tuple, FusedPlan] = {}


def _plan(
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
) -> FusedPlan:
    """The :class:`FusedPlan` of an op call, built (with its ctypes arrays) once per layout.

    The cached plan keeps its ``path_of_col`` tensors alive, so their addresses in the key
    cannot be reused by other tensors while the entry exists.
    """
    key = (tuple(orders), tuple(cols), tuple(offsets), mul, *(p.data_ptr() for p in path_of_col))
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = FusedPlan(tuple(orders), tuple(cols), tuple(offsets), tuple(path_of_col), mul)
        _PLANS[key] = plan
    return plan


@torch.library.custom_op("anisoscreen::edge_tp_fused", mutates_args=())
def edge_tp_fused(
    sources: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    rows: torch.Tensor,
    num_nodes: int,
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
) -> list[torch.Tensor]:
    """Summed messages per group (see :func:`fused_edge_tensor_product`); inputs are checked."""
    plan = _plan(orders, cols, offsets, path_of_col, mul)
    # every element is written by the kernel
    outs = [weights.new_empty((num_nodes, c, mul)) for c in cols]
    library = load_kernel()
    if library is None:
        raise RuntimeError("the fused edge tensor product kernel is not available")
    status = getattr(library, f"edge_tp_forward_{_SUFFIX[weights.dtype]}")(
        *_shared_arguments(plan, couplings, sources, weights, rows, src, dst),
        num_nodes,
        mul,
        _pointers(outs),
        torch.get_num_threads(),
    )
    if status:
        raise RuntimeError("fused edge tensor product: rotational order too large")
    return outs


@edge_tp_fused.register_fake
def _(
    sources, couplings, weights, src, dst, rows, num_nodes, orders, cols, offsets, path_of_col, mul
):
    return [weights.new_empty((num_nodes, c, mul)) for c in cols]


@torch.library.custom_op("anisoscreen::edge_tp_fused_backward", mutates_args=())
def edge_tp_fused_backward(
    grads: list[torch.Tensor],
    sources: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    rows: torch.Tensor,
    orders: list[int],
    cols: list[int],
    offsets: list[int],
    path_of_col: list[torch.Tensor],
    mul: int,
    need_weights: bool,
    need_couplings: bool,
    need_sources: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Gradients of :func:`edge_tp_fused` w.r.t. weights, couplings and sources.

    Those not needed come back empty (shape ``(0,)``).
    """
    plan = _plan(orders, cols, offsets, path_of_col, mul)
    grads = [g.contiguous() for g in grads]
    # edges sharing a row of weights add their gradients into it
    grad_w = torch.zeros_like(weights) if need_weights else None
    grad_xs = [torch.zeros_like(x) for x in sources] if need_sources else None
    blocks = -(-mul // 8)
    # per channel block, summed below (threads split channel blocks)
    partials = [c.new_zeros((blocks, *c.shape)) for c in couplings] if need_couplings else None
    library = load_kernel()
    if library is None:
        raise RuntimeError("the fused edge tensor product kernel is not available")
    status = getattr(library, f"edge_tp_backward_{_SUFFIX[weights.dtype]}")(
        *_shared_arguments(plan, couplings, sources, weights, rows, src, dst),
        mul,
        _pointers(grads),
        _pointers(grad_xs),
        grad_w.data_ptr() if grad_w is not None else None,
        _pointers(partials),
        torch.get_num_threads(),
    )
    if status:
        raise RuntimeError("fused edge tensor product: rotational order too large")
    empty = weights.new_empty((0,))
    return (
        grad_w if grad_w is not None else empty,
        [p.sum(0) for p in partials] if partials is not None else [],
        grad_xs if grad_xs is not None else [],
    )


@edge_tp_fused_backward.register_fake
def _(
    grads,
    sources,
    couplings,
    weights,
    src,
    dst,
    rows,
    orders,
    cols,
    offsets,
    path_of_col,
    mul,
    need_weights,
    need_couplings,
    need_sources,
):
    return (
        torch.empty_like(weights) if need_weights else weights.new_empty((0,)),
        [torch.empty_like(c) for c in couplings] if need_couplings else [],
        [torch.empty_like(x) for x in sources] if need_sources else [],
    )


def _setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
    sources, couplings, weights, src, dst, rows, num_nodes, orders, cols, offsets, paths, mul = (
        inputs
    )
    ctx.layout = (orders, cols, offsets, mul)
    ctx.num_nodes = num_nodes
    ctx.num_paths = len(paths)
    ctx.count = len(sources)
    ctx.needs = (
        weights.requires_grad,
        any(c.requires_grad for c in couplings),
        any(x.requires_grad for x in sources),
    )
    ctx.save_for_backward(src, dst, rows, weights, *couplings, *sources, *paths)


def _backward(ctx: Any, grad_outs: list[torch.Tensor | None]) -> tuple:
    orders, cols, offsets, mul = ctx.layout
    count = ctx.count
    src, dst, rows, weights, *rest = ctx.saved_tensors
    couplings, sources, paths = rest[:count], rest[count : 2 * count], rest[2 * count :]
    grads = [
        g if g is not None else weights.new_zeros((ctx.num_nodes, c, mul))
        for g, c in zip(grad_outs, cols, strict=True)
    ]
    grad_w, grad_c, grad_x = edge_tp_fused_backward(
        grads, list(sources), list(couplings), weights, src, dst, rows,
        orders, cols, offsets, list(paths), mul, *ctx.needs,
    )  # fmt: skip
    need_w, need_c, need_x = ctx.needs
    # one entry per input, lists of tensors as lists (structure checked by torch.library)
    return (
        list(grad_x) if need_x else [None] * count,
        list(grad_c) if need_c else [None] * count,
        grad_w if need_w else None,
        None, None, None, None, None, None, None, [None] * len(paths), None,
    )  # fmt: skip


edge_tp_fused.register_autograd(_backward, setup_context=_setup_context)


def fused_edge_tensor_product(
    plan: FusedPlan,
    x: list[torch.Tensor],
    couplings: list[torch.Tensor],
    weights: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    num_nodes: int,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Summed messages of one chunk of edges, one ``(num_nodes, cols, mul)`` tensor per group.

    Parameters
    ----------
    plan
        The layout of the product (:class:`FusedPlan`).
    x
        Node features per group, ``(all_nodes, 2 l1 + 1, mul)``.
    couplings
        Per group, ``(edges, cols, 2 l1 + 1)``: spherical harmonics contracted with the
        Clebsch-Gordan coefficients.
    weights
        Weight table, ``(rows, weight_numel)``: one row per edge, or with ``rows``, per
        distinct edge length.
    src, dst
        Source node of each edge (index into ``x``) and destination within this chunk's block
        of ``num_nodes`` nodes; edges sorted by ``dst``.
    rows
        Row of ``weights`` of each edge (default: edge ``e`` uses row ``e``).
    """
    dtype = weights.dtype
    if rows is None:
        rows = torch.arange(len(src), device=src.device)
    _check_inputs(plan, x, couplings, weights, src, dst, num_nodes, rows)
    outs = edge_tp_fused(
        [t.to(dtype).contiguous() for t in x],
        [c.to(dtype).contiguous() for c in couplings],
        weights.contiguous(),
        src.to(torch.int64).contiguous(),
        dst.to(torch.int64).contiguous(),
        rows.to(torch.int64).contiguous(),
        num_nodes,
        list(plan.orders),
        list(plan.cols),
        list(plan.weight_offsets),
        list(plan.path_of_col),
        plan.mul,
    )
    return tuple(outs)


def _check_inputs(plan, x, couplings, weights, src, dst, num_nodes, rows) -> None:
    """Shapes and index ranges, checked here: the kernel reads raw memory."""
    num_edges = len(src)
    if weights.dim() != 2 or weights.shape[1] != plan.weight_numel:
        raise ValueError(f"weights: expected (*, {plan.weight_numel}), got {weights.shape}")
    if len(x) != len(plan.orders) or len(couplings) != len(plan.orders):
        raise ValueError(f"expected {len(plan.orders)} feature and coupling tensors")
    num_sources = x[0].shape[0]
    for k, (order, cols) in enumerate(zip(plan.orders, plan.cols, strict=True)):
        if x[k].shape != (num_sources, order, plan.mul):
            raise ValueError(f"features {k}: expected (*, {order}, {plan.mul}), got {x[k].shape}")
        if couplings[k].shape != (num_edges, cols, order):
            raise ValueError(f"couplings {k}: expected {(num_edges, cols, order)}")
    if len(dst) != num_edges or len(rows) != num_edges:
        raise ValueError("src, dst and rows differ in length")
    if num_edges == 0:
        return
    if int(rows.min()) < 0 or int(rows.max()) >= len(weights):
        raise ValueError("weight row out of range")
    if int(src.min()) < 0 or int(src.max()) >= num_sources:
        raise ValueError("source index out of range")
    if int(dst[0]) < 0 or int(dst[-1]) >= num_nodes or bool((dst[1:] < dst[:-1]).any()):
        raise ValueError(f"destinations must be sorted and within [0, {num_nodes})")


def edge_tensor_product(
    tp: EdgeTPLayout,
    x: dict[int, torch.Tensor],
    edge_sh: torch.Tensor,
    edge_weight: torch.Tensor | IndexedWeights,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    chunks: list[tuple[int, int, int, int]],
) -> dict[int, torch.Tensor]:
    """:meth:`EdgeTensorProduct.forward` through the fused kernel, chunk by chunk."""
    dtype = edge_sh.dtype
    sources = [x[l1].to(dtype).contiguous() for l1 in tp.l_in]
    cgs = [tp.coupling(l1).to(dtype) for l1 in tp.l_in]
    blocks: dict[tuple[int, int], list[torch.Tensor]] = {}
    if isinstance(edge_weight, IndexedWeights):
        table, row_index = edge_weight.table.to(dtype), edge_weight.rows
    else:
        table, row_index = edge_weight.to(dtype), None
    for node_lo, node_hi, lo, hi in chunks:
        # the kernel reads each edge's row of the table itself: no per-edge copy
        if row_index is None:
            weights, rows = table[lo:hi], None
        else:
            weights, rows = table, row_index[lo:hi]
        sh = edge_sh[lo:hi]
        couplings = [
            (sh @ cg).view(hi - lo, -1, 2 * l1 + 1) for l1, cg in zip(tp.l_in, cgs, strict=True)
        ]
        summed = fused_edge_tensor_product(
            tp.fused_plan,
            sources,
            couplings,
            weights,
            edge_src[lo:hi],
            edge_dst[lo:hi] - node_lo,
            node_hi - node_lo,
            rows,
        )
        for l1, group in zip(tp.l_in, summed, strict=True):
            spans = tp.spans[l1]
            parts = torch.split(group, [paths * width for paths, width in spans], dim=1)
            for part, (paths, width) in zip(parts, spans, strict=True):
                view = part.view(node_hi - node_lo, width, paths * tp.mul)
                blocks.setdefault((l1, width // 2), []).append(view)
    return tp.assemble(blocks)
