"""Where the Born charges of the physics route come from, by name.

* ``dfpt``: the DFPT charges of the data set (``born`` of the shared
  ``mp_dielectric_tensors.json.gz``), for materials it holds (by MP id, or by structure id
  for its records without one): the route then measures only the potential's error. The
  charges are matched to the given structure site by site, so a structure with its sites in
  another order gets them in its order, and another structure under the same id gets none.
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
from anisoscreen.ionic_physics.sites import site_order

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
def dfpt_born_table(path: Path) -> dict[str, tuple[Structure | None, np.ndarray]]:
    """``id -> (structure, Born charges (N, 3, 3))`` of the records of a data file with charges.

    A record without a ``material_id`` is keyed by the
    :func:`~anisoscreen.schemas.structure_id` of its structure, the id the data set's entries
    and a screen's structures without an MP id get. ``structure`` is ``None`` when the record
    holds none.
    """
    from anisoscreen.schemas import structure_id

    with gzip.open(path, "rt") as handle:
        records = json.load(handle)
    table: dict[str, tuple[Structure | None, np.ndarray]] = {}
    for record in records:
        if record.get("born") is None:
            continue
        stored = record.get("structure")
        structure = Structure.from_dict(stored) if stored else None
        key = record.get("material_id") or (structure_id(structure) if structure else None)
        if key:
            table[str(key)] = (structure, np.asarray(record["born"], dtype=float))
    return table


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
    found = dfpt_born_table(Path(data)).get(str(material_id))
    if found is None:
        raise AnisoscreenError(f"no DFPT Born charges for {material_id}")
    reference, born = found
    if born.shape != (len(structure), 3, 3):
        raise AnisoscreenError(f"DFPT Born charges of {material_id} do not match its structure")
    if reference is not None:  # the charges follow the sites, in whatever order they come
        try:
            born = born[site_order(reference, structure)]
        except AnisoscreenError as exc:
            raise AnisoscreenError(
                f"DFPT Born charges of {material_id} belong to another structure ({exc})"
            ) from None
    return impose_born_asr(born)
