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

from test_ionic_screening import model_file  # noqa: E402

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
        ids, values, _ = _member_values(doc, pool, settings, results)
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
