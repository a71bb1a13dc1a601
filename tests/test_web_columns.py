"""The browser's column filters, joins and sorts give exactly what ``anisoscreen query`` gives.

A seeded store of 120 materials (two models for a third of them, some with equal timestamps;
missing dimensionalities, band gaps and static tensors; completed, failed and optics-less
validations) is queried through :class:`~anisoscreen.web.snapshot.Snapshot` and through
:func:`~anisoscreen.query.find_candidates` (Mongo criteria applied by the store) with every
sort key in both directions and combinations of every filter; the rows must be identical.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from mongomock.filtering import filter_applies

from anisoscreen import tensor as tmath
from anisoscreen.query import SORT_FIELDS, CandidateQuery, find_candidates
from anisoscreen.schemas import PredictionDoc, TensorPrediction, ValidationDoc, ValidationState
from anisoscreen.web.snapshot import Snapshot

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ELEMENT_POOL = ("O", "S", "Mo", "W", "Na", "K", "Ba", "Ti", "Se")


def _tensor(rng: np.random.Generator) -> np.ndarray:
    diagonal = rng.uniform(2.0, 6.0, 3) * np.array([1.0, 1.0, rng.uniform(1.0, 3.0)])
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return rotation @ np.diag(diagonal) @ rotation.T


def _prediction(rng, index: int, model: str, created_at: datetime) -> PredictionDoc:
    tensor = _tensor(rng)
    elements = sorted(rng.choice(ELEMENT_POOL, size=int(rng.integers(1, 4)), replace=False))
    gap = None if index % 7 == 0 else round(float(rng.uniform(0.0, 5.0)), 1)
    fields = {}
    if index % 3 == 0:  # an ionic model: static tensor and FOM
        total = tmath.summarize(tensor + np.diag(rng.uniform(1.0, 20.0, 3)))
        fields["eps_total"] = TensorPrediction(
            tensor=total.tensor.tolist(),
            eigenvalues=total.eigenvalues.tolist(),
            eps_poly=total.eps_poly,
            anisotropy_ratio=total.anisotropy_ratio,
        )
        fields["figure_of_merit"] = None if gap is None else gap * total.eps_poly
    return PredictionDoc.from_tensor(
        tensor,
        material_id=f"mp-{index:04d}",
        formula_pretty="".join(elements),
        model=model,
        model_version="1",
        model_checksum="0" * 64,
        dimensionality=None if index % 11 == 0 else int(rng.integers(0, 4)),
        elements=list(elements),
        band_gap=gap,
        energy_above_hull=round(float(rng.uniform(0.0, 0.1)), 2),  # ties in the sort value
        anisotropy_ratio_std=None if index % 5 == 0 else float(rng.uniform(0, 0.5)),
        created_at=created_at,
        last_updated=created_at,  # a tie is a tie, whichever millisecond the docs were built in
        **fields,
    )


@pytest.fixture
def results(memory_results):
    rng = np.random.default_rng(7)
    predictions, validations = [], []
    for index in range(120):
        predictions.append(_prediction(rng, index, "model-a", T0))
        if index % 3 == 1:  # a second model, newer, or at the same time (first stored wins)
            later = T0 + timedelta(days=1) if index % 2 else T0
            predictions.append(_prediction(rng, index, "model-b", later))
        if index % 4 == 0:
            dft = tmath.summarize(_tensor(rng))
            state = ValidationState.FAILED if index % 16 == 0 else ValidationState.COMPLETED
            validations.append(
                ValidationDoc(
                    material_id=f"mp-{index:04d}",
                    formula_pretty="X",
                    job_uuid=f"job-{index}",
                    state=state,
                    epsilon_electronic=dft.tensor.tolist(),
                    eigenvalues=dft.eigenvalues.tolist(),
                    eps_poly=dft.eps_poly,
                    # the DFT a_r stored for some, recomputed from the tensor for the others
                    anisotropy_ratio=dft.anisotropy_ratio if index % 8 else None,
                )
            )
    memory_results.upsert(predictions)
    memory_results.upsert(validations)
    return memory_results


def _snapshot(results) -> Snapshot:
    records = [{k: v for k, v in r.items() if k != "_id"} for r in results.records("predictions")]
    return Snapshot(
        records=records,
        predictions=[PredictionDoc.model_validate(r) for r in records],
        validations=results.query(ValidationDoc),
        runs=[],
        n_candidates=0,
        loaded_at=0.0,
    )


def _ids(rows) -> list[tuple[str, str]]:
    return [(row.material_id, row.model) for row in rows]


FILTERS = [
    {},
    {"ar_min": 1.5},
    {"ar_max": 1.8, "ar_min": 1.1},
    {"dimensionality": [0, 2]},
    {"elements": ["O"]},
    {"elements": ["O", "S"], "exclude_elements": ["Mo"]},
    {"exclude_elements": ["O", "Ti"]},
    {"eps_total_min": 15.0},
    {"fom_min": 20.0},
    {"model": "model-b"},
    {"model": "model-a", "ar_min": 1.3},
    {"validated_only": True},
    {"validated_only": True, "ar_min": 1.4, "elements": ["O"]},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_rows_match_the_store_query_for_every_sort(results, filters):
    snapshot = _snapshot(results)
    for sort, descending in itertools.product(SORT_FIELDS, (True, False)):
        query = CandidateQuery(**filters, sort=sort, descending=descending)
        expected = find_candidates(results, query)
        assert _ids(snapshot.candidate_rows(query)) == _ids(expected), (filters, sort)
    limited = CandidateQuery(**filters, limit=5)
    assert _ids(snapshot.candidate_rows(limited)) == _ids(find_candidates(results, limited))


def test_the_join_keeps_the_newest_prediction_and_the_first_stored_on_ties(results):
    rows = {
        row.material_id: row.model for row in _snapshot(results).candidate_rows(CandidateQuery())
    }
    assert rows["mp-0001"] == "model-b"  # newer
    assert rows["mp-0004"] == "model-a"  # same time: the first stored
    assert len(rows) == 120


def test_masks_equal_mongo_matching_including_fallback_operators(results):
    snapshot = _snapshot(results)
    criteria_list = [CandidateQuery(**f).criteria() for f in FILTERS if "validated_only" not in f]
    criteria_list += [
        {"material_id": {"$in": ["mp-0001", "mp-0002", "nope"]}},
        {"band_gap": {"$gt": 2.0}},  # not vectorised: matched record by record
        {"crystal_system": None},
        {"$or": [{"dimensionality": 0}, {"band_gap": {"$lt": 1.0}}]},
        {"elements": "O"},  # equality on a list field: an element match in Mongo
        {"eps_total.eps_poly": {"$gte": 10.0}, "dimensionality": {"$in": [2, 3]}},
    ]
    for criteria in criteria_list:
        expected = [filter_applies(criteria, record) for record in snapshot.records]
        assert snapshot.columns.mask(criteria).tolist() == expected, criteria
