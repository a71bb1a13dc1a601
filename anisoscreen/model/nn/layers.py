"""Equivariant building blocks, written for speed on CPU and GPU.

Features are kept as one tensor per rotational order ``l``: ``x[l]`` has shape
``(nodes, 2l + 1, channels_l)`` in e3nn's real spherical-harmonic basis (channels last, so
that per-channel weights broadcast over contiguous memory). All irreps have
natural parity (0e, 1o, 2e, 3o, ...), so only tensor-product paths with ``l1 + l2 + l3``
even are used.

Two observations make the network much faster than a direct e3nn composition while computing
the same family of functions:

* a tensor product of features with **scalar** node attributes that depend only on the element
  (``FullyConnectedTensorProduct(x, 48x0e)``) equals an element-specific linear map, so
  :class:`AttributeLinear` contracts the weights with the attributes of the few elements in a
  batch, not of every atom;
* :class:`EdgeTensorProduct` contracts the Clebsch-Gordan coefficients with the edge's
  spherical harmonics first and then performs one batched matrix product per input order,
  instead of one outer product per path; its output columns are laid out so that the per-path
  weights scale contiguous rows and the sums over edges are already in the output layout.
  On CPU, a fused kernel (:mod:`anisoscreen.model.nn.edge_tp.cpu_fused`) gathers, multiplies,
  weights and
  sums in registers instead, with its own backward pass; the PyTorch path serves GPUs and
  machines without a C++ compiler, and the two agree to rounding (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from e3nn import o3
from torch import nn

from anisoscreen.model.nn import edge_tp
from anisoscreen.model.nn.edge_tp.types import FusedPlan, IndexedWeights

__all__ = [
    "AttributeLinear",
    "EdgeTensorProduct",
    "Gate",
    "IndexedWeights",
    "irrep_paths",
    "node_aligned_chunks",
]

Features = list[torch.Tensor]


def irrep_paths(l_in: list[int], lmax_sh: int, l_out: list[int]) -> list[tuple[int, int, int]]:
    """Natural-parity tensor-product paths ``(l1, l2, l3)``, ordered by ``l1`` then ``l3``."""
    paths = []
    for l1 in sorted(set(l_in)):
        for l3 in sorted(set(l_out)):
            for l2 in range(lmax_sh + 1):
                if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0:
                    paths.append((l1, l2, l3))
    return paths


class AttributeLinear(nn.Module):
    """Equivariant linear map whose weights depend on scalar node attributes.

    Computes ``out[l][n, w] = sum_{u, v} W_l[u, v, w] x[l][n, u] a[n, v] / sqrt(U V)``,
    i.e. e3nn's ``FullyConnectedTensorProduct(x, Vx0e)``. The attributes are per element, so the
    weights are contracted once per element present and applied to that element's atoms in one
    matrix product; the nodes must be ordered by element (``species_counts`` atoms each), which
    :class:`~anisoscreen.model.nn.network.AnisoNet` arranges once per forward pass.

    Parameters
    ----------
    channels_in, channels_out
        Channels per ``l`` (dict ``l -> channels``); orders missing from the input are skipped.
    attr_dim
        Length of the scalar attribute vector.
    """

    def __init__(self, channels_in: dict[int, int], channels_out: dict[int, int], attr_dim: int):
        super().__init__()
        self.orders = [l for l in sorted(channels_out) if l in channels_in]
        self.channels_out = channels_out
        self.weights = nn.ParameterDict(
            {
                str(l): nn.Parameter(torch.randn(channels_in[l], attr_dim, channels_out[l]))
                for l in self.orders
            }
        )
        self.norm = {l: 1.0 / math.sqrt(channels_in[l] * attr_dim) for l in self.orders}

    def forward(
        self, x: dict[int, torch.Tensor], species_attr: torch.Tensor, species_counts: list[int]
    ) -> dict[int, torch.Tensor]:
        out = {}
        for l in self.orders:
            weight = torch.einsum("sv,uvw->suw", species_attr, self.weights[str(l)]) * self.norm[l]
            pieces = [
                # (n_s, 2l+1, u) @ (u, w) -> (n_s, 2l+1, w); unbind, not weight[s]: the
                # gradient of each index would be a zero-filled copy of all the weights
                (nodes.reshape(-1, nodes.shape[-1]) @ weight_s).view(*nodes.shape[:2], -1)
                for nodes, weight_s in zip(
                    torch.split(x[l], species_counts), weight.unbind(0), strict=True
                )
            ]
            out[l] = torch.cat(pieces)
        return out


class EdgeTensorProduct(nn.Module):
    """Per-edge ``uvu`` tensor product of neighbour features with spherical harmonics.

    For every path ``(l1, l2, l3)`` and channel ``u``:
    ``m[e, :, u] = w[e, p, u] * C^{l1 l2 l3} : (x[l1][src_e, :, u] (x) Y_l2(r_e))``,
    summed into the destination node. ``C`` is e3nn's Wigner 3j symbol scaled by
    ``sqrt(2 l3 + 1)`` (component normalisation).

    Parameters
    ----------
    channels
        Input channels per ``l`` (every order has the same count ``mul``).
    lmax_sh
        Highest order of the edge spherical harmonics.
    l_out
        Output orders to produce.
    edge_chunk
        Edges processed at once; bounds the per-edge intermediates (couplings, and on the
        PyTorch path the gathered weights and ~``edge_chunk * mul * cols`` products) whatever
        the batch size. Default on CPU: 4096 with the fused kernel
        (:mod:`anisoscreen.model.nn.edge_tp.cpu_fused`), else 1024 (the products stay in cache:
        ~1.5x faster
        than one pass at the paper's size); 65536 on GPUs.
    """

    def __init__(
        self,
        channels: dict[int, int],
        lmax_sh: int,
        l_out: list[int],
        edge_chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.edge_chunk = edge_chunk
        muls = set(channels.values())
        if len(muls) != 1:
            raise ValueError("EdgeTensorProduct needs the same multiplicity for every order")
        self.mul = muls.pop()
        self.paths = irrep_paths(list(channels), lmax_sh, l_out)
        self.l_in = sorted({p[0] for p in self.paths})
        self.l_out = sorted({p[2] for p in self.paths})
        sh_dim = (lmax_sh + 1) ** 2
        # Per input order l1, its paths into each output order l3 form a "span" of output
        # columns, laid out component-major: column m * paths + p holds component m of path p,
        # so a span of the (edges, cols, mul) products reads (edges, 2l3+1, paths * mul), the
        # layout of the output channels (path-major, then mul), and the per-path weights
        # (edges, paths * mul) broadcast over the 2l3+1 components.
        # cg_{l1}: (sh_dim, cols * (2l1+1)) coefficients; spans: (paths, 2l3+1). The weights
        # are laid out path by path in the order of self.paths, i.e. span by span.
        self.spans: dict[int, list[tuple[int, int]]] = {}
        for l1 in self.l_in:
            group = [p for p in self.paths if p[0] == l1]
            cols = sum(2 * l3 + 1 for _, _, l3 in group)
            block = torch.zeros(sh_dim, cols, 2 * l1 + 1, dtype=torch.float64)  # (j, m, i)
            spans, col = [], 0
            for l3 in sorted({p[2] for p in group}):
                members = [p for p in group if p[2] == l3]
                width = 2 * l3 + 1
                for k, (_, l2, _) in enumerate(members):
                    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)
                    columns = slice(col + k, col + width * len(members), len(members))
                    block[l2 * l2 : (l2 + 1) ** 2, columns] = w3j.permute(1, 2, 0)
                spans.append((len(members), width))
                col += width * len(members)
            self.register_buffer(f"cg_{l1}", block.reshape(sh_dim, -1), persistent=False)
            self.spans[l1] = spans
        self.span_sizes = [p * self.mul for l1 in self.l_in for p, _ in self.spans[l1]]
        self.fused_plan = self._make_fused_plan()
        self.channels_out = {
            l3: self.mul * sum(1 for p in self.paths if p[2] == l3) for l3 in self.l_out
        }

    def _make_fused_plan(self) -> FusedPlan:
        """The column -> path map of every input order, for the fused CPU kernel."""
        orders, cols, offsets, path_of_col = [], [], [], []
        offset = 0
        for l1 in self.l_in:
            columns, first_path = [], 0
            for paths, width in self.spans[l1]:
                # span column m * paths + k holds component m of the span's path k
                columns += [first_path + k for _ in range(width) for k in range(paths)]
                first_path += paths
            orders.append(2 * l1 + 1)
            cols.append(len(columns))
            offsets.append(offset)
            path_of_col.append(torch.tensor(columns, dtype=torch.int32))
            offset += first_path * self.mul
        return FusedPlan(tuple(orders), tuple(cols), tuple(offsets), tuple(path_of_col), self.mul)

    @property
    def weight_numel(self) -> int:
        """Number of per-edge weights (one per path and channel)."""
        return len(self.paths) * self.mul

    def chunk_size(self, device: torch.device) -> int:
        """Edges per chunk on ``device``."""
        if self.edge_chunk:
            return self.edge_chunk
        return edge_tp.default_chunk_size(device)

    def forward(
        self,
        x: dict[int, torch.Tensor],
        edge_sh: torch.Tensor,
        edge_weight: torch.Tensor | IndexedWeights,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        chunks: list[tuple[int, int, int, int]],
    ) -> dict[int, torch.Tensor]:
        """Return the summed messages per output order, shape (nodes, 2l+1, channels_out[l]).

        ``edge_weight`` is the (edges, weight_numel) tensor, or :class:`IndexedWeights` (one
        row per distinct edge length). ``chunks`` come from :func:`node_aligned_chunks`
        (edges sorted by ``edge_dst``): each chunk of edges sums into its own block of
        destination nodes, and the blocks together cover every node.
        """
        return edge_tp.edge_tensor_product(
            self, x, edge_sh, edge_weight, edge_src, edge_dst, chunks
        )

    def coupling(self, l1: int) -> torch.Tensor:
        """The ``(sh_dim, cols * (2 l1 + 1))`` Clebsch-Gordan coefficients of order ``l1``."""
        return getattr(self, f"cg_{l1}")

    def assemble(self, blocks: dict[tuple[int, int], list[torch.Tensor]]) -> dict:
        """Output per order from the per-chunk ``(l1, l3)`` blocks."""
        # channels of an output order: its paths one after the other (by l1, then l2), mul each
        return {
            l3: torch.cat(
                [torch.cat(blocks[(l1, l3)]) for l1 in self.l_in if (l1, l3) in blocks], dim=2
            )
            for l3 in self.l_out
        }


def node_aligned_chunks(
    edge_dst: torch.Tensor, num_nodes: int, edge_chunk: int
) -> list[tuple[int, int, int, int]]:
    """Split edges sorted by destination into ``(node_lo, node_hi, edge_lo, edge_hi)`` spans.

    Spans cover every node exactly once and hold about ``edge_chunk`` edges each, never
    splitting one node's edges, so each span's messages sum into a separate block of nodes.
    """
    counts = torch.bincount(edge_dst, minlength=num_nodes).cpu().numpy()
    pointer = np.concatenate([[0], np.cumsum(counts)])
    num_edges = int(pointer[-1])
    targets = np.arange(edge_chunk, num_edges, edge_chunk)
    bounds = np.unique(np.concatenate([[0], np.searchsorted(pointer, targets), [num_nodes]]))
    return [
        (int(a), int(b), int(pointer[a]), int(pointer[b]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


class Gate(nn.Module):
    """Gated non-linearity: ReLU on scalars, sigmoid scalar gates scaling each l > 0 channel.

    The ``l = 0`` input holds ``mul`` scalars followed by one gate per gated channel.
    """

    def __init__(self, mul: int, gated_orders: list[int]) -> None:
        super().__init__()
        self.mul = mul
        self.gated_orders = gated_orders

    def forward(self, x: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        scalars = x[0][..., : self.mul]
        gates = torch.sigmoid(x[0][..., self.mul :])  # (nodes, 1, gates)
        out = {0: torch.relu(scalars)}
        for k, l in enumerate(self.gated_orders):
            out[l] = x[l] * gates[..., k * self.mul : (k + 1) * self.mul]
        return out
