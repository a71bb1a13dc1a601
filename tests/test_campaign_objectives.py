"""Campaigns rank by the screening objectives (issue 27): one list for run-screen and
campaigns, the FOM included; a static-tensor objective needs an ionic model in the set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.campaign.rounds import load_campaign, start_campaign
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CampaignDoc, CandidateDoc, PredictionDoc
from anisoscreen.screening.objectives import OBJECTIVES, objective_value, tensor_values
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore

sys.path.insert(0, str(Path(__file__).parent))

from model_sets import model_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def aln() -> Structure:
    return Structure(
        Lattice.hexagonal(3.11, 4.98),
        ["Al", "Al", "N", "N"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("campaign-set")
    electronic = model_file(folder / "electronic.pt", "electronic", "mean")
    ionic = model_file(folder / "ionic.pt", "ionic", "psd_square_volume", members=3)
    return electronic, ionic


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ANISOSCREEN_STORE", "monty")
    settings = get_settings(store="monty", data_dir=tmp_path / "data")
    structures = {
        "aln": aln(),
        "si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
    }
    with ResultsStore(settings) as results:
        results.upsert(
            [
                CandidateDoc.from_structure(s, source="test", material_id=k, band_gap=gap)
                for (k, s), gap in zip(structures.items(), (6.0, None), strict=True)
            ]
        )
    return settings


def campaign(objective: str, model: Path, ionic: Path | None = None) -> CampaignDoc:
    return CampaignDoc(
        name=f"c-{objective}",
        source="test",
        objective=objective,
        base_model=str(model),
        current_model=str(model),
        ionic_model=None if ionic is None else str(ionic),
        local=True,
    )


def test_the_objective_values_of_tensors():
    electronic = np.stack([np.diag([4.0, 4.0, 9.0]), np.eye(3) * 2.0])
    ionic = np.stack([np.diag([1.0, 1.0, 1.0]), np.eye(3)])
    assert set(OBJECTIVES) >= {"ar", "eps-poly", "birefringence", "ar-total", "eps-total", "fom"}
    np.testing.assert_allclose(tensor_values(electronic, "ar"), [9 / 4, 1.0])
    np.testing.assert_allclose(tensor_values(electronic, "eps-poly"), [17 / 3, 2.0])
    np.testing.assert_allclose(tensor_values(electronic, "ar-total", ionic), [2.0, 1.0])
    np.testing.assert_allclose(tensor_values(electronic, "fom", ionic, 2.0), [40 / 3, 6.0])
    np.testing.assert_allclose(tensor_values(electronic, "fom", ionic, None), [0.0, 0.0])
    with pytest.raises(AnisoscreenError, match="needs the ionic tensor"):
        tensor_values(electronic, "eps-total")
    with pytest.raises(AnisoscreenError, match="unknown objective"):
        tensor_values(electronic, "kappa")


def test_a_static_tensor_objective_without_an_ionic_model_fails_in_one_line(settings, model_set):
    electronic, _ = model_set
    for objective in ("fom", "ar-total", "eps-total"):
        with pytest.raises(AnisoscreenError) as error:
            start_campaign(campaign(objective, electronic), settings)
        assert "needs the static tensor" in str(error.value) and "\n" not in str(error.value)
    with ResultsStore(settings) as results:
        assert not results.query(CampaignDoc, {})


def test_a_fom_campaign_ranks_by_the_screening_fom(settings, model_set):
    """The member values' mean is the FOM of the electronic x ionic members."""
    from anisoscreen.campaign.rounds import _member_values

    electronic, ionic = model_set
    doc = campaign("fom", electronic, ionic)
    assert start_campaign(doc, settings) == 2
    doc = load_campaign(doc.name, settings)
    with ResultsStore(settings) as results:
        pool = sorted(results.query(CandidateDoc, {}), key=lambda c: c.material_id)
        ids, values, _, _ = _member_values(doc, pool, settings, results)
        stored = {p.material_id: p for p in results.query(PredictionDoc, {})}
    assert ids == ["aln", "si"] and values.shape == (2 * 3, 2)
    assert stored["aln"].figure_of_merit is not None
    # the members' FOMs average to the screening FOM (linear in the tensors)
    np.testing.assert_allclose(
        values[:, 0].mean(), objective_value(stored["aln"], "fom"), rtol=1e-4
    )
    assert np.all(values[:, 1] == 0.0)  # no band gap: ranks last


def test_eps_poly_ranks_a_screen_too(settings, model_set):
    electronic, _ = model_set
    doc = campaign("eps-poly", electronic)
    start_campaign(doc, settings)
    with ResultsStore(settings) as results:
        (aln_doc,) = results.query(PredictionDoc, {"material_id": "aln"})
    assert objective_value(aln_doc, "eps-poly") == aln_doc.eps_poly


CALIBRATION = {"eps_poly": {"scale": 3.0, "n": 50}, "anisotropy_ratio": {"scale": 2.0, "n": 50}}


def test_only_the_objectives_the_model_calibrates_have_a_calibrated_spread():
    from anisoscreen.campaign.rounds import spread_calibrated

    metadata = {"spread_calibration": CALIBRATION}
    assert spread_calibrated(metadata, "ar") and spread_calibrated(metadata, "eps-poly")
    # no borrowing: eps_poly's factor is not the FOM's, nor a_r of eps_inf the static a_r's
    for objective in ("fom", "birefringence", "ar-total", "eps-total"):
        assert not spread_calibrated(metadata, objective)
    assert not spread_calibrated({}, "ar")  # a model without calibration
    # the per-regime form (dense crystals, cells with vacuum) counts as well
    regimes = {"spread_calibration": {"eps_poly": {"dense": 1.6, "vacuum": 1.4}}}
    assert spread_calibrated(regimes, "eps-poly") and not spread_calibrated(regimes, "ar")


def test_campaign_spreads_come_from_the_objectives_own_calibration(settings, tmp_path):
    """eps-poly is scaled by its factor; fom and birefringence stay raw and say so."""
    from anisoscreen.campaign import rounds
    from anisoscreen.model.inference import Predictor

    electronic = model_file(
        tmp_path / "calibrated.pt",
        "electronic",
        "mean",
        members=3,
        metadata={"spread_calibration": CALIBRATION},
    )
    ionic = model_file(tmp_path / "ionic.pt", "ionic", "psd_square_volume", members=3)
    predictor = Predictor.load(
        str(electronic), settings.data_dir, device="cpu", ionic_model=str(ionic)
    )
    with ResultsStore(settings) as results:
        pool = sorted(results.query(CandidateDoc, {}), key=lambda c: c.material_id)
    graphs = [predictor.graph_or_error(c.structure, c.band_gap) for c in pool]
    members = predictor.predict_graphs(graphs)
    ionic_members = predictor.predict_graphs(graphs, predictor.ionic)
    for objective, expected_scale in (("eps-poly", 3.0), ("birefringence", None), ("fom", None)):
        calibrated = expected_scale is not None
        doc = campaign(objective, electronic, ionic if objective == "fom" else None)
        start_campaign(doc, settings)
        doc = load_campaign(doc.name, settings)
        with ResultsStore(settings) as results:
            ids, values, _, was_calibrated = rounds._member_values(doc, pool, settings, results)
            chosen = rounds._select(doc, settings, results)
        assert was_calibrated is calibrated and ids == ["aln", "si"]
        assert chosen is not None and chosen.spread_calibrated is calibrated
        if objective == "fom":
            continue  # members are electronic x ionic: the spread check below is for eps_inf
        raw = tensor_values(members, objective)
        deviation = raw - raw.mean(axis=0)
        np.testing.assert_allclose(
            values - values.mean(axis=0), (expected_scale or 1.0) * deviation, atol=1e-6
        )
    # a step says so in its log
    from anisoscreen.campaign.rounds import step_campaign

    lines: list[str] = []
    step_campaign("c-birefringence", settings, progress=lines.append)
    assert any(
        line.startswith("round 0: the birefringence spread of set-electronic is uncalibrated")
        for line in lines
    ), lines
    stored = load_campaign("c-birefringence", settings).rounds[0]
    assert stored.spread_calibrated is False
    # the FOM's member values are not stretched by eps_poly's factor of 3
    doc = load_campaign("c-fom", settings)
    with ResultsStore(settings) as results:
        _, fom_values, _, _ = rounds._member_values(doc, pool, settings, results)
    raw_fom = np.stack(
        [
            tensor_values(
                np.repeat(members[:, i], len(ionic_members), axis=0),
                "fom",
                np.tile(ionic_members[:, i], (len(members), 1, 1)),
                c.band_gap,
            )
            for i, c in enumerate(pool)
        ],
        axis=1,
    )
    np.testing.assert_allclose(fom_values, raw_fom, rtol=1e-5, atol=1e-6)
