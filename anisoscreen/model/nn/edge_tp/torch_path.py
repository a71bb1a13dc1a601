"""The reference path of the edge tensor product, in PyTorch: any device, dtype and order.

One batched matrix product per input order gives every path's per-edge products in
:class:`~anisoscreen.model.nn.layers.EdgeTensorProduct`'s column layout; the per-path weights
scale contiguous columns and one scatter per chunk sums them into the destination nodes. The
other backends of :mod:`anisoscreen.model.nn.edge_tp` are tested against it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from anisoscreen.model.nn.edge_tp.types import EdgeTPLayout, IndexedWeights

__all__ = ["edge_tensor_product"]


def edge_tensor_product(
    tp: EdgeTPLayout,
    x: dict[int, torch.Tensor],
    edge_sh: torch.Tensor,
    edge_weight: torch.Tensor | IndexedWeights,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    chunks: list[tuple[int, int, int, int]],
) -> dict[int, torch.Tensor]:
    """``tp.forward`` (:class:`~anisoscreen.model.nn.layers.EdgeTensorProduct`) in PyTorch."""
    dtype = edge_sh.dtype
    # Under autograd, gather the sources of all edges at once and weight out of place:
    # the gradient of each per-chunk gather or in-place update is a zero-filled copy of
    # the whole input. Without autograd, gather per chunk and weight in place (less memory).
    differentiable = torch.is_grad_enabled()
    if differentiable:
        sizes = [hi - lo for _, _, lo, hi in chunks]
        sources = {l1: torch.split(x[l1].index_select(0, edge_src), sizes) for l1 in tp.l_in}
    # per (l1, l3): summed messages of each chunk, (nodes, 2l3+1, paths * mul)
    blocks: dict[tuple[int, int], list[torch.Tensor]] = {}
    # edges in chunks: the (edges, cols, mul) intermediates stay cache- and memory-sized
    for k, (node_lo, node_hi, lo, hi) in enumerate(chunks):
        if isinstance(edge_weight, IndexedWeights):
            weights = edge_weight.chunk(lo, hi)
        else:
            weights = edge_weight[lo:hi]
        # per span, in order (split, not slices: under autograd each slice's gradient
        # would be a zero-filled copy of all the weights)
        span_weights = iter(torch.split(weights, tp.span_sizes, dim=1))
        num, dst = hi - lo, edge_dst[lo:hi] - node_lo
        for l1 in tp.l_in:
            spans = tp.spans[l1]
            # (e, sh_dim) @ (sh_dim, cols * (2l1+1)) -> (e, cols, 2l1+1), contiguous
            cg = tp.coupling(l1).to(dtype)
            coupling = (edge_sh[lo:hi] @ cg).view(num, -1, 2 * l1 + 1)
            # (e, 2l1+1, mul)
            source = sources[l1][k] if differentiable else x[l1].index_select(0, edge_src[lo:hi])
            messages = _scalar_messages if l1 == 0 else _tensor_messages
            summed = messages(tp, coupling, source, span_weights, spans, dst, node_hi - node_lo)
            for (_, width), block_l3 in zip(spans, summed, strict=True):
                blocks.setdefault((l1, width // 2), []).append(block_l3)
    return tp.assemble(blocks)


def _tensor_messages(
    tp: EdgeTPLayout,
    coupling: torch.Tensor,
    source: torch.Tensor,
    span_weights: Iterator[torch.Tensor],
    spans: list[tuple[int, int]],
    dst: torch.Tensor,
    num_nodes: int,
) -> list[torch.Tensor]:
    """Summed messages of l1 > 0 sources, one (nodes, 2l3+1, paths * mul) per span.

    One batched product gives every path's (edges, cols, mul) products; each span's
    weights then scale its contiguous columns. Without autograd this happens in place and
    one scatter sums all spans; under autograd out of place, one scatter per span.
    """
    num, mul = len(coupling), tp.mul
    products = torch.bmm(coupling, source)  # (e, cols, mul)
    sizes = [paths * width for paths, width in spans]
    parts = [
        part.view(num, width, paths * mul)
        for part, (paths, width) in zip(torch.split(products, sizes, dim=1), spans, strict=True)
    ]
    if torch.is_grad_enabled():
        summed = []
        for part in parts:
            weighted = part * next(span_weights)[:, None]
            block = weighted.new_zeros((num_nodes, *weighted.shape[1:]))
            summed.append(block.index_add_(0, dst, weighted))
        return summed
    for part in parts:
        part.mul_(next(span_weights)[:, None])
    block = products.new_zeros((num_nodes, *products.shape[1:]))
    block.index_add_(0, dst, products)
    return [
        part.view(num_nodes, width, paths * mul)
        for part, (paths, width) in zip(torch.split(block, sizes, dim=1), spans, strict=True)
    ]


def _scalar_messages(
    tp: EdgeTPLayout,
    coupling: torch.Tensor,
    source: torch.Tensor,
    span_weights: Iterator[torch.Tensor],
    spans: list[tuple[int, int]],
    dst: torch.Tensor,
    num_nodes: int,
) -> list[torch.Tensor]:
    """Summed messages of scalar (l1 = 0) sources, one (nodes, 2l3+1, paths * mul) per span.

    With one input component the product is an outer product, so the per-path weights
    scale the (edges, mul) sources before it rather than the (edges, 2l3+1, mul) result.
    """
    num, mul = len(coupling), tp.mul
    parts = torch.split(coupling, [p * width for p, width in spans], dim=1)
    summed = []
    for part, (paths, width) in zip(parts, spans, strict=True):
        weighted_source = next(span_weights).view(num, 1, paths, mul) * source[:, None]
        messages = part.view(num, width, paths, 1) * weighted_source
        block = messages.new_zeros((num_nodes, width, paths, mul))
        summed.append(block.index_add_(0, dst, messages).flatten(2))
    return summed
