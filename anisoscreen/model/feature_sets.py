"""The pretrained per-atom feature sets a network can take as input, and their widths.

Torch-free: a model file's config is completed from these tables when it is read
(:func:`with_feature_channels`), before (or without) any network being built. The
featurizers themselves live in :mod:`anisoscreen.model.atom_features` (CHGNet) and
:mod:`anisoscreen.model.pretrained_features` (SevenNet).
"""

from __future__ import annotations

from dataclasses import replace

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.nn.config import ModelConfig

__all__ = [
    "EQUIVARIANT_FEATURE_SETS",
    "FEATURE_SETS",
    "feature_channels",
    "feature_orders",
    "with_feature_channels",
]

FEATURE_SETS: dict[str, int] = {
    "chgnet-0.3.0": 64,
    "sevennet-0": 480,
    "sevennet-0-scalars": 128,
    "sevennet-l3i5-scalars": 128,
}
"""Known feature sets and their width per atom (``sevennet-0``: equivariant ``0e + 1 + 2``
features; ``sevennet-0-scalars``: their 128 invariant channels alone; ``sevennet-l3i5-scalars``:
the same channels of SevenNet-l3i5; see :mod:`anisoscreen.model.pretrained_features`)."""

EQUIVARIANT_FEATURE_SETS: dict[str, dict[str, object]] = {
    "sevennet-0": {
        "checkpoint": "7net-0",
        "layer": "3_equivariant_gate",
        "channels": {0: 128, 1: 64, 2: 32},
        "cutoff": 5.0,
    },
    "sevennet-0-scalars": {
        "checkpoint": "7net-0",
        "layer": "3_equivariant_gate",
        "channels": {0: 128},
        "cutoff": 5.0,
    },
    "sevennet-l3i5-scalars": {
        "checkpoint": "7net-l3i5",
        "layer": "3_equivariant_gate",
        "channels": {0: 128},
        "cutoff": 5.0,
    },
}
"""Known SevenNet feature sets: checkpoint, the module whose output is taken, channels per l.

The channels are a leading part of that module's output in e3nn's layout (all ``l = 0``
channels first): ``sevennet-0-scalars`` keeps the 128 invariant channels of ``sevennet-0``
alone, so the network on them is invariant in its input like the CHGNet option, and the
directions come from its own equivariant layers only. ``sevennet-l3i5-scalars`` takes the
same channels of SevenNet-l3i5 (its blocks carry ``l`` up to 3; 2.6x SevenNet-0's cost).
"""


def feature_orders(name: str) -> dict[int, int]:
    """Channels per rotational order ``l`` of equivariant feature set ``name``."""
    if name not in EQUIVARIANT_FEATURE_SETS:
        raise AnisoscreenError(f"unknown equivariant feature set {name!r}")
    channels = EQUIVARIANT_FEATURE_SETS[name]["channels"]
    assert isinstance(channels, dict)
    return {int(l): int(c) for l, c in channels.items()}


def feature_channels(name: str) -> list[int]:
    """Channels per rotational order ``l`` of feature set ``name`` (``[64]``: invariant)."""
    if name in EQUIVARIANT_FEATURE_SETS:
        orders = feature_orders(name)
        return [orders.get(l, 0) for l in range(max(orders) + 1)]
    if name not in FEATURE_SETS:
        raise AnisoscreenError(
            f"unknown atom feature set {name!r}; known: {', '.join(FEATURE_SETS)}"
        )
    return [FEATURE_SETS[name]]


def with_feature_channels(config: ModelConfig) -> ModelConfig:
    """``config`` with :attr:`~ModelConfig.atom_feature_channels` filled from its feature set.

    The network takes the feature widths from its config only; model files written before the
    field existed get it here, from the feature set's name.
    """
    if not config.atom_features or config.atom_feature_channels:
        return config
    return replace(config, atom_feature_channels=feature_channels(config.atom_features))
