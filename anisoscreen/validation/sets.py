"""VASP input sets that reproduce the Materials Project dielectric data.

The model was trained on Materials Project DFPT tensors (Petousis et al., *Sci. Data* 4,
160134), computed with PBE, a 520 eV plane-wave cut-off and pymatgen's ``MPRelaxSet``
POTCARs and Hubbard U values. atomate2's default generators are PBEsol, so a validation run
with them would not be comparable with a prediction. The sets here are pymatgen's MP sets
(``MPStaticSet(lepsilon=True)``, ``MPNonSCFSet(optics=True)``), which atomate2 Makers accept
as ``input_set_generator``, with the tighter settings of the reference paper:

* ``reciprocal_density = 200`` k-points per Å⁻³ (MP static: 100),
* ``EDIFF = 1e-5`` (MP DFPT value, stated explicitly so it survives ``inherit_incar``).

Every value is overridable: dataclass fields (``reciprocal_density``, ``ediff``, ...) or the
usual ``user_incar_settings`` / ``user_kpoints_settings`` / ``user_potcar_settings``, which
take precedence over everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymatgen.io.vasp.sets import MPNonSCFSet, MPStaticSet

__all__ = [
    "MP_DFPT_RECIPROCAL_DENSITY",
    "MPDielectricSetGenerator",
    "MPOpticsSetGenerator",
    "MPOpticsStaticSetGenerator",
    "describe_input_set",
]

MP_DFPT_RECIPROCAL_DENSITY = 200
"""k-points per Å⁻³ of reciprocal volume used for validation (the reference paper's value)."""

MP_DFPT_EDIFF = 1e-5
"""Electronic convergence (eV) of the DFPT runs."""


@dataclass
class MPDielectricSetGenerator(MPStaticSet):
    """DFPT (``LEPSILON``) inputs compatible with the Materials Project dielectric data.

    ``MPStaticSet(lepsilon=True)``: PBE with MP POTCARs, ``ENCUT = 520``, ``PREC = Accurate``,
    ``IBRION = 8``, ``LEPSILON``, ``LPEAD``, tetrahedron smearing, with a denser k-mesh.

    Parameters
    ----------
    lepsilon
        Compute the dielectric tensor by DFPT (keep ``True``).
    reciprocal_density
        k-points per Å⁻³ of reciprocal volume (Γ-centred mesh).
    ediff
        Electronic convergence criterion in eV.
    inherit_incar
        Take INCAR tags from a previous calculation; off so the MP values are always used.
    auto_ispin
        Turn spin polarisation off when a previous run shows no magnetic moments.
    **kwargs
        Any other ``MPStaticSet`` / ``VaspInputSet`` field (``user_incar_settings``...).
    """

    lepsilon: bool = True
    reciprocal_density: int = MP_DFPT_RECIPROCAL_DENSITY
    ediff: float = MP_DFPT_EDIFF
    inherit_incar: bool = False
    auto_ispin: bool = True
    force_gamma: bool = True

    @property
    def incar_updates(self) -> dict[str, Any]:
        """INCAR updates of ``MPStaticSet(lepsilon=True)`` plus the explicit ``EDIFF``."""
        updates = dict(super().incar_updates)
        if self.lepsilon:
            updates["EDIFF"] = self.ediff
        return updates


@dataclass
class MPOpticsStaticSetGenerator(MPStaticSet):
    """Self-consistent PBE static run (MP inputs) that precedes the ``LOPTICS`` run.

    Parameters
    ----------
    reciprocal_density
        k-points per Å⁻³ of reciprocal volume.
    inherit_incar
        Take INCAR tags from a previous calculation (off).
    """

    reciprocal_density: int = MP_DFPT_RECIPROCAL_DENSITY
    inherit_incar: bool = False
    force_gamma: bool = True


@dataclass
class MPOpticsSetGenerator(MPNonSCFSet):
    """Non-self-consistent ``LOPTICS`` run on a uniform mesh, MP (PBE, 520 eV) inputs.

    Parameters
    ----------
    mode
        k-point mode; ``"uniform"`` (tetrahedron method, required for optics).
    optics
        Set ``LOPTICS`` (keep ``True``).
    nedos
        Number of energy points of the dielectric function.
    reciprocal_density
        k-points per Å⁻³ of reciprocal volume of the uniform mesh.
    nbands_factor
        Extra empty bands relative to the static run (optics needs many).
    inherit_incar
        Take INCAR tags from the static run (off: the MP values are used).
    """

    mode: str = "uniform"
    optics: bool = True
    nedos: int = 2001
    reciprocal_density: float = MP_DFPT_RECIPROCAL_DENSITY
    nbands_factor: float = 2.0
    inherit_incar: bool = False
    force_gamma: bool = True


_DESCRIBED_FIELDS = (
    "reciprocal_density",
    "ediff",
    "nedos",
    "nbands_factor",
    "mode",
    "lepsilon",
    "optics",
)


def describe_input_set(generator: Any) -> dict[str, Any]:
    """The settings of an input-set generator that a validation record keeps.

    Returns the class, the functional, the cut-off, the fields in ``_DESCRIBED_FIELDS`` that
    the generator has and every user override, as plain JSON values.
    """
    config = getattr(generator, "_config_dict", None) or getattr(generator, "config_dict", {})
    incar = config.get("INCAR", {}) if isinstance(config, dict) else {}
    description: dict[str, Any] = {
        "generator": type(generator).__name__,
        "potcar_functional": getattr(generator, "user_potcar_functional", None)
        or (config.get("POTCAR_FUNCTIONAL") if isinstance(config, dict) else None),
        "encut": incar.get("ENCUT"),
        "gga": incar.get("GGA"),
    }
    for name in _DESCRIBED_FIELDS:
        if hasattr(generator, name):
            description[name] = getattr(generator, name)
    for name in ("user_incar_settings", "user_kpoints_settings", "user_potcar_settings"):
        value = getattr(generator, name, None)
        if value:
            description[name] = _plain(value)
    return description


def _plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
