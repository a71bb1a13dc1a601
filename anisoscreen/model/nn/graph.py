"""Periodic crystal graphs for the equivariant model.

A crystal becomes a graph with one node per site and one directed edge ``i -> j`` for every
periodic image of site ``j`` within ``cutoff`` of site ``i``. The neighbour search is
pymatgen's compiled ``get_neighbor_list`` (no per-atom Python loops). Because structures are
fixed during training and inference, each graph stores its Cartesian edge vectors directly;
batching concatenates graphs and offsets their node indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.geometry import depolarisation_tensor

__all__ = ["CrystalGraph", "GraphBatch", "GraphError", "collate", "structure_to_graph"]

DEFAULT_CUTOFF = 5.0
"""Graph cutoff radius in angstrom (AnisoNet)."""


class GraphError(AnisoscreenError):
    """A structure that cannot be turned into a model graph."""


@dataclass
class CrystalGraph:
    """One crystal as a periodic graph (numpy arrays; cheap to pickle and batch).

    Attributes
    ----------
    atomic_numbers
        (N,) int64 atomic numbers.
    edge_src, edge_dst
        (E,) int64 indices: messages flow from ``edge_src`` (neighbour) to ``edge_dst`` (centre).
    edge_vec
        (E, 3) float64 vectors from the centre to the neighbour image, in angstrom.
    volume
        Cell volume in cubic angstrom (volume-aware read-outs divide by it).
    atom_features
        Optional (N, F) float32 invariant per-atom features (e.g. from a pretrained potential,
        :mod:`anisoscreen.model.atom_features`), for models configured to use them.
    depolarisation
        (3, 3) geometric depolarisation of the vacuum the cell holds
        (:func:`anisoscreen.geometry.depolarisation_tensor`; zero for a dense crystal), used
        by the laminate read-out.
    band_gap
        The structure's band gap in eV where known (``nan`` if not), for models that take it.
    physics_prior
        (3, 3) physics eps0 of the structure (``None`` where there is none), for hybrid ionic
        models (:attr:`~anisoscreen.model.nn.config.ModelConfig.physics_prior`).
    """

    atomic_numbers: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_vec: np.ndarray
    volume: float
    atom_features: np.ndarray | None = None
    depolarisation: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    band_gap: float = math.nan
    physics_prior: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.atomic_numbers)

    @property
    def has_vacuum(self) -> bool:
        """Whether the cell holds vacuum (a non-zero depolarisation)."""
        return bool(np.any(self.depolarisation))

    @property
    def num_edges(self) -> int:
        return len(self.edge_src)


def structure_to_graph(
    structure: Structure,
    cutoff: float = DEFAULT_CUTOFF,
    allow_isolated: bool = False,
    band_gap: float | None = None,
    depolarisation: bool = True,
) -> CrystalGraph:
    """Build the periodic graph of an ordered structure (``band_gap`` in eV, if known).

    ``depolarisation=False`` leaves the vacuum's depolarisation tensor at zero, for models
    whose read-out does not use it (it costs about a third of the graph's build time).

    Raises
    ------
    GraphError
        If the structure is disordered / partially occupied, or (unless ``allow_isolated``)
        an atom has no neighbour within ``cutoff``.
    """
    if not structure.is_ordered:
        raise GraphError(
            "disordered or partially occupied structure; the model needs ordered sites"
        )
    if len(structure) == 0:
        raise GraphError("structure has no sites")
    centre, neighbour, images, _ = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    frac = structure.frac_coords
    # vector from centre i to the image of neighbour j: (f_j + n - f_i) @ lattice
    edge_vec = (frac[neighbour] + images - frac[centre]) @ structure.lattice.matrix
    if not allow_isolated:
        counts = np.bincount(centre, minlength=len(structure))
        lonely = np.flatnonzero(counts == 0)
        if len(lonely):
            raise GraphError(
                f"site {int(lonely[0])} ({structure[int(lonely[0])].species_string}) has no "
                f"neighbour within {cutoff} A"
            )
    return CrystalGraph(
        atomic_numbers=np.asarray(structure.atomic_numbers, dtype=np.int64),
        edge_src=neighbour.astype(np.int64),
        edge_dst=centre.astype(np.int64),
        edge_vec=edge_vec,
        volume=float(structure.volume),
        depolarisation=depolarisation_tensor(structure) if depolarisation else np.zeros((3, 3)),
        band_gap=math.nan if band_gap is None else float(band_gap),
    )


@dataclass
class GraphBatch:
    """Several graphs concatenated into one, as torch tensors."""

    atomic_numbers: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    edge_vec: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    volume: torch.Tensor
    atom_features: torch.Tensor | None = None
    depolarisation: torch.Tensor | None = None
    band_gap: torch.Tensor | None = None
    physics_prior: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> GraphBatch:
        """Move to ``device`` (and cast edge vectors and atom features to ``dtype``)."""

        def moved(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.to(device=device, dtype=dtype or value.dtype)

        return GraphBatch(
            self.atomic_numbers.to(device),
            self.edge_src.to(device),
            self.edge_dst.to(device),
            self.edge_vec.to(device=device, dtype=dtype or self.edge_vec.dtype),
            self.batch.to(device),
            self.num_graphs,
            self.volume.to(device=device, dtype=dtype or self.volume.dtype),
            moved(self.atom_features),
            moved(self.depolarisation),
            moved(self.band_gap),
            moved(self.physics_prior),
        )


def collate(graphs: Sequence[CrystalGraph], dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Concatenate graphs into a :class:`GraphBatch` with offset node indices."""
    sizes = np.fromiter((g.num_nodes for g in graphs), dtype=np.int64, count=len(graphs))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    edge_offsets = np.repeat(offsets, [g.num_edges for g in graphs])
    src = np.concatenate([g.edge_src for g in graphs]) + edge_offsets
    dst = np.concatenate([g.edge_dst for g in graphs]) + edge_offsets
    with_features = [g.atom_features is not None for g in graphs]
    if any(with_features) and not all(with_features):
        raise ValueError("either every graph of a batch has atom features or none has")
    features = (
        torch.from_numpy(np.concatenate([g.atom_features for g in graphs])).to(dtype)
        if graphs and all(with_features)
        else None
    )
    return GraphBatch(
        atomic_numbers=torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs])),
        edge_src=torch.from_numpy(src),
        edge_dst=torch.from_numpy(dst),
        edge_vec=torch.from_numpy(np.concatenate([g.edge_vec for g in graphs])).to(dtype),
        batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), sizes)),
        num_graphs=len(graphs),
        volume=torch.tensor([g.volume for g in graphs], dtype=dtype),
        atom_features=features,
        depolarisation=torch.from_numpy(
            np.stack([g.depolarisation for g in graphs]) if graphs else np.zeros((0, 3, 3))
        ).to(dtype),
        band_gap=torch.tensor([g.band_gap for g in graphs], dtype=dtype),
        physics_prior=_stacked_priors(graphs, dtype),
    )


def _stacked_priors(graphs: Sequence[CrystalGraph], dtype: torch.dtype) -> torch.Tensor | None:
    """(B, 3, 3) physics priors of a batch, ``nan`` for graphs without; ``None`` if none has."""
    if all(g.physics_prior is None for g in graphs):
        return None
    missing = np.full((3, 3), np.nan)
    stacked = np.stack([missing if g.physics_prior is None else g.physics_prior for g in graphs])
    return torch.from_numpy(stacked).to(dtype)
