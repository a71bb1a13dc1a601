"""Screening objectives: which number of a prediction ranks the candidates.

* ``ar``: a_r of eps_inf (the reference campaign; needs only the electronic model);
* ``ar-total``: a_r of the static tensor eps_inf + eps0 (DTNet's first campaign);
* ``eps-total``: eps_poly of the static tensor;
* ``fom``: the high-kappa figure of merit E_g(MP) x eps_poly(total), Yim et al.'s leakage
  proxy (DTNet's second campaign); candidates without a band gap rank last;
* ``birefringence``: dn = n_max - n_min of eps_inf (n = sqrt of its eigenvalues), what
  polariser and waveplate designers quote;
* ``eps-poly``: eps_poly of eps_inf.

All but ``ar``, ``birefringence`` and ``eps-poly`` need a model set with an ionic model
(``ionic_model`` in the settings). The same list serves ``run-screen`` (one value per
:class:`~anisoscreen.schemas.PredictionDoc`, :func:`objective_value`) and campaigns (one
value per ensemble member or DFT tensor, :func:`tensor_values`).
"""

from __future__ import annotations

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import PredictionDoc

__all__ = [
    "OBJECTIVES",
    "SHIPPED_IONIC_MODEL",
    "check_objective",
    "ionic_model_for",
    "needs_ionic",
    "objective_value",
    "tensor_values",
]

SHIPPED_IONIC_MODEL = "anisonet-mp-ionic-v1"
"""The shipped ionic model, used when an objective needs the static tensor and none is set."""

OBJECTIVES = ("ar", "ar-total", "eps-total", "fom", "birefringence", "eps-poly")

_ELECTRONIC_ONLY = ("ar", "birefringence", "eps-poly")


def needs_ionic(objective: str) -> bool:
    """Whether ``objective`` needs the ionic model's predictions."""
    return objective not in _ELECTRONIC_ONLY


def ionic_model_for(objective: str, ionic_model: str | None) -> str | None:
    """The ionic model of a screen: the one given, else the shipped one if ``objective`` needs it.

    ``None`` when neither applies (the a_r and birefringence objectives need none).
    """
    if ionic_model or not needs_ionic(objective):
        return ionic_model
    return SHIPPED_IONIC_MODEL


def check_objective(objective: str, ionic_model: str | None) -> None:
    """Refuse an unknown objective, or one the model set cannot compute.

    Raises
    ------
    AnisoscreenError
        For an unknown objective or a total-tensor objective without ``ionic_model``.
    """
    if objective not in OBJECTIVES:
        raise AnisoscreenError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")
    if needs_ionic(objective) and not ionic_model:
        raise AnisoscreenError(
            f"objective {objective!r} needs the static tensor: set ionic_model "
            "(--ionic-model or ANISOSCREEN_IONIC_MODEL)"
        )


def objective_value(doc: PredictionDoc, objective: str) -> float | None:
    """The value ``objective`` ranks ``doc`` by (higher first); ``None`` when it is unknown."""
    if objective == "ar":
        return doc.anisotropy_ratio
    if objective == "birefringence":
        return doc.birefringence
    if objective == "eps-poly":
        return doc.eps_poly
    total = doc.eps_total
    if total is None:
        return None
    if objective == "ar-total":
        return total.anisotropy_ratio
    if objective == "eps-total":
        return total.eps_poly
    if objective == "fom":
        return doc.figure_of_merit
    raise AnisoscreenError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")


def tensor_values(
    electronic: np.ndarray,
    objective: str,
    ionic: np.ndarray | None = None,
    band_gap: float | None = None,
) -> np.ndarray:
    """Values of ``objective`` for dielectric tensors of shape ``(..., 3, 3)``.

    Parameters
    ----------
    electronic
        eps_inf tensors (ensemble members, DFT results).
    objective
        One of :data:`OBJECTIVES`.
    ionic
        Ionic tensors, broadcast against ``electronic`` into the static tensor; needed by
        the objectives that :func:`needs_ionic`.
    band_gap
        Band gap in eV for ``fom``; without one the FOM is 0 (ranks last, as in a screen).

    Raises
    ------
    AnisoscreenError
        For an unknown objective, or a static-tensor one without ``ionic``.
    """
    if objective not in OBJECTIVES:
        raise AnisoscreenError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")
    tensors = np.asarray(electronic, dtype=float)
    if needs_ionic(objective):
        if ionic is None:
            raise AnisoscreenError(f"objective {objective!r} needs the ionic tensor")
        tensors = tensors + np.asarray(ionic, dtype=float)
    # eigenvalues floored: a member with a non-positive one still gets a value
    if objective in ("ar", "ar-total"):
        return np.asarray(tmath.anisotropy_ratio(tensors, floor=1e-6))
    if objective == "birefringence":
        n = np.sqrt(np.clip(tmath.eigenvalues(tensors), 1e-6, None))
        return n[..., -1] - n[..., 0]
    eps_poly = tmath.eigenvalues(tensors).mean(axis=-1)
    if objective == "fom":
        gap = 0.0 if band_gap is None or not np.isfinite(band_gap) else float(band_gap)
        return gap * eps_poly
    return eps_poly
