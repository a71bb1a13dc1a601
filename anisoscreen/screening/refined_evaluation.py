"""A model set evaluated with the refine stage: the physics eps0 scored on a data split.

``anisoscreen evaluate --ionic-model M --refine-charges SOURCE`` scores what ``run-screen
--refine-top K --refine-charges SOURCE`` reports for a screen's top: the model set's direct
predictions of the split (:func:`~anisoscreen.model.training.evaluate.evaluate_model_set`),
then every structure of the split under the screen's size limit through the refine stage's
own code (:func:`~anisoscreen.screening.ionic_refine.refine_structures`, with the weights
and potential :meth:`IonicRefineMaker.for_charges` chooses). Larger structures keep the
direct value, as flagged ones do. The force constants are cached in the results store
(:mod:`anisoscreen.ionic_physics.force_constant_cache`), so an evaluation killed part-way
resumes where it stopped, and a second one (another Born model or weight) computes none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from anisoscreen.model.training.evaluate import Report, metrics
from anisoscreen.screening.ionic_refine import IonicRefineMaker, RefineInput, refine_structures

__all__ = ["MAX_SITES", "refine_model_set"]

MAX_SITES = 40
"""Structures with this many sites or more keep the direct value (``run-screen``'s limit)."""


def refine_model_set(
    results: dict[str, Any],
    refine: IonicRefineMaker,
    cleaned: Sequence[Any],
    max_sites: int = MAX_SITES,
    progress: Report | None = None,
) -> dict[str, Any]:
    """A model set's evaluation plus its refined eps0 and total (``ionic_refined``, ...).

    Parameters
    ----------
    results
        :func:`~anisoscreen.model.training.evaluate.evaluate_model_set`'s results, evaluated
        on ``cleaned`` (the data set's entries after ``clean_entries``).
    refine
        The refine stage whose method is scored (its potential, Born source, weights and
        ``store``, where the force constants are cached; ``top_k`` is not used).
    max_sites
        Structures with at least this many sites keep the direct eps0.
    progress
        ``report(done, total)`` of the refined structures.

    Returns
    -------
    dict
        ``results`` with ``ionic_refined`` and ``total_refined`` in the same shape, each
        with ``ionic_method`` (each row's; ``direct`` for the larger structures),
        ``physics_spread`` (each row's spread of the physics eps0 over the Born members, or
        ``None``), ``methods`` (rows per method), ``n_refined``, ``n_flagged`` and
        ``refine_seconds`` (their wall time, cached force constants taking none).
    """
    from anisoscreen.screening.jobs import _results

    chosen = [cleaned[i] for i in results["total"]["indices"]]
    eps_inf = results["electronic"]["predicted"]
    direct = results["ionic"]["predicted"]
    members = results["ionic"]["member_predicted"]
    # the spread a prediction document holds (TensorPrediction.from_members)
    direct_std = members.std(axis=0, ddof=1) if len(members) > 1 else None
    items = [
        RefineInput(
            rank=row,
            material_id=entry.material_id,
            formula=entry.structure.composition.reduced_formula,
            structure=entry.structure,
            eps_inf=eps_inf[row],
            direct=direct[row],
            direct_std=direct_std[row] if direct_std is not None else None,
        )
        for row, entry in enumerate(chosen)
        if len(entry.structure) < max_sites
    ]
    done = 0

    def counted(_: Any) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(items))

    with _results(refine.store) as store:
        rows = refine_structures(items, refine.method, results=store, on_row=counted)
    results = dict(results)
    refined = direct.copy()
    per_row = ["direct"] * len(chosen)
    spreads: list[float | None] = [None] * len(chosen)
    for row in rows:
        per_row[row.rank] = row.ionic_method
        spreads[row.rank] = row.physics_spread
        if row.eps_ionic is not None:
            refined[row.rank] = np.asarray(row.eps_ionic)
    methods = Counter(per_row)
    systems = results["total"]["crystal_systems"]
    blend = (
        f"spread ratio {refine.spread_ratio}, physics scale {refine.physics_weight}"
        if refine.spread_ratio is not None
        else f"physics weight {refine.physics_weight}, direct weight {refine.direct_weight}"
    )
    what = (
        f"{results['ionic']['model']} refined ({refine.born_source} Born charges, "
        f"{refine.potential} force constants; {blend})"
    )
    summary = {
        "subset": results["total"]["subset"],
        "split_seed": results["total"]["split_seed"],
        "max_sites": max_sites,
        "methods": dict(methods),
        "ionic_method": per_row,
        "physics_spread": spreads,
        "n_refined": len(rows),
        "n_flagged": sum(bool(row.flags) for row in rows),
        "errors": {row.material_id: row.error for row in rows if row.error},
        "refine_seconds": sum(row.seconds for row in rows),
    }
    for key, target, predicted, reference in (
        ("ionic_refined", "ionic", refined, results["ionic"]["reference"]),
        ("total_refined", "total", eps_inf + refined, results["total"]["reference"]),
    ):
        results[key] = {
            "model": what if target == "ionic" else f"{results['electronic']['model']} + {what}",
            "target": target,
            **summary,
            "metrics": metrics(predicted, reference, systems, target),
            "predicted": predicted,
            "reference": reference,
        }
    return results
