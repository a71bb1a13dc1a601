"""Equivariant per-atom features of a pretrained potential (SevenNet-0), batched, forward only.

SevenNet-0 (Park et al., J. Chem. Theory Comput. 20, 4857, 2024) is a NequIP-style e3nn
potential trained on the Materials Project trajectories (MPtrj), with a 5 A cutoff like our
graphs. Its checkpoints ship inside the ``sevenn`` wheel: no download.

Which features: the node features after the **fourth** (last full-order) interaction block,
``128x0e + 64x1 + 32x2`` (480 numbers per atom). SevenNet-0 has five interaction blocks; the
fifth maps everything to ``128x0e`` for the energy read-out, so the fourth is the deepest
representation that still holds the l = 1 and l = 2 orders (receptive field 4 x 5 A), and
the last one at which the directional information a dielectric tensor needs is not yet
projected away. They are computed in one forward pass over a batch of graphs (our own
periodic graphs, the same 5 A neighbour list), without positions requiring gradients and
without the energy, force and stress heads.

Conventions: the features are returned as one flat float32 array per structure, shape
``(N, 480)``, laid out as e3nn does: 128 scalars, then 64 vectors (3 numbers each, e3nn's
real spherical-harmonic basis, i.e. ``(y, z, x)``), then 32 ``l = 2`` blocks of 5. Under a
proper rotation ``R`` of the crystal the l-block of every channel transforms with e3nn's
Wigner matrix ``D^l(R)``. SevenNet-0 was trained without parity (``is_parity: False``): its
l = 1 channels mix vectors and pseudo-vectors, so the features, and a network using them, are
equivariant under rotations but not under inversion.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.feature_sets import EQUIVARIANT_FEATURE_SETS, feature_orders
from anisoscreen.model.nn.graph import CrystalGraph, structure_to_graph
from anisoscreen.model.nn.network import split_orders
from anisoscreen.third_party import module_children

__all__ = [
    "SevenNetFeaturizer",
    "split_orders",
]


class SevenNetFeaturizer:
    """Per-atom ``0e + 1 + 2`` node features of SevenNet-0, for many structures at once.

    Parameters
    ----------
    name
        One of :data:`~anisoscreen.model.feature_sets.EQUIVARIANT_FEATURE_SETS`.
    device
        Torch device for the potential.
    batch_size
        Structures per forward pass.
    """

    def __init__(
        self, name: str = "sevennet-0", device: str | torch.device = "cpu", batch_size: int = 32
    ) -> None:
        if name not in EQUIVARIANT_FEATURE_SETS:
            raise AnisoscreenError(
                f"unknown equivariant feature set {name!r}; known: "
                f"{', '.join(EQUIVARIANT_FEATURE_SETS)}"
            )
        try:
            import sevenn.util as sevenn_util

            from anisoscreen.third_party import sevenn_keys

            keys = sevenn_keys()
        except ImportError as exc:  # pragma: no cover - sevenn is a dependency
            raise AnisoscreenError("SevenNet features need the 'sevenn' package") from exc
        spec = EQUIVARIANT_FEATURE_SETS[name]
        self.name = name
        self.orders = feature_orders(name)
        self.dim = sum(c * (2 * l + 1) for l, c in self.orders.items())
        self.cutoff = float(spec["cutoff"])  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._keys = keys
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tensor-product accelerator" notices
            checkpoint = sevenn_util.load_checkpoint(str(spec["checkpoint"]))
            model = checkpoint.build_model()
        model.set_is_batch_data(True)
        # the modules up to and including the chosen layer; the energy/force heads are dropped
        self._modules: list[torch.nn.Module] = []
        for key, module in module_children(model):
            assert module is not None
            self._modules.append(module.to(self.device).eval())
            if key == spec["layer"]:
                break
        else:  # pragma: no cover - guards a changed checkpoint layout
            raise AnisoscreenError(f"{spec['checkpoint']} has no module {spec['layer']!r}")
        self._type_map = torch.full((120,), -1, dtype=torch.int64)
        assert model.type_map is not None  # a pretrained checkpoint always has one
        for z, index in model.type_map.items():
            self._type_map[int(z)] = int(index)

    def graphs(self, structures: Sequence[Structure]) -> list[CrystalGraph]:
        """Our periodic graphs at the potential's cutoff (isolated atoms allowed)."""
        return [structure_to_graph(s, self.cutoff, allow_isolated=True) for s in structures]

    @torch.inference_mode()
    def features_of_graphs(self, graphs: Sequence[CrystalGraph]) -> list[np.ndarray]:
        """Features of already-built graphs (cutoff :attr:`cutoff`), one forward per batch."""
        out: list[np.ndarray] = []
        for start in range(0, len(graphs), self.batch_size):
            chunk = graphs[start : start + self.batch_size]
            out.extend(self._forward(chunk))
        return out

    def _forward(self, graphs: Sequence[CrystalGraph]) -> list[np.ndarray]:
        key = self._keys
        numbers = torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs]))
        types = self._type_map[numbers]
        if bool((types < 0).any()):
            unknown = sorted({int(z) for z in numbers[types < 0]})
            raise AnisoscreenError(f"{self.name} does not know atomic numbers {unknown}")
        sizes = [g.num_nodes for g in graphs]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        edge_offsets = np.repeat(offsets, [g.num_edges for g in graphs])
        centre = np.concatenate([g.edge_dst for g in graphs]) + edge_offsets
        neighbour = np.concatenate([g.edge_src for g in graphs]) + edge_offsets
        # SevenNet's edge index is (centre, neighbour) and its edge vector points from the
        # centre to the neighbour image, as ours does
        data = {
            key.NODE_FEATURE: types.to(self.device),
            key.ATOMIC_NUMBERS: numbers.to(self.device),
            key.EDGE_IDX: torch.from_numpy(np.stack([centre, neighbour])).to(self.device),
            key.EDGE_VEC: torch.from_numpy(np.concatenate([g.edge_vec for g in graphs]))
            .float()
            .to(self.device),
            key.BATCH: torch.from_numpy(np.repeat(np.arange(len(graphs)), sizes)).to(self.device),
            key.NUM_ATOMS: torch.tensor(sizes, device=self.device),
        }
        for module in self._modules:
            data = module(data)
        flat = data[key.NODE_FEATURE][:, : self.dim].float().cpu().numpy()
        return list(np.split(flat, np.cumsum(sizes)[:-1]))

    def featurize_each(
        self, structures: Sequence[Structure], graphs: Sequence[CrystalGraph] | None = None
    ) -> list[np.ndarray | str]:
        """Features of each structure, or the reason it cannot be featurised, in place.

        ``graphs``, when given, must be the structures' graphs at :attr:`cutoff` (the
        predictor passes its own, saving a second neighbour search).
        """
        if graphs is None:
            graphs = self.graphs(structures)
        try:
            return list(self.features_of_graphs(graphs))
        except AnisoscreenError:
            results: list[np.ndarray | str] = []
            for graph in graphs:
                try:
                    results.append(self.features_of_graphs([graph])[0])
                except AnisoscreenError as exc:
                    results.append(f"{self.name} cannot featurise this structure: {exc}")
            return results

    def __call__(self, structures: Sequence[Structure]) -> list[np.ndarray]:
        """Features of every structure, each of shape ``(len(structure), dim)`` (float32)."""
        return self.features_of_graphs(self.graphs(structures))
