"""The refine stage's blend of two eps0 values: its inputs, its weights on a grid, its scores.

Not a script: the studies of the blend import it (``blend_fit.py``, ``blend_spread.py``,
``blend_potentials.py``, ``blend_mode_shift.py``, ``ionic_direct_variants.py`` and
``ionic_physics_study.py hybrid``), so they read the same values through the package's path,
the cached force constants through one loop (:func:`cached_cells`), and search the same grid
the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from anisoscreen.ionic_physics.force_constants import ForceConstants
from anisoscreen.model.training.error_slices import tensor_errors, tensor_mae
from anisoscreen.model.training.evaluate import evaluate_model_set
from anisoscreen.screening.ionic_refine import IonicRefineMaker
from anisoscreen.screening.refined_evaluation import refine_model_set
from anisoscreen.settings import DEFAULT_IONIC_MODEL, DEFAULT_MODEL

WEIGHT_GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)
"""Each weight's candidates: 0 to 1 in steps of 0.05."""


def blend_inputs(
    subset: str,
    cleaned: list[Any],
    data: Path,
    potential: str,
    born_model: str,
    ionic_model: str = DEFAULT_IONIC_MODEL,
) -> dict[str, Any]:
    """Direct, physics (where used), eps_inf and reference tensors of one split.

    The direct values are the model set's (``evaluate_model_set``: the default electronic
    model and ``ionic_model``, a name or a ``model.pt``), the physics ones
    the refine stage's with predicted charges at weight 1 (``refine_model_set``, force
    constants from the results store's cache), with ``physics_spread``, the stage's spread
    of each physics value over the Born members (``nan`` where it has none);
    ``direct_members`` the direct model's members'.
    ``structures`` are the split's, in that order.
    """
    results = evaluate_model_set(DEFAULT_MODEL, ionic_model, data, subset=subset, cleaned=cleaned)
    physics_alone = IonicRefineMaker.for_charges(
        "predicted",
        potential=potential,
        physics_weight=1.0,
        direct_weight=0.0,
        born_model=born_model,
    )
    refined = refine_model_set(results, physics_alone, cleaned)["ionic_refined"]
    return {
        "direct": results["ionic"]["predicted"],
        "direct_members": results["ionic"]["member_predicted"],
        "physics": refined["predicted"],
        "used": np.array([m == "physics" for m in refined["ionic_method"]]),
        "physics_spread": np.array(
            [np.nan if s is None else s for s in refined["physics_spread"]], dtype=float
        ),
        "electronic": results["electronic"]["predicted"],
        "reference_ionic": results["ionic"]["reference"],
        "reference_total": results["total"]["reference"],
        "structures": [cleaned[i].structure for i in results["total"]["indices"]],
    }


def born_mae(subset: str, cleaned: list[Any], born_model: str) -> dict[str, float]:
    """A Born model's charge MAE (e per component) on a split's cells with DFPT charges.

    The DFPT charges with the acoustic sum rule imposed, as the physics route uses them (the
    model card's figure leaves them as VASP wrote them). ``n``: the cells scored.
    """
    from anisoscreen.ionic_physics.formula import impose_born_asr
    from anisoscreen.model.born_charges import predict_born_charges
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import random_split

    loaded = load_model(born_model)
    split = random_split(len(cleaned), loaded.metadata.get("split_seed", 42))
    entries = [cleaned[i] for i in split[subset]]
    entries = [e for e in entries if e.born is not None and len(e.born) == len(e.structure)]
    charges = predict_born_charges(loaded, [e.structure for e in entries])
    errors = [np.abs(z - impose_born_asr(e.born)) for z, e in zip(charges, entries, strict=True)]
    return {"n": len(entries), "born_mae": float(np.concatenate(errors).mean())}


def both_splits(
    split_of: Callable[[str, list[Any], Path], dict[str, Any]],
    subsets: Sequence[str] = ("validation", "test"),
) -> dict[str, dict[str, Any]]:
    """``split_of(subset, cleaned, data)`` of the validation and test splits of the shared data.

    The shared data set is read and cleaned once, for both (or for ``subsets`` alone: a
    choice made on validation can be made before the test split's force constants exist).
    """
    from anisoscreen.model.training.dataset import clean_entries, load_entries
    from anisoscreen.settings import get_settings

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    cleaned = clean_entries(load_entries(data))[0]
    return {s: split_of(s, cleaned, data) for s in subsets}


def cached_cells(
    part: dict[str, Any], rows: Iterable[int], potentials: Sequence[str]
) -> Iterator[tuple[int, Structure, list[ForceConstants]]]:
    """``(row, structure, force constants of each potential)`` of ``part``'s ``rows``.

    The force constants are the results store's (``blend_inputs`` found or computed them for
    every cell under 40 sites, for its potential; run it with each of ``potentials`` first).
    """
    from anisoscreen.ionic_physics.force_constant_cache import lookup
    from anisoscreen.screening.jobs import _results

    with _results(None) as store:
        for row in rows:
            structure = part["structures"][row]
            found = [lookup(store, structure, potential) for potential in potentials]
            missing = [p for p, fc in zip(potentials, found, strict=True) if fc is None]
            if missing:
                raise RuntimeError(f"no cached {missing} force constants for row {row}")
            yield int(row), structure, [fc for fc in found if fc is not None]


def scores(part: dict[str, Any], ionic: np.ndarray) -> dict[str, float]:
    """Ionic and total MAE_ten of ``ionic`` (eps0 of ``part``'s cells, with its eps_inf)."""
    return {
        "ionic_mae_ten": float(tensor_mae(ionic, part["reference_ionic"])),
        "total_mae_ten": float(tensor_mae(ionic + part["electronic"], part["reference_total"])),
    }


def bootstrap_interval(
    part: dict[str, Any], ionic: np.ndarray, resamples: int = 2000
) -> dict[str, list[float]]:
    """95 % bootstrap intervals of ``ionic``'s ionic and total MAE_ten (cells resampled, seed 0)."""
    errors = {
        "ionic_mae_ten": tensor_errors(ionic, part["reference_ionic"]),
        "total_mae_ten": tensor_errors(ionic + part["electronic"], part["reference_total"]),
    }
    draws = np.random.default_rng(0).integers(0, len(ionic), (resamples, len(ionic)))
    return {
        name: np.percentile(error[draws].mean(axis=1), [2.5, 97.5]).round(4).tolist()
        for name, error in errors.items()
    }


def blend(
    direct: np.ndarray,
    physics: np.ndarray,
    used: np.ndarray,
    physics_weight: float,
    direct_weight: float | None = None,
) -> np.ndarray:
    """``direct_weight direct + physics_weight physics`` where ``used``, else ``direct``.

    ``direct_weight=None`` is ``1 - physics_weight`` (``direct + w (physics - direct)``).
    """
    kept = 1.0 - physics_weight if direct_weight is None else direct_weight
    mixed = kept * direct + physics_weight * physics
    return np.where(np.asarray(used)[:, None, None], mixed, direct)


def best_weights(error: Callable[[float, float], float]) -> tuple[float, float]:
    """``(physics_weight, direct_weight)`` on the grid with the smallest ``error``."""
    pairs = [(float(p), float(d)) for p in WEIGHT_GRID for d in WEIGHT_GRID]
    return pairs[int(np.argmin([error(p, d) for p, d in pairs]))]


SCALE_GRID = np.round(np.arange(0.6, 1.2001, 0.025), 3)
"""The log blend's overall scale candidates: 0.6 to 1.2 in steps of 0.025."""


def _matrix_function(
    tensors: np.ndarray, function: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``function`` of each symmetric (3, 3) tensor, through its eigenvalues."""
    values, vectors = np.linalg.eigh(tensors)
    return (vectors * function(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def log_blend(
    direct: np.ndarray, physics: np.ndarray, used: np.ndarray, weight: float, scale: float
) -> np.ndarray:
    """``scale (exp(w log(I + physics) + (1 - w) log(I + direct)) - I)`` where ``used``.

    A geometric mean of ``I + eps0`` (matrix logarithms): errors that are ratios, as a
    softened mode's, weigh alike at every size of eps0. ``direct`` elsewhere.
    """
    identity = np.eye(3)

    def log(tensors: np.ndarray) -> np.ndarray:
        return _matrix_function(identity + tensors, lambda x: np.log(np.clip(x, 1e-6, None)))

    mixed = scale * (
        _matrix_function(weight * log(physics) + (1 - weight) * log(direct), np.exp) - identity
    )
    return np.where(np.asarray(used)[:, None, None], mixed, direct)
