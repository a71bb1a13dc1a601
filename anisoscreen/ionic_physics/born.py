"""Where the Born charges of the physics route come from, by name.

* ``dfpt``: the DFPT charges of the data set (``born`` of the shared
  ``mp_dielectric_tensors.json.gz``), for materials it holds: the route then measures only
  the potential's error.
* ``nominal``: isotropic formal charges, ``Z*_i = q_i I`` with ``q_i`` pymatgen's most likely
  oxidation state of the element (rigid-ion charges; real Born charges of covalent or
  ferroelectric-like bonds are often larger, so this underestimates eps0 there).

Both are returned with the acoustic sum rule imposed.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.ionic_physics.formula import impose_born_asr

__all__ = ["BORN_SOURCES", "born_charges", "dfpt_born_table", "nominal_born_charges"]

BORN_SOURCES = ("dfpt", "nominal")
"""Names :func:`born_charges` accepts."""


def nominal_born_charges(structure: Structure) -> np.ndarray:
    """Isotropic formal charges (N, 3, 3) from pymatgen's oxidation-state guess."""
    composition = structure.composition
    try:
        guesses = composition.oxi_state_guesses(max_sites=-20)
    except ValueError:  # the reduced formula is already larger than that
        guesses = composition.oxi_state_guesses()
    if not guesses:
        raise AnisoscreenError(f"no oxidation states for {structure.composition.reduced_formula}")
    charges = np.array([guesses[0][site.specie.symbol] for site in structure], dtype=float)
    return impose_born_asr(charges[:, None, None] * np.eye(3))


@lru_cache(maxsize=2)
def dfpt_born_table(path: Path) -> dict[str, np.ndarray]:
    """``material_id -> Born charges (N, 3, 3)`` of the entries of a data file that have them."""
    with gzip.open(path, "rt") as handle:
        records = json.load(handle)
    return {
        str(r["material_id"]): np.asarray(r["born"], dtype=float)
        for r in records
        if r.get("born") is not None and r.get("material_id")
    }


def born_charges(
    source: str, structure: Structure, material_id: str | None = None, data: Path | None = None
) -> np.ndarray:
    """Born charges (N, 3, 3) of ``structure`` from ``source`` (see the module docstring).

    ``data`` is the DFPT data file (default: the shared one of the settings). Raises
    :class:`~anisoscreen.errors.AnisoscreenError` where the source has no charges for it.
    """
    if source == "nominal":
        return nominal_born_charges(structure)
    if source != "dfpt":
        raise AnisoscreenError(f"unknown Born source {source!r}; known: {', '.join(BORN_SOURCES)}")
    if data is None:
        from anisoscreen.settings import get_settings

        data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    born = dfpt_born_table(Path(data)).get(str(material_id))
    if born is None:
        raise AnisoscreenError(f"no DFPT Born charges for {material_id}")
    if born.shape != (len(structure), 3, 3):
        raise AnisoscreenError(f"DFPT Born charges of {material_id} do not match its structure")
    return impose_born_asr(born)
