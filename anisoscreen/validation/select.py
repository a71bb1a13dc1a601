"""The one rule that chooses candidates for DFT validation.

Both the screening flow's validation stage and ``anisoscreen submit`` call
:func:`select_candidates`: predictions with a_r >= the threshold, highest first, one per
material (its best prediction, which travels with the candidate), then the first ``top_k``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anisoscreen.schemas import CandidateDoc, PredictionDoc
from anisoscreen.store import ResultsStore

__all__ = ["DEFAULT_AR_THRESHOLD", "select_candidates", "selection_rule"]

DEFAULT_AR_THRESHOLD = 2.5
"""a_r threshold of the reference screening (Lou & Ganose 2025), used when nothing is chosen."""


def selection_rule(top_k: int | None, ar_min: float | None) -> tuple[int | None, float | None]:
    """The effective ``(top_k, ar_min)``: the reference threshold when neither is given."""
    if top_k is None and ar_min is None:
        return None, DEFAULT_AR_THRESHOLD
    return top_k, ar_min


def select_candidates(
    results: ResultsStore,
    *,
    ids: Iterable[str] | None = None,
    top_k: int | None = None,
    ar_min: float | None = None,
    model: str | None = None,
) -> tuple[list[tuple[CandidateDoc, PredictionDoc | None]], list[tuple[str, str]]]:
    """Stored candidates to validate, with their prediction, and those that cannot be.

    With ``ids``, exactly those candidates, in that order (``ar_min`` / ``top_k`` still apply
    to those with a prediction). Otherwise the predictions with a_r >= ``ar_min``, highest
    a_r first, one per material, the first ``top_k``. ``model`` restricts the predictions to
    one model. See :func:`selection_rule` for the defaults.

    Returns
    -------
    tuple
        ``([(candidate, prediction), ...], [(material_id, reason), ...])``.
    """
    criteria: dict[str, Any] = {}
    if model:
        criteria["model"] = model
    skipped: list[tuple[str, str]] = []
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        criteria["material_id"] = {"$in": wanted}
    if ar_min is not None:
        criteria["anisotropy_ratio"] = {"$gte": ar_min}
    predictions = results.query(PredictionDoc, criteria, sort={"anisotropy_ratio": -1})
    best: dict[str, PredictionDoc] = {}
    for prediction in predictions:
        best.setdefault(prediction.material_id, prediction)
    order = wanted if ids is not None else list(best)
    if ids is not None and ar_min is not None:
        for mid in [m for m in order if m not in best]:
            skipped.append((mid, f"no prediction with a_r >= {ar_min:g}"))
        order = [m for m in order if m in best]
    if top_k is not None:
        order = order[:top_k]
    candidates = {
        c.material_id: c for c in results.query(CandidateDoc, {"material_id": {"$in": order}})
    }
    selected = []
    for mid in order:
        if mid not in candidates:
            skipped.append((mid, "no stored candidate (structure) with this id"))
            continue
        selected.append((candidates[mid], best.get(mid)))
    return selected, skipped
