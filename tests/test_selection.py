"""One selection rule for validation: the screening flow's stage and ``submit`` agree."""

from __future__ import annotations

import numpy as np
from jobflow import run_locally
from pymatgen.core import Lattice, Structure

from anisoscreen.schemas import CandidateDoc, PredictionDoc
from anisoscreen.screening.flows import ScreeningMaker
from anisoscreen.screening.jobs import select_for_validation
from anisoscreen.screening.outputs import RankedCandidate, RankingStageOutput
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store
from anisoscreen.validation.select import DEFAULT_AR_THRESHOLD, select_candidates, selection_rule


def _store_predictions(settings, ratios: dict[str, list[float]]) -> None:
    """One candidate per id and one prediction per (id, ratio), models m0, m1, ..."""
    structure = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with ResultsStore(settings) as results:
        results.upsert(
            CandidateDoc(
                material_id=mid,
                formula_pretty="NaCl",
                structure=structure,
                source="t",
                nsites=2,
                elements=["Cl", "Na"],
            )
            for mid in ratios
        )
        docs = []
        for mid, values in ratios.items():
            for k, ratio in enumerate(values):
                docs.append(
                    PredictionDoc.from_tensor(
                        np.diag([2.0, 2.0, 2.0 * ratio]),
                        material_id=mid,
                        formula_pretty="NaCl",
                        model=f"m{k}",
                        model_version="1",
                        model_checksum="x",
                    )
                )
        results.upsert(docs)


def test_threshold_is_inclusive_one_per_material_best_prediction_first(tmp_path):
    settings = get_settings(data_dir=tmp_path)
    _store_predictions(settings, {"a": [2.5, 3.0], "b": [2.49], "c": [4.0]})
    with ResultsStore(settings) as results:
        chosen, skipped = select_candidates(results, ar_min=2.5)
        assert [c.material_id for c, _ in chosen] == ["c", "a"]  # a once, with its best
        assert chosen[1][1].anisotropy_ratio == 3.0 and chosen[1][1].model == "m1"
        assert skipped == []
        chosen, _ = select_candidates(results, ar_min=2.5, model="m0")
        assert [(c.material_id, p.anisotropy_ratio) for c, p in chosen] == [("c", 4.0), ("a", 2.5)]
        chosen, _ = select_candidates(results, top_k=2)
        assert [c.material_id for c, _ in chosen] == ["c", "a"]
        chosen, skipped = select_candidates(results, ids=["b", "a", "zz"], ar_min=2.5)
        assert [c.material_id for c, _ in chosen] == ["a"]
        assert {mid for mid, _ in skipped} == {"b", "zz"}
    assert selection_rule(None, None) == (None, DEFAULT_AR_THRESHOLD)
    assert selection_rule(5, None) == (5, None)


def test_screening_stage_uses_the_same_rule(tmp_path):
    settings = get_settings(data_dir=tmp_path)
    _store_predictions(settings, {"a": [2.5], "b": [2.49], "c": [4.0]})
    ranking = RankingStageOutput(
        model="m0",
        ranking=[
            RankedCandidate(material_id=m, formula="NaCl", anisotropy_ratio=r, eps_poly=2.0)
            for m, r in (("c", 4.0), ("a", 2.5), ("b", 2.49))
        ],
        n_descriptors_computed=0,
        seconds=0.0,
    )
    job = select_for_validation(ranking, store={"data_dir": str(tmp_path)})
    responses = run_locally(job, store=build_job_store(settings), create_folders=False, log=False)
    output = responses[job.uuid][1].output
    assert output.selected == ["c", "a"]  # a_r = 2.5 is selected (>=), as by `submit`
    assert [mid for mid, _ in output.skipped] == ["b"]


def test_from_settings_carries_every_store_setting(tmp_path):
    settings = get_settings(
        data_dir=tmp_path, database="db2", collection_prefix="x_", model="m", batch_size=7
    )
    maker = ScreeningMaker.from_settings(settings, source="s", top_k=None, validate=True)
    assert maker.store == {
        "store": settings.store,
        "data_dir": str(tmp_path),
        "database": "db2",
        "collection_prefix": "x_",
    }
    predict = maker.prediction_maker
    assert (predict.model, predict.batch_size, maker.source) == ("m", 7, "s")
    assert maker.candidate_maker.model == "m"  # candidates restricted to its elements
    assert maker.candidate_maker.store == maker.ranking_maker.store == maker.store
    assert maker.validation_maker is not None and maker.validation_maker.optics_maker is None
    flow = maker.make("r")
    assert set(flow.output) == {"candidates", "predictions", "ranking", "run", "selection"}
