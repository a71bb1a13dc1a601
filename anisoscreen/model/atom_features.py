"""Per-atom features from a pretrained universal interatomic potential (CHGNet).

CHGNet (Deng et al., Nat. Mach. Intell. 5, 1031, 2023) was trained on ~1.5 M DFT calculations of
the Materials Project; its final atom embeddings (64 numbers per atom) summarise each atom's
chemical environment, including the charge information CHGNet learns from magnetic moments.
They are rotation-invariant, so adding them to the scalar input of the equivariant network
keeps the network exactly equivariant, and they carry far more chemistry than our 2,156
training tensors can teach. The weights ship inside the ``chgnet`` wheel: no download.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checksum import file_checksum
from anisoscreen.model.feature_sets import (
    EQUIVARIANT_FEATURE_SETS,
    FEATURE_SETS,
)

__all__ = [
    "AtomFeatureError",
    "AtomFeaturizer",
    "cached_features",
    "data_set_cache",
    "featurizer_for",
]


class AtomFeatureError(AnisoscreenError):
    """A structure the pretrained potential cannot featurise."""


class AtomFeaturizer:
    """Computes per-atom features of structures with a pretrained potential.

    Parameters
    ----------
    name
        One of :data:`~anisoscreen.model.feature_sets.FEATURE_SETS` (``chgnet-<version>``).
    device
        Torch device for the potential.
    batch_size
        Structures per forward pass.
    """

    def __init__(
        self, name: str = "chgnet-0.3.0", device: str | torch.device = "cpu", batch_size: int = 32
    ) -> None:
        if name not in FEATURE_SETS or not name.startswith("chgnet-"):
            raise AnisoscreenError(
                f"unknown atom feature set {name!r}; known: {', '.join(FEATURE_SETS)}"
            )
        self.name = name
        self.dim = FEATURE_SETS[name]
        self.batch_size = batch_size
        self.device = torch.device(device)
        try:
            from chgnet.model import CHGNet
        except ImportError as exc:  # pragma: no cover - chgnet is a dependency
            raise AnisoscreenError("atom features need the 'chgnet' package") from exc
        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet.load prints a banner
            self._model = CHGNet.load(
                model_name=name.split("-", 1)[1], use_device=str(self.device), verbose=False
            )
        self._model.eval()

    def _graphs(self, structures: Sequence[Structure]):
        converter = self._model.graph_converter
        graphs = []
        for structure in structures:
            try:
                graphs.append(converter(structure))
            except Exception as exc:  # isolated atoms, unknown elements, ...
                reason = f"{self.name} cannot featurise this structure: {exc}"
                raise AtomFeatureError(reason) from exc
        return graphs

    @torch.inference_mode()
    def _forward(self, graphs) -> list[np.ndarray]:
        out = self._model.forward(
            [g.to(self.device) for g in graphs], task="e", return_atom_feas=True
        )
        return [f.float().cpu().numpy() for f in out["atom_fea"]]

    def __call__(self, structures: Sequence[Structure]) -> list[np.ndarray]:
        """Features of every structure, each of shape ``(len(structure), dim)`` (float32).

        Raises
        ------
        AtomFeatureError
            If any structure cannot be featurised (use :meth:`featurize_each` to isolate it).
        """
        features: list[np.ndarray] = []
        for start in range(0, len(structures), self.batch_size):
            chunk = structures[start : start + self.batch_size]
            features.extend(self._forward(self._graphs(chunk)))
        return features

    def featurize_each(
        self, structures: Sequence[Structure], graphs: Sequence[object] | None = None
    ) -> list[np.ndarray | str]:
        """Like calling the featurizer, but a failing structure gives its reason, not an error.

        ``graphs`` (the model's graphs) is accepted for the interface of
        :class:`~anisoscreen.model.pretrained_features.SevenNetFeaturizer` and not used:
        CHGNet builds its own graphs.
        """
        try:
            return list(self(structures))
        except AtomFeatureError:
            results: list[np.ndarray | str] = []
            for structure in structures:
                try:
                    results.append(self([structure])[0])
                except AtomFeatureError as exc:
                    results.append(str(exc))
            return results


def cached_features(
    structures: Sequence[Structure],
    keys: Sequence[str],
    name: str,
    cache_file: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """Features of many structures, read from / added to an ``.npz`` cache keyed by ``keys``.

    Training and evaluation featurise the same data set again and again (every resumed
    training chunk, every ``evaluate``); the cache makes that a file read. Keys should
    identify the structure exactly (e.g. :func:`anisoscreen.schemas.structure_id`).
    """
    cached: dict[str, np.ndarray] = {}
    path = Path(cache_file) if cache_file else None
    if path is not None and path.is_file():
        with np.load(path) as data:
            cached = {k: data[k] for k in data.files}
    missing = [i for i, key in enumerate(keys) if key not in cached]
    if missing:
        featurizer = featurizer_for(name, device)
        for i, features in zip(missing, featurizer([structures[i] for i in missing]), strict=True):
            cached[keys[i]] = features
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial.npz")
            np.savez(partial, **cached)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
            partial.replace(path)  # atomic: a crash never leaves a truncated cache
    return [cached[key] for key in keys]


class Featurizer(Protocol):
    """What a predictor needs of a feature set's featurizer."""

    def __call__(self, structures: Sequence[Structure]) -> list[np.ndarray]: ...

    def featurize_each(
        self, structures: Sequence[Structure], graphs: Sequence[Any] | None = None
    ) -> list[np.ndarray | str]: ...


def featurizer_for(name: str, device: str | torch.device = "cpu") -> Featurizer:
    """The featurizer of feature set ``name`` (CHGNet invariant or SevenNet equivariant)."""
    from anisoscreen.model.pretrained_features import SevenNetFeaturizer

    if name in EQUIVARIANT_FEATURE_SETS:
        return SevenNetFeaturizer(name, device=device)
    return AtomFeaturizer(name, device=device)


def data_set_cache(name: str, data_path: str | Path) -> Path:
    """Cache file of feature set ``name`` for one data-set file (by its checksum)."""
    from anisoscreen.settings import get_settings

    digest = file_checksum(data_path)[:16]
    return get_settings().data_dir / "cache" / "atom_features" / f"{name}-{digest}.npz"
