"""AnisoNet-style equivariant graph network for the dielectric tensor.

Design (Lou & Ganose, Faraday Discuss. 2025; Chen et al., Adv. Sci. 2021; NequIP):

* node features = ReLU(Embed(mass-weighted one-hot of Z)), node attributes =
  ReLU(Embed(one-hot of Z)), with the **same** embedding layer;
* edges within a 5 A periodic cutoff; length -> 15 Gaussians (times a smooth cutoff envelope)
  -> MLP giving per-edge tensor-product weights; direction -> spherical harmonics up to l_max;
* ``num_layers`` gated equivariant convolutions (ReLU on scalars, sigmoid scalar gates on
  l > 0) and a last convolution to the output irreps;
* a read-out from per-atom ``0e+2e`` outputs to the symmetric Cartesian tensor:

  - ``mean`` (v1, the paper's): the mean over atoms is the tensor (or, for the "scalar"
    ablation, ``6x0e`` read as the six independent Cartesian components);
  - ``sum_volume``: each atom contributes a polarisability-like ``0e+2e`` tensor, and
    ``eps = I + (v0 / V) * sum_i alpha_i`` (``v0`` a reference volume per atom), so that
    pulling layers apart dilutes the response as physics says;
  - ``psd_sum_volume``: the same with ``alpha_i = exp(M_i)``, the matrix exponential of the
    atom's ``0e+2e`` output, so every contribution is positive definite and ``eps - I`` is too;
  - ``psd_laminate_volume`` (v3): the ``psd_sum_volume`` susceptibility ``chi`` mixed with
    the vacuum the cell holds, ``eps = I + chi (I + D chi)^-1``, ``D`` the geometric
    depolarisation of :func:`anisoscreen.geometry.depolarisation_tensor`. ``D = 0`` for a
    dense crystal (exactly ``psd_sum_volume``); for layers padded with vacuum it is the exact
    laminate: parallel mixing in the plane, series mixing along the normal, so that both
    ``(eps_par - 1) c`` and ``(1 - 1 / eps_perp) c`` stay constant as the vacuum ``c`` grows;
  - ``psd_square_volume`` (made for the ionic tensor, eps0 = (4 pi / V) sum_m (Z* e_m)(Z* e_m)^T
    / omega_m^2): the output convolution gives ``k x (0e+2e)`` symmetric matrices ``M_ic``
    per atom (Born-charge-like) and ``eps0 = (v0 / V) sum_i sum_c M_ic M_ic^T``, positive
    semi-definite and extensive by construction;
  - ``psd_outer_volume``: the same with ``k x 1o`` vectors, ``eps0 = (v0 / V) sum_i sum_c
    u_ic u_ic^T``. An equivariant vector vanishes on a site with inversion (or any non-polar)
    symmetry, so this read-out predicts eps0 = 0 for rock salt or cubic perovskites; it is
    kept for comparison, and ``psd_square_volume`` (a rank-2 feature survives every site
    symmetry, as Z* does) is the default for ionic models;
* ``target`` says which tensor the network predicts: ``electronic`` (eps_inf), ``ionic``
  (eps0) or ``total`` (eps_inf + eps0). The volume-aware read-outs add the identity for
  ``electronic`` and ``total`` (the vacuum response) and nothing for ``ionic``;
* optionally (``gap_input``), the band gap: a global invariant, expanded in Gaussians of the
  gap plus a "known" flag and ``1 / (1 + E_g)`` (Penn: eps - 1 grows like (w_p / E_g)^2),
  embedded and concatenated to every atom's scalar features. An unknown gap (``nan``) gives
  all-zero features: trained with gaps dropped at random, the same network is the gap-free
  model;
* optionally (``atom_features``), invariant per-atom features of a pretrained potential
  (:mod:`anisoscreen.model.atom_features`), layer-normalised and embedded, are concatenated
  to the scalar node features; being invariant they keep the network equivariant. With an
  equivariant feature set (``sevennet-0``, :mod:`anisoscreen.model.pretrained_features`) the
  ``0e`` part is used so, and each ``l = 1, 2`` part, RMS-normalised per atom and mixed by a
  channel-linear map, is added to the node features of that order after the first gated
  convolution (where every order has ``mul`` channels, so the edge tensor products keep one
  multiplicity); exactly equivariant under rotations (SevenNet-0 has no parity, so not under
  inversion).

Hidden features keep only natural-parity irreps (0e, 1o, 2e, 3o, ...): every
input (scalars, spherical harmonics) has natural parity, and the output does too.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import torch
from e3nn import o3
from e3nn.math import normalize2mom, soft_one_hot_linspace
from pymatgen.core.periodic_table import Element
from torch import nn

from anisoscreen.model.nn.born_head import BornChargeHead
from anisoscreen.model.nn.config import ModelConfig
from anisoscreen.model.nn.elements import element_property_table
from anisoscreen.model.nn.graph import GraphBatch
from anisoscreen.model.nn.layers import (
    AttributeLinear,
    EdgeTensorProduct,
    Gate,
    IndexedWeights,
    node_aligned_chunks,
)
from anisoscreen.tensor import irreps_to_tensor_torch, tensor_to_irreps_torch

__all__ = [
    "NUM_ELEMENTS",
    "AnisoNet",
    "ModelConfig",
    "gap_features",
    "laminate_susceptibility",
    "prior_features",
    "split_orders",
]

NUM_ELEMENTS = 118
_MASS_SCALE = 100.0  # amu; keeps mass-weighted one-hot inputs of order one
GAP_CENTRES = (0.0, 0.75, 1.5, 2.25, 3.0, 4.0, 5.0, 6.5)
"""Centres (eV) of the Gaussians that expand the band gap (``gap_input``)."""
GAP_WIDTH = 0.75
GAP_FEATURES = len(GAP_CENTRES) + 2  # the Gaussians, the "known" flag and 1 / (1 + gap)


def gap_features(band_gap: torch.Tensor) -> torch.Tensor:
    """(B, GAP_FEATURES) invariant features of per-structure band gaps (``nan``: unknown).

    An unknown gap gives all zeros, which the network learns as "no gap information".
    """
    known = torch.isfinite(band_gap)
    gap = torch.where(known, band_gap, torch.zeros_like(band_gap)).clamp(min=0.0)
    centres = torch.tensor(GAP_CENTRES, dtype=gap.dtype, device=gap.device)
    gaussians = torch.exp(-(((gap[:, None] - centres) / GAP_WIDTH) ** 2))
    features = torch.cat([gaussians, torch.ones_like(gap)[:, None], 1.0 / (1.0 + gap[:, None])], 1)
    return features * known[:, None].to(gap.dtype)


PRIOR_FEATURES = 5  # log(1 + lambda) of the three eigenvalues, log(1 + eps0_poly), "known"
PRIOR_HIDDEN = 32
PRIOR_START_LOGIT = -2.0


def prior_features(prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invariant features of per-structure physics eps0 priors, and the priors made finite.

    ``prior`` (B, 3, 3) holds ``nan`` where a structure has none. Returns the
    (B, PRIOR_FEATURES) features (all zero for an unknown prior: "no prior") and the
    priors with the unknown ones set to zero.
    """
    known = torch.isfinite(prior).flatten(1).all(dim=1)
    finite = torch.where(known[:, None, None], prior, torch.zeros_like(prior))
    finite = 0.5 * (finite + finite.transpose(1, 2))
    eigenvalues = torch.linalg.eigvalsh(finite).clamp(min=0.0)  # ascending
    trace = eigenvalues.sum(dim=1, keepdim=True) / 3.0
    features = torch.cat(
        [torch.log1p(eigenvalues), torch.log1p(trace), torch.ones_like(trace)], dim=1
    )
    return features * known[:, None].to(prior.dtype), finite


def split_orders(features: torch.Tensor, orders: dict[int, int]) -> dict[int, torch.Tensor]:
    """Split flat ``(N, sum_l c_l (2l+1))`` features into ``{l: (N, 2l+1, c_l)}`` blocks.

    The flat layout is e3nn's (channel-major within each l); the blocks have the layout of
    the network's hidden features (:mod:`anisoscreen.model.nn.layers`, channels last).
    """
    blocks: dict[int, torch.Tensor] = {}
    start = 0
    for l in sorted(orders):
        width = orders[l] * (2 * l + 1)
        block = features[:, start : start + width].reshape(-1, orders[l], 2 * l + 1)
        blocks[l] = block.transpose(1, 2)
        start += width
    if start != features.shape[1]:
        raise ValueError(f"features of width {features.shape[1]} do not hold {orders}")
    return blocks


# Cartesian (i, j) of the six components of the scalar (6x0e) read-out.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def laminate_susceptibility(chi: torch.Tensor, depolarisation: torch.Tensor | None) -> torch.Tensor:
    """``chi (I + D chi)^-1`` for (B, 3, 3) susceptibilities (``D = None``: dense, ``chi``).

    Positive definite for positive definite ``chi`` and positive semi-definite ``D``; see
    :func:`anisoscreen.geometry.laminate_mix` for the physics.
    """
    if depolarisation is None:
        return chi
    d = depolarisation.to(chi.dtype)
    eye = torch.eye(3, dtype=chi.dtype, device=chi.device).expand_as(chi)
    # X (I + D chi) = chi  <=>  (I + chi D) X^T = chi
    mixed = torch.linalg.solve(eye + chi @ d, chi)
    return 0.5 * (mixed + mixed.transpose(1, 2))


def _polynomial_envelope(x: torch.Tensor) -> torch.Tensor:
    """Smooth step from 1 at x=0 to 0 at x=1 (zero first and second derivative at 1)."""
    x = x.clamp(0.0, 1.0)
    return 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5


class RadialMLP(nn.Module):
    """Per-edge tensor-product weights from the radial basis, times a per-edge scale.

    The function of e3nn's ``FullyConnectedNet([num_basis, hidden, out], silu)`` (same
    parameters ``layer0.weight``, ``layer1.weight`` and initialisation), with the per-edge
    scale (cutoff envelope and neighbour normalisation) applied to the ``hidden`` activations
    instead of the ``out`` weights: the output layer is linear, so the result is the same and
    the largest per-edge tensor is written once.
    """

    def __init__(self, num_basis: int, hidden: int, out: int) -> None:
        super().__init__()
        self.layer0 = _Weight(num_basis, hidden)
        self.layer1 = _Weight(hidden, out)
        self.silu_scale = silu_scale()

    def forward(self, basis: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        w0, w1 = self.layer0.weight, self.layer1.weight
        hidden = torch.nn.functional.silu(basis @ (w0 / math.sqrt(w0.shape[0])))
        hidden = hidden * (scale[:, None] * self.silu_scale)
        return hidden @ (w1 / math.sqrt(w1.shape[0]))


@cache
def silu_scale() -> float:
    """Second-moment normalisation of silu for unit-normal inputs (e3nn's ``normalize2mom``).

    A constant (e3nn draws its million samples from a fixed seed), computed once per process:
    a model builds one radial network per convolution per member.
    """
    return float(normalize2mom(torch.nn.functional.silu).cst)


class _Weight(nn.Module):
    """Holds one layer's weight under e3nn's parameter name."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out))


class Convolution(nn.Module):
    """Equivariant point convolution with an element-dependent self-connection (NequIP style)."""

    def __init__(
        self,
        channels_in: dict[int, int],
        channels_out: dict[int, int],
        attr_dim: int,
        lmax_sh: int,
        num_basis: int,
        radial_hidden: int,
        avg_num_neighbors: float,
    ) -> None:
        super().__init__()
        self.linear_in = AttributeLinear(channels_in, channels_in, attr_dim)
        self.tensor_product = EdgeTensorProduct(channels_in, lmax_sh, sorted(channels_out))
        self.radial = RadialMLP(num_basis, radial_hidden, self.tensor_product.weight_numel)
        self.linear_out = AttributeLinear(self.tensor_product.channels_out, channels_out, attr_dim)
        self.self_connection = AttributeLinear(channels_in, channels_out, attr_dim)
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

    def forward(self, x: dict, species_attr: torch.Tensor, species_counts: list[int], edge: dict):
        # radial weights (paths x mul numbers, the largest per-edge tensor) once per distinct
        # edge length, not once per edge
        table = self.radial(edge["radial"], edge["envelope"] * self.norm)
        h = self.linear_in(x, species_attr, species_counts)
        messages = self.tensor_product(
            h,
            edge["sh"],
            IndexedWeights(table, edge["length_row"]),
            edge["src"],
            edge["dst"],
            edge["chunks"],
        )
        out = self.linear_out(messages, species_attr, species_counts)
        for l, value in self.self_connection(x, species_attr, species_counts).items():
            out[l] = out[l] + value if l in out else value
        return out


def _pooled_invariants(
    x: dict[int, torch.Tensor], batch_index: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """Per-structure mean of the node invariants: scalars and the norm of each l > 0 channel."""
    parts = [x[0][:, 0, :]] + [x[l].norm(dim=1) for l in sorted(x) if l > 0]
    nodes = torch.cat(parts, dim=1)
    pooled = nodes.new_zeros((num_graphs, nodes.shape[1])).index_add_(0, batch_index, nodes)
    counts = torch.bincount(batch_index, minlength=num_graphs).clamp(min=1)
    return pooled / counts[:, None].to(nodes.dtype)


class AnisoNet(nn.Module):
    """Equivariant GNN mapping a crystal graph to its 3x3 dielectric tensor."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        masses = torch.zeros(NUM_ELEMENTS + 1)
        for z in range(1, NUM_ELEMENTS + 1):
            masses[z] = float(Element.from_Z(z).atomic_mass) / _MASS_SCALE
        self.masses: torch.Tensor
        self.register_buffer("masses", masses, persistent=False)
        self.embedding = nn.Linear(NUM_ELEMENTS, config.embed_dim)
        # unit-variance embeddings: the equivariant layers are normalised for O(1) inputs
        nn.init.normal_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)

        mul, lmax = config.mul, config.lmax

        def convolution(channels_in: dict[int, int], channels_out: dict[int, int]) -> Convolution:
            return Convolution(
                channels_in,
                channels_out,
                attr_dim=config.embed_dim,
                lmax_sh=lmax,
                num_basis=config.num_basis,
                radial_hidden=config.radial_hidden,
                avg_num_neighbors=config.avg_num_neighbors,
            )

        channels = {0: config.embed_dim}
        # channels per l > 0 of equivariant pretrained features, mapped into the first layer
        self.feature_orders: dict[int, int] = {}
        if config.atom_features:
            if not config.atom_feature_channels:
                raise ValueError(
                    f"atom features {config.atom_features!r} need atom_feature_channels "
                    "(anisoscreen.model.feature_sets.with_feature_channels fills them)"
                )
            width = config.atom_feature_channels[0]
            channels = {0: 2 * config.embed_dim}
            if len(config.atom_feature_channels) > 1:
                self.feature_orders = {
                    l: c for l, c in enumerate(config.atom_feature_channels) if c
                }
                higher = [l for l in self.feature_orders if 0 < l <= lmax]
                if config.num_layers < 1:
                    raise ValueError("equivariant atom features need at least one gated layer")
                # one channel-mixing matrix per l: equivariant, as it never mixes the m index;
                # added to the first gated layer's output (mul channels of every order)
                self.feature_linears = nn.ParameterDict(
                    {str(l): nn.Parameter(torch.randn(self.feature_orders[l], mul)) for l in higher}
                )
            self.feature_norm = nn.LayerNorm(width)
            self.feature_embedding = nn.Linear(width, config.embed_dim)
        if config.gap_input:
            self.gap_embedding = nn.Linear(GAP_FEATURES, config.embed_dim)
            channels = {0: channels[0] + config.embed_dim}
        self.element_table: torch.Tensor | None
        table = None
        if config.element_features:
            table = torch.tensor(element_property_table(NUM_ELEMENTS).tolist())
        self.register_buffer("element_table", table, persistent=False)
        if table is not None:  # added to the one-hot embedding: no wider layers
            self.element_embedding = nn.Linear(table.shape[1], config.embed_dim)
        gated_orders = list(range(1, lmax + 1))
        self.convolutions = nn.ModuleList()
        self.gates = nn.ModuleList()
        for _ in range(config.num_layers):
            # l=0 carries mul scalars plus one gate per gated channel
            channels_out = {0: mul * (1 + len(gated_orders)), **dict.fromkeys(gated_orders, mul)}
            self.convolutions.append(convolution(channels, channels_out))
            self.gates.append(Gate(mul, gated_orders))
            channels = dict.fromkeys(range(lmax + 1), mul)
        if config.readout != "mean" and config.output != "equivariant":
            raise ValueError(f"the {config.readout} read-out needs the equivariant output")
        if config.readout == "psd_outer_volume":
            out_channels = {1: config.outer_channels}
        elif config.readout == "psd_square_volume":
            out_channels = {0: config.outer_channels, 2: config.outer_channels}
        elif config.output == "equivariant":
            out_channels = {0: 1, 2: 1}
        else:
            out_channels = {0: 6}
        self.output = convolution(channels, out_channels)
        if config.born_head and (config.lmax < 2 or config.num_layers < 1):
            raise ValueError("the Born-charge head needs lmax >= 2 and at least one gated layer")
        # built last, so the other weights get the same initialisation with or without it
        self.born_head = BornChargeHead(mul, config.born_scale) if config.born_head else None
        self.gap_log_scale: nn.Linear | None = None
        if config.gap_readout:
            exp_readouts = ("psd_sum_volume", "psd_laminate_volume")
            if not config.gap_input or config.readout not in exp_readouts:
                raise ValueError("gap_readout needs gap_input and a psd_sum/laminate read-out")
            # zero at the start: training begins from the gap-input network's read-out
            self.gap_log_scale = nn.Linear(GAP_FEATURES, 1, bias=False)
            nn.init.zeros_(self.gap_log_scale.weight)
        # the weight of the physics prior, from the pooled invariants of the last layer and
        # the prior's own; built last, so the trunk is that of the direct network
        self.prior_weight: nn.Sequential | None = None
        if config.physics_prior:
            if config.readout != "psd_square_volume" or config.num_layers < 1:
                raise ValueError("physics_prior needs the psd_square_volume read-out")
            last = nn.Linear(PRIOR_HIDDEN, 1)
            # w = sigmoid(-2) = 0.12 at the start: close to the direct network
            nn.init.constant_(last.bias, PRIOR_START_LOGIT)
            self.prior_weight = nn.Sequential(
                nn.Linear(mul * (lmax + 1) + PRIOR_FEATURES, PRIOR_HIDDEN), nn.SiLU(), last
            )

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, graph: GraphBatch, geometry: dict[str, Any] | None = None) -> torch.Tensor:
        """Predict ``0e+2e`` irreps (shape (num_graphs, 6)) in the e3nn basis.

        ``geometry``: :meth:`geometry` of ``graph`` from any network of the same
        configuration (an ensemble computes it once for all members).
        """
        return self._predict(graph, with_born=False, geometry=geometry)[0]

    def forward_with_embedding(
        self, graph: GraphBatch, geometry: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``0e+2e`` irreps (num_graphs, 6) and the structure embedding, in one pass.

        The embedding (num_graphs, :meth:`embedding_dim`) is the per-structure mean over atoms
        of the last gated layer's invariants: its ``mul`` scalars and the norm of each of its
        ``l > 0`` channels. It is rotation invariant, so a residual model on it
        (:mod:`anisoscreen.campaign.residual`) sees the same crystal however it is oriented.
        """
        store: dict[str, torch.Tensor] = {}
        irreps = self._predict(graph, with_born=False, geometry=geometry, embedding=store)[0]
        return irreps, store["embedding"]

    @property
    def embedding_dim(self) -> int:
        """Width of :meth:`forward_with_embedding`'s embedding."""
        if self.config.num_layers >= 1:
            return self.config.mul * (self.config.lmax + 1)
        width = self.config.embed_dim * (1 + bool(self.config.atom_features))
        return width + self.config.embed_dim * bool(self.config.gap_input)

    def forward_with_born(self, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``0e+2e`` irreps (num_graphs, 6) and per-atom Born charges (num_nodes, 3, 3).

        The charges follow the node order of ``graph`` (the sites of each structure).

        Raises
        ------
        ValueError
            The model was built without the Born head (``born_head`` false).
        """
        if self.born_head is None:
            raise ValueError("this model has no Born-charge head (ModelConfig.born_head)")
        irreps, born = self._predict(graph, with_born=True)
        assert born is not None
        return irreps, born

    def geometry(self, graph: GraphBatch) -> dict[str, Any]:
        """What the forward pass derives from the graph alone, without weights.

        Atom and edge order, spherical harmonics, radial basis. Members of an ensemble (one
        config) share it, so :meth:`forward` can take it instead of recomputing it per member.
        """
        cfg = self.config
        dtype = self.embedding.weight.dtype
        species, species_index = torch.unique(graph.atomic_numbers, return_inverse=True)
        # work on the atoms ordered by element: per-element weights then apply to contiguous
        # blocks (see AttributeLinear); mean pooling does not depend on the order
        order = torch.argsort(species_index, stable=True)
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order), device=order.device)
        species_counts = torch.bincount(species_index, minlength=len(species)).tolist()
        # edges sorted by destination: each chunk of the edge tensor products then sums into
        # its own block of nodes (see node_aligned_chunks)
        edge_dst = position[graph.edge_dst]
        edge_order = torch.argsort(edge_dst, stable=True)
        edge_dst = edge_dst[edge_order]
        edge_vec = graph.edge_vec[edge_order].to(dtype)
        # the radial network sees each distinct length once (both directions of every bond,
        # symmetry-equivalent bonds): identical inputs, identical weights
        lengths, length_row = torch.unique(edge_vec.norm(dim=1), return_inverse=True)
        radial = soft_one_hot_linspace(
            lengths, 0.0, cfg.cutoff, cfg.num_basis, basis="gaussian", cutoff=False
        ).mul(math.sqrt(cfg.num_basis))
        edge = {
            "src": position[graph.edge_src[edge_order]],
            "dst": edge_dst,
            "sh": o3.spherical_harmonics(
                list(range(cfg.lmax + 1)), edge_vec, normalize=True, normalization="component"
            ),
            "radial": radial,
            "envelope": _polynomial_envelope(lengths / cfg.cutoff),
            "length_row": length_row,
            "num_nodes": len(graph.atomic_numbers),
        }
        edge_chunk = self.output.tensor_product.chunk_size(edge_vec.device)
        edge["chunks"] = node_aligned_chunks(edge_dst, edge["num_nodes"], edge_chunk)
        return {
            "key": (cfg.cutoff, cfg.num_basis, cfg.lmax, dtype, edge_chunk),
            "species": species,
            "species_index": species_index[order],
            "species_counts": species_counts,
            "order": order,
            "position": position,
            "batch_index": graph.batch[order],
            "edge": edge,
        }

    def _predict(
        self,
        graph: GraphBatch,
        with_born: bool,
        geometry: dict[str, Any] | None = None,
        embedding: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tensor irreps and, if ``with_born``, the per-atom Born charges.

        ``embedding``: a dict that receives the structure embedding under ``"embedding"``
        (see :meth:`forward_with_embedding`).
        """
        cfg = self.config
        dtype = self.embedding.weight.dtype
        if geometry is None:
            geometry = self.geometry(graph)
        elif geometry["key"] != (
            cfg.cutoff,
            cfg.num_basis,
            cfg.lmax,
            dtype,
            self.output.tensor_product.chunk_size(graph.edge_vec.device),
        ):
            raise ValueError("the shared geometry was built for another network configuration")
        species, species_index = geometry["species"], geometry["species_index"]
        species_counts, order = geometry["species_counts"], geometry["order"]
        position, batch_index, edge = (
            geometry["position"],
            geometry["batch_index"],
            geometry["edge"],
        )
        one_hot = torch.nn.functional.one_hot(species - 1, NUM_ELEMENTS).to(dtype)
        embedded = self.embedding(one_hot)
        embedded_mass = self.embedding(one_hot * self.masses[species].to(dtype)[:, None])
        if self.element_table is not None:
            tabulated = self.element_embedding(self.element_table[species].to(dtype))
            embedded, embedded_mass = embedded + tabulated, embedded_mass + tabulated
        species_attr = torch.relu(embedded)
        species_feat = torch.relu(embedded_mass)
        node_scalars = species_feat[species_index]
        higher: dict[int, torch.Tensor] = {}
        if cfg.atom_features:
            if graph.atom_features is None:
                raise ValueError(f"this model needs {cfg.atom_features} atom features")
            features = graph.atom_features[order].to(dtype)
            if self.feature_orders:
                blocks = split_orders(features, self.feature_orders)
                features = blocks[0][:, 0, :]
                higher = self._equivariant_inputs(blocks)
            pretrained = self.feature_embedding(self.feature_norm(features))
            node_scalars = torch.cat([node_scalars, torch.relu(pretrained)], dim=1)
        gap_log_scale = None
        if cfg.gap_input:
            gaps = graph.band_gap
            if gaps is None:
                gaps = torch.full((graph.num_graphs,), math.nan, device=node_scalars.device)
            expanded = gap_features(gaps.to(dtype))
            embedded = torch.relu(self.gap_embedding(expanded))
            if self.gap_log_scale is not None:
                gap_log_scale = self.gap_log_scale(expanded)[batch_index]  # (nodes, 1)
            node_scalars = torch.cat([node_scalars, embedded[batch_index]], dim=1)
        x = {0: node_scalars[:, None, :]}

        for layer, (conv, gate) in enumerate(zip(self.convolutions, self.gates, strict=False)):
            x = gate(conv(x, species_attr, species_counts, edge))
            if layer == 0:
                for l, value in higher.items():
                    x[l] = x[l] + value
        if embedding is not None:
            embedding["embedding"] = _pooled_invariants(x, batch_index, graph.num_graphs)
        born = None
        if with_born and self.born_head is not None:
            # back from the element-sorted order to the graph's node order
            born = self.born_head(x, batch_index, graph.num_graphs)[position]
        out = self.output(x, species_attr, species_counts, edge)
        counts = torch.bincount(batch_index, minlength=graph.num_graphs).clamp(min=1)
        density = counts.to(dtype) * cfg.volume_per_atom / graph.volume.to(dtype)
        # I for eps_inf and eps_total, 0 for the ionic eps0 (built in the working precision)
        identity = tensor_to_irreps_torch(torch.eye(3, dtype=dtype, device=density.device))
        baseline = identity * float(cfg.has_identity)
        if cfg.readout in ("psd_outer_volume", "psd_square_volume"):
            root_scale = math.sqrt(max(cfg.target_scale, 0.0))
            if cfg.readout == "psd_outer_volume":
                # u_ic: (nodes, 3, k) Cartesian 1o vectors (e3nn's l=1 basis is x, y, z)
                vectors = out[1] * root_scale
                outer = torch.einsum("nik,njk->nij", vectors, vectors).flatten(1)
            else:
                # M_ic: (nodes, k, 3, 3) symmetric matrices from the k 0e+2e channels
                matrices = irreps_to_tensor_torch(
                    torch.cat([out[0], out[2]], dim=1).transpose(1, 2) * root_scale
                )
                outer = torch.einsum("nkij,nklj->nil", matrices, matrices).flatten(1)
            # a sum of u u^T (or M M^T) is positive semi-definite, and so is its sum over atoms
            pooled = torch.zeros((graph.num_graphs, 9), dtype=outer.dtype, device=outer.device)
            pooled = pooled.index_add_(0, batch_index, outer) / counts[:, None].to(outer.dtype)
            ionic = tensor_to_irreps_torch(pooled.view(-1, 3, 3))
            result = baseline + density[:, None] * ionic
            if self.prior_weight is not None:
                result = result + self._weighted_prior(graph, x, batch_index, dtype)
            return result, born
        flat = torch.cat([out[l].flatten(1) for l in sorted(out)], dim=1)

        shift = flat.new_zeros(6)
        shift[0] = cfg.target_shift
        if cfg.readout in ("psd_sum_volume", "psd_laminate_volume"):
            # alpha_i = exp(M_i): positive definite per atom, so their sum is too
            per_atom = irreps_to_tensor_torch(flat * cfg.target_scale + shift)
            if gap_log_scale is not None:
                eye = torch.eye(3, dtype=per_atom.dtype, device=per_atom.device)
                per_atom = per_atom + gap_log_scale[:, :, None] * eye
            flat = torch.linalg.matrix_exp(per_atom).flatten(1)
        pooled = torch.zeros(
            (graph.num_graphs, flat.shape[1]), dtype=flat.dtype, device=flat.device
        )
        pooled = pooled.index_add_(0, batch_index, flat) / counts[:, None].to(flat.dtype)

        if cfg.readout == "mean":
            if cfg.output == "scalar":
                tensor = pooled.new_zeros((graph.num_graphs, 3, 3))
                for k, (i, j) in enumerate(_VOIGT):
                    tensor[:, i, j] = pooled[:, k]
                    tensor[:, j, i] = pooled[:, k]
                pooled = tensor_to_irreps_torch(tensor)
            return pooled * cfg.target_scale + shift, born
        # eps - I = (v0 / V) sum_i alpha_i = (N v0 / V) mean_i alpha_i (no I for eps0)
        if cfg.readout in ("psd_sum_volume", "psd_laminate_volume"):
            susceptibility = tensor_to_irreps_torch(pooled.view(-1, 3, 3))
        else:
            susceptibility = pooled * cfg.target_scale + shift
        dense = baseline + density[:, None] * susceptibility
        if cfg.readout == "psd_laminate_volume" and graph.depolarisation is not None:
            chi = density[:, None, None] * pooled.view(-1, 3, 3)
            laminate = baseline + tensor_to_irreps_torch(
                laminate_susceptibility(chi, graph.depolarisation)
            )
            # a dense crystal (D = 0) keeps the sum/V read-out bit for bit
            vacuum = graph.depolarisation.flatten(1).ne(0).any(dim=1)
            return torch.where(vacuum[:, None], laminate, dense), born
        return dense, born

    def _weighted_prior(
        self,
        graph: GraphBatch,
        x: dict[int, torch.Tensor],
        batch_index: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``w P`` irreps (num_graphs, 6): each structure's physics prior times its weight.

        ``w`` in [0, 1] comes from the structure's pooled invariants and the prior's own
        (:func:`prior_features`); a structure without a prior gets zero. ``w P`` is positive
        semi-definite (``P`` is), so the sum with the direct read-out stays so.
        """
        assert self.prior_weight is not None
        given = graph.physics_prior
        if given is None:
            given = torch.full((graph.num_graphs, 3, 3), math.nan, device=batch_index.device)
        inputs, prior = prior_features(given.to(dtype))
        invariants = _pooled_invariants(x, batch_index, graph.num_graphs)
        logit = self.prior_weight(torch.cat([invariants, inputs], dim=1))
        weight = torch.sigmoid(logit) * inputs[:, -1:]  # the last feature: "known"
        return weight * tensor_to_irreps_torch(prior)

    def _equivariant_inputs(self, blocks: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Node inputs of order l > 0 from pretrained ``(N, 2l+1, c_l)`` feature blocks.

        Each block is divided by its per-atom RMS (``sqrt(mean |v|^2 + 1)``: a rotation
        invariant, so the map stays equivariant; the ``+ 1`` keeps the noise of blocks that
        vanish by site symmetry from being blown up), then its channels are mixed linearly.
        """
        out = {}
        for key, weight in self.feature_linears.items():
            block = blocks[int(key)]
            rms = block.pow(2).mean(dim=(1, 2), keepdim=True).add(1.0).sqrt()
            out[int(key)] = (block / rms) @ weight / math.sqrt(weight.shape[0])
        return out

    def predict_tensor(self, graph: GraphBatch) -> torch.Tensor:
        """Predict Cartesian 3x3 tensors, shape (num_graphs, 3, 3)."""
        return irreps_to_tensor_torch(self.forward(graph))
