"""Screening objectives: which number of a prediction ranks the candidates.

* ``ar``: a_r of eps_inf (the reference campaign; needs only the electronic model);
* ``ar-total``: a_r of the static tensor eps_inf + eps0 (DTNet's first campaign);
* ``eps-total``: eps_poly of the static tensor;
* ``fom``: the high-kappa figure of merit E_g(MP) x eps_poly(total), Yim et al.'s leakage
  proxy (DTNet's second campaign); candidates without a band gap rank last.

All but ``ar`` need a model set with an ionic model (``ionic_model`` in the settings).
"""

from __future__ import annotations

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import PredictionDoc

__all__ = ["OBJECTIVES", "check_objective", "needs_ionic", "objective_value"]

OBJECTIVES = ("ar", "ar-total", "eps-total", "fom")


def needs_ionic(objective: str) -> bool:
    """Whether ``objective`` needs the ionic model's predictions."""
    return objective != "ar"


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
