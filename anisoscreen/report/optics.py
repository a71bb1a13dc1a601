"""The frequency-dependent dielectric function stored with an optics validation.

This module is the one place that knows the layout of ``ValidationDoc.optics``. Expected
(the JSON form of an atomate2/pymatgen ``Vasprun.dielectric``)::

    {
        "energies": [e0, e1, ...],                  # photon energies, eV
        "eps_imag": [[xx, yy, zz, xy, yz, xz], ...] # or a 3x3 per energy
        "eps_real": [[xx, yy, zz, xy, yz, xz], ...] # optional, same layout
    }

The six-component rows follow VASP's ``vasprun.xml`` order ``xx yy zz xy yz zx``. Aliases
``energy`` / ``imag`` / ``real`` (pymatgen's ``dielectric`` tuple names) are accepted too.
If the validation pipeline stores something else, adapt :func:`optics_spectrum` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from anisoscreen.errors import AnisoscreenError

__all__ = [
    "OpticsSpectrum",
    "optics_spectrum",
    "principal_axes",
    "project",
]

_ALIASES = {
    "energies": ("energies", "energy"),
    "eps_imag": ("eps_imag", "imag"),
    "eps_real": ("eps_real", "real"),
}


def _as_tensors(value: Any) -> np.ndarray:
    """(n, 6) Voigt-like VASP rows or (n, 3, 3) tensors -> (n, 3, 3) float array."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 3 and array.shape[1:] == (3, 3):
        return array
    if array.ndim == 2 and array.shape[1] == 6:
        from anisoscreen import tensor as tmath

        return tmath.voigt6_to_tensors(array)
    if array.ndim == 2 and array.shape[1] == 3:  # diagonal only
        return np.stack([np.diag(row) for row in array])
    raise ValueError(f"expected (n, 6), (n, 3) or (n, 3, 3) per-energy tensors, got {array.shape}")


class OpticsSpectrum(BaseModel):
    """Dielectric function on an energy grid; tensors as (n, 3, 3) numpy arrays."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    energies: np.ndarray
    eps_imag: np.ndarray
    eps_real: np.ndarray | None = None

    @field_validator("energies", mode="before")
    @classmethod
    def _energies(cls, value: Any) -> np.ndarray:
        array = np.asarray(value, dtype=float)
        if array.ndim != 1 or len(array) < 2:
            raise ValueError("energies must be a 1D list of at least two values (eV)")
        return array

    @field_validator("eps_imag", "eps_real", mode="before")
    @classmethod
    def _tensors(cls, value: Any) -> np.ndarray | None:
        return None if value is None else _as_tensors(value)

    @model_validator(mode="after")
    def _lengths(self) -> OpticsSpectrum:
        for name in ("eps_imag", "eps_real"):
            array = getattr(self, name)
            if array is not None and len(array) != len(self.energies):
                raise ValueError(f"{name} has {len(array)} rows for {len(self.energies)} energies")
        return self


def optics_spectrum(doc: Any) -> OpticsSpectrum:
    """Read the spectrum of a ``ValidationDoc`` (or a plain ``optics`` dict).

    Raises
    ------
    AnisoscreenError
        If there is no spectrum or its layout is not the one documented above.
    """
    optics = doc if isinstance(doc, dict) else getattr(doc, "optics", None)
    name = getattr(doc, "material_id", "this material")
    if not optics:
        raise AnisoscreenError(f"no frequency-dependent dielectric function for {name}")
    values = {}
    for field, aliases in _ALIASES.items():
        values[field] = next((optics[a] for a in aliases if a in optics), None)
    try:
        return OpticsSpectrum(**values)
    except Exception as exc:  # pydantic ValidationError or numpy shape errors
        raise AnisoscreenError(f"unreadable optics data for {name}: {exc}") from exc


def principal_axes(tensor: Any) -> tuple[np.ndarray, np.ndarray]:
    """Ascending eigenvalues and eigenvectors (columns) of a symmetric 3x3 tensor."""
    from anisoscreen import tensor as tmath

    values, vectors = np.linalg.eigh(tmath.symmetrize(tensor))
    return values, vectors


def project(tensors: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Components ``v_k^T T(E) v_k`` of (n, 3, 3) tensors along the columns of ``axes``."""
    return np.einsum("ik,nij,jk->nk", axes, tensors, axes)
