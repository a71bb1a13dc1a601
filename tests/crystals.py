"""Small real crystals and model configurations that many tests build."""

from __future__ import annotations

from typing import Any

from pymatgen.core import Lattice, Structure


def nacl() -> Structure:
    """Rock-salt NaCl (a = 5.64 A): cubic, isotropic."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def mos2() -> Structure:
    """Bulk 2H-MoS2 (a = 3.16, c = 12.3 A): hexagonal, layered, two layers per cell."""
    return Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(3.16, 12.3),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]],
    )


def laminate_config(**fields: Any):
    """A small laminate read-out :class:`ModelConfig` (``fields`` add to or override it)."""
    from anisoscreen.model.nn.network import ModelConfig

    base: dict[str, Any] = {
        "mul": 4,
        "lmax": 2,
        "readout": "psd_laminate_volume",
        "volume_per_atom": 15.0,
        "target_shift": 0.5,
        "target_scale": 0.4,
    }
    return ModelConfig(**{**base, **fields})
