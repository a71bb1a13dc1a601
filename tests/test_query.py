"""Candidate queries: criteria, the prediction/validation join, sorting and limits."""

from __future__ import annotations

import pytest
from report_data import MODEL, fill

from anisoscreen.query import CandidateQuery, QueryError, find_candidates, parse_elements


@pytest.fixture
def filled(memory_results):
    return fill(memory_results)


def ids(rows):
    return [row.material_id for row in rows]


def test_parse_elements_normalises_and_rejects_unknown():
    assert parse_elements(["si,o", "Fe", "O"]) == ["Fe", "O", "Si"]
    assert parse_elements(None) == []
    with pytest.raises(ValueError, match="Xx"):
        parse_elements("Xx")


def test_criteria_from_all_filters():
    query = CandidateQuery(
        ar_min=2,
        ar_max=5,
        dimensionality=["2D", "1"],
        elements="mo,s",
        exclude_elements=["Pb"],
        model="m1",
    )
    assert query.criteria() == {
        "anisotropy_ratio": {"$gte": 2.0, "$lte": 5.0},
        "dimensionality": {"$in": [1, 2]},
        "elements": {"$all": ["Mo", "S"], "$nin": ["Pb"]},
        "model": "m1",
    }
    assert query.criteria(["b", "a", "a"])["material_id"] == {"$in": ["a", "b"]}
    assert CandidateQuery().criteria() == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ar_min": 3, "ar_max": 2}, "larger than ar_max"),
        ({"elements": "Xx"}, "unknown element symbol 'Xx'"),
        ({"elements": "O", "exclude_elements": "O"}, "both required and excluded: O"),
        ({"dimensionality": "4"}, "dimensionality must be 0, 1, 2 or 3"),
        ({"sort": "colour"}, "sort"),
        ({"limit": -1}, "limit"),
    ],
)
def test_build_turns_bad_input_into_one_clear_error(fields, message):
    with pytest.raises(QueryError, match=message):
        CandidateQuery.build(**fields)


def test_build_ignores_unset_values():
    assert CandidateQuery.build(ar_min=None, sort=None, limit=None) == CandidateQuery()


def test_default_sort_is_reported_ar_descending_with_newest_prediction(filled):
    rows = find_candidates(filled)
    assert ids(rows) == [
        "mp-1104369",
        "mp-1001",
        "mp-1003",
        "mp-2815",
        "mp-1002",
        "mp-1004",
        "mp-149",
    ]
    mos2 = rows[3]
    assert mos2.model == MODEL  # the newer of the two predictions
    assert mos2.validated and mos2.anisotropy_ratio == pytest.approx(15.6 / 6.4)
    assert mos2.prediction.anisotropy_ratio == pytest.approx(16.0 / 6.1)


def test_only_completed_validations_count(filled):
    rows = {row.material_id: row for row in find_candidates(filled)}
    assert not rows["mp-1003"].validated  # flagged
    assert not rows["mp-1004"].validated  # submitted
    assert rows["mp-1003"].anisotropy_ratio == pytest.approx(18.9 / 7.0)  # predicted value
    validated = find_candidates(filled, CandidateQuery(validated_only=True))
    assert ids(validated) == ["mp-1104369", "mp-1001", "mp-2815", "mp-1002"]
    assert validated[0].optics_validation is not None and validated[2].optics_validation is None


def test_filters_sort_and_limit(filled):
    two_d = find_candidates(filled, CandidateQuery(dimensionality=2, ar_min=2.6))
    assert ids(two_d) == ["mp-1104369", "mp-1003", "mp-2815"]  # filters use the predicted a_r
    assert ids(find_candidates(filled, CandidateQuery(elements="O", exclude_elements="Ba"))) == [
        "mp-1104369",
        "mp-1001",
    ]
    by_gap = find_candidates(filled, CandidateQuery(sort="band_gap", limit=2))
    assert ids(by_gap) == ["mp-1004", "mp-1003"]
    by_id = find_candidates(filled, CandidateQuery(sort="material_id", limit=3))
    assert ids(by_id) == ["mp-1001", "mp-1002", "mp-1003"]
    dft_last = find_candidates(filled, CandidateQuery(sort="dft_ar", descending=False))
    assert ids(dft_last)[:4] == ["mp-1002", "mp-2815", "mp-1001", "mp-1104369"]
    assert set(ids(dft_last)[4:]) == {"mp-1003", "mp-1004", "mp-149"}


def test_model_filter_selects_that_models_predictions(filled):
    rows = find_candidates(filled, CandidateQuery(model="old-model"))
    assert ids(rows) == ["mp-2815"]
    assert rows[0].prediction.eps_poly == pytest.approx(5.0)
    assert rows[0].validated


def test_summary_is_flat_and_json_ready(filled):
    import json

    row = find_candidates(filled, CandidateQuery(elements="V"))[0]
    record = json.loads(json.dumps(row.summary()))
    assert record["material_id"] == "mp-1104369" and record["validated"] is True
    assert record["dimensionality"] == 2 and record["elements"] == ["Na", "O", "V"]


def test_empty_store_gives_no_rows(memory_results):
    assert find_candidates(memory_results) == []
    assert find_candidates(memory_results, CandidateQuery(validated_only=True)) == []


def test_embedded_store_gives_the_same_rows(tmp_path, filled):
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    with ResultsStore(get_settings(store="embedded", data_dir=tmp_path / "monty")) as embedded:
        fill(embedded)
        for query in (
            CandidateQuery(),
            CandidateQuery(elements="Mo,S", dimensionality=2, ar_min=1),
            CandidateQuery(exclude_elements="O", validated_only=True),
        ):
            assert ids(find_candidates(embedded, query)) == ids(find_candidates(filled, query))


def test_birefringence_filter_and_sort(filled):
    import numpy as np

    rows = find_candidates(filled, CandidateQuery(dn_min=1.5, sort="predicted_birefringence"))
    # predicted dn = sqrt(lambda_max) - sqrt(lambda_min): NaV2O4 sqrt(19.5) - sqrt(3) = 2.684,
    # WSe2 sqrt(18.9) - sqrt(7) = 1.702, MoS2 4 - sqrt(6.1) = 1.530; the rest are below 1.5
    assert ids(rows) == ["mp-1104369", "mp-1003", "mp-2815"]
    assert rows[0].prediction.birefringence == pytest.approx(np.sqrt(19.5) - np.sqrt(3.0))
    assert rows[2].prediction.optical_character == "uniaxial negative"
    everything = find_candidates(filled, CandidateQuery(sort="birefringence"))
    assert ids(everything)[-1] == "mp-149"  # cubic Si: dn = 0
    assert everything[-1].optical_character == "isotropic"
    assert CandidateQuery(dn_min=0.3).criteria() == {"birefringence": {"$gte": 0.3}}


def test_stored_documents_without_optics_derive_them_on_read(filled):
    from anisoscreen.schemas import PredictionDoc

    doc = find_candidates(filled, CandidateQuery(elements="Cs"))[0].prediction
    record = doc.store_dict()
    for name in ("refractive_indices", "birefringence", "optical_character", "optic_axial_angle"):
        record.pop(name)
    old = PredictionDoc.from_store(record)
    assert old.refractive_indices == pytest.approx([3.5**0.5, 3.5**0.5, 4.4**0.5])
    assert old.birefringence == pytest.approx(4.4**0.5 - 3.5**0.5)
    assert old.optical_character == "uniaxial positive"


def test_details_carry_tensors_spread_and_optics(filled):
    import json

    row = find_candidates(filled, CandidateQuery(elements="Mo"))[0]
    record = json.loads(json.dumps(row.details()))
    assert record["predicted_dielectric_tensor"][0][0] == pytest.approx(6.1)
    assert record["dft_dielectric_tensor"] is not None
    assert "predicted_dielectric_tensor_std" in record
    assert record["predicted_refractive_indices"] == pytest.approx([6.1**0.5, 4.0, 4.0])
    assert record["birefringence"] == pytest.approx(record["dft_birefringence"])
