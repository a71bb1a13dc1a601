"""The ionic refine stage on a real (small) screen, with the closed-form spring potential."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from jobflow import run_locally

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CandidateDoc, PredictionDoc
from anisoscreen.screening.flows import ScreeningMaker, screening_outputs
from anisoscreen.screening.ionic_refine import (
    IonicRefineMaker,
    IonicRefineOutput,
    RefineMethod,
    refine_ionic,
)
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store

sys.path.insert(0, str(Path(__file__).parent))

from model_sets import write_pool  # noqa: E402
from screening_helpers import local_maker  # noqa: E402

SPRINGS = RefineMethod(potential="harmonic-springs")
"""The closed-form stand-in potential with nominal charges (the stage's default source)."""


def predicted_method(born_model: str) -> RefineMethod:
    """The springs with a Born model's charges, trusted as the physics value."""
    return SPRINGS.model_copy(
        update={
            "born_source": "predicted",
            "physics_sources": ("predicted",),
            "born_model": born_model,
        }
    )


@pytest.fixture(scope="module")
def refined(model_set, tmp_path_factory):
    """``run-screen --objective fom --refine-top 3`` (as a flow), refined in shards of 2."""
    electronic, ionic = model_set
    tmp_path = tmp_path_factory.mktemp("refine")
    store = {"data_dir": str(tmp_path / "d")}
    settings = get_settings(data_dir=tmp_path / "d")
    maker = local_maker(
        electronic,
        write_pool(tmp_path / "pool.json"),
        tmp_path / "d",
        ionic_model=str(ionic),
        objective="fom",
        refine_top=3,
        refine_maker=IonicRefineMaker(
            potential="harmonic-springs",
            born_source="nominal",
            shard_size=2,
            store=store,
            physics_sources=("nominal",),
        ),
    )
    flow = maker.make("refine-1")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    outputs = screening_outputs(flow, responses)
    assert outputs is not None and outputs.refinement is not None
    return flow, outputs.refinement, outputs.ranking, *_stored(settings), store


def _stored(settings):
    with ResultsStore(settings) as results:
        predictions = {p.material_id: p for p in results.query(PredictionDoc)}
        structures = {c.material_id: c.structure for c in results.query(CandidateDoc)}
    return predictions, structures


def test_refine_makes_shards_and_keeps_ranking_order(refined):
    flow, output, ranking, *_ = refined
    refine = flow.jobs[-1]
    assert flow.output["refinement"].uuid == refine.jobs[-1].uuid
    assert [job.name for job in refine.jobs] == [
        "refine ionic 0-2",
        "refine ionic 2-3",
        "refine ionic merge",
    ]
    assert isinstance(output, IonicRefineOutput)
    assert [r.material_id for r in output.refinements] == [
        row.material_id for row in ranking.ranking[:3]
    ]
    assert [r.rank for r in output.refinements] == [0, 1, 2]
    assert output.n_physics == sum(r.ionic_method == "physics" for r in output.refinements)
    assert output.potential == "harmonic-springs" and output.born_source == "nominal"
    assert [r.ionic_method for r in output.refinements] == ["physics"] * 3


def test_refined_rows_hold_modes_totals_and_the_method(refined):
    _, output, _, predictions, structures, _ = refined
    for row in output.refinements:
        assert row.error is None
        prediction = predictions[row.material_id]
        n = len(structures[row.material_id])
        assert len(row.modes) == 3 * n - 3
        physics = np.asarray(row.physics_eps_ionic)
        kept = [m for m in row.modes if m.included]
        assert all(m.frequency_thz >= 1.0 for m in kept)
        assert sum(m.eps_contribution for m in kept) == pytest.approx(np.trace(physics) / 3)
        for mode in kept:
            p = np.asarray(mode.mode_charge)
            np.testing.assert_allclose(mode.oscillator_strength, np.outer(p, p), atol=1e-12)
            assert mode.frequency_cm1 == pytest.approx(mode.frequency_thz * 33.35641, rel=1e-6)
        expected = physics if row.ionic_method == "physics" else prediction.eps_ionic.tensor
        assert (row.ionic_method == "physics") == (not row.flags)
        np.testing.assert_allclose(row.eps_ionic, expected)
        total = np.asarray(prediction.dielectric_tensor) + np.asarray(expected)
        np.testing.assert_allclose(row.eps_total, total)
        assert row.figure_of_merit == pytest.approx(prediction.band_gap * np.trace(total) / 3)
        assert row.direct_figure_of_merit == prediction.figure_of_merit
        assert row.max_residual_force is not None and row.max_residual_force < 1e-9


def test_refine_top_composes_with_the_stage_options():
    maker = ScreeningMaker.from_options(objective="fom", ionic_model="x", refine_top=7)
    assert maker.refine_maker is not None
    assert maker.refine_maker.top_k == 7 and maker.refine_maker.potential == "sevennet-0"
    # new candidates have no DFPT charges: by default their totals stay the direct model's
    assert maker.refine_maker.born_source == "nominal"
    assert maker.refine_maker.physics_sources == ("dfpt",)
    assert ScreeningMaker.from_options().refine_maker is None
    flow = ScreeningMaker.from_options(refine_top=120).make("r")
    assert [job.name for job in flow.jobs[-1].jobs][-1] == "refine ionic merge"
    assert len(flow.jobs[-1].jobs) == 4  # shards of 50: 0-50, 50-100, 100-120, merge


def test_refine_charges_pick_the_measured_use_of_each_born_source():
    maker = ScreeningMaker.from_options(refine_top=5, refine_charges="predicted", store={"x": 1})
    assert maker.refine_maker == IonicRefineMaker.for_charges("predicted", top_k=5, store={"x": 1})
    assert maker.refine_maker.physics_weight < 1.0  # the blend fitted on validation
    with pytest.raises(AnisoscreenError, match="refine_charges needs refine_top"):
        ScreeningMaker.from_options(refine_charges="dfpt")
    with pytest.raises(AnisoscreenError, match="unknown Born source"):
        ScreeningMaker.from_options(refine_top=5, refine_charges="formal")
    with pytest.raises(AnisoscreenError, match="contradicts the refine_maker's born_source"):
        ScreeningMaker.from_options(
            refine_top=5, refine_charges="dfpt", refine_maker=IonicRefineMaker()
        )
    # a maker survives serialisation (jobflow rebuilds it from its dict)
    again = ScreeningMaker.from_dict(maker.as_dict())
    assert again.refine_maker == maker.refine_maker and again.refine_charges == "predicted"


def test_by_default_nominal_charges_keep_the_direct_values(refined):
    """Only DFPT charges beat the direct model: with nominal ones the direct eps0 is kept."""
    _, physics_output, ranking, predictions, _, store = refined
    output = refine_ionic.original(ranking, 0, 2, SPRINGS, store)
    assert output.n_physics == 0
    for row, physics_row in zip(output.refinements, physics_output.refinements, strict=False):
        assert row.ionic_method == "direct"
        np.testing.assert_allclose(row.eps_ionic, predictions[row.material_id].eps_ionic.tensor)
        assert row.figure_of_merit == pytest.approx(row.direct_figure_of_merit)
        # the physics value and the modes are there all the same
        np.testing.assert_allclose(row.physics_eps_ionic, physics_row.physics_eps_ionic)
        assert len(row.modes) == len(physics_row.modes)


def test_predicted_charges_come_from_the_born_model(refined, tmp_path):
    """``born_source="predicted"``: the physics eps0 is the formula on the model's charges."""
    from test_born_charges import born_model_file

    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential
    from anisoscreen.ionic_physics.route import physics_ionic
    from anisoscreen.model.born_charges import predict_born_charges

    _, _, ranking, _, structures, store = refined
    born_model = str(born_model_file(tmp_path / "born.pt", elements=()))
    method = predicted_method(born_model)
    output = refine_ionic.original(ranking, 0, 2, method, store)
    assert output.born_source == "predicted"
    potential = HarmonicSpringPotential(spring=1.0, cutoff=3.2)
    for row in output.refinements:
        assert row.error is None and row.born_source == "predicted"
        structure = structures[row.material_id]
        charges = predict_born_charges(born_model, [structure])[0]
        expected = physics_ionic(structure, charges, gamma_force_constants(structure, potential))
        np.testing.assert_allclose(row.physics_eps_ionic, expected.eps_ionic, atol=1e-8)
        assert row.ionic_method == ("direct" if row.flags else "physics")


def test_predicted_charges_blend_the_physics_value_with_the_direct_one(refined, tmp_path):
    from test_born_charges import born_model_file

    _, _, ranking, predictions, _, store = refined
    born_model = str(born_model_file(tmp_path / "born.pt", elements=()))
    method = predicted_method(born_model)
    alone = refine_ionic.original(ranking, 0, 2, method, store)
    blended = refine_ionic.original(
        ranking, 0, 2, method.model_copy(update={"physics_weight": 0.4}), store
    )
    # a physics value scaled down, as fitted
    scaled = method.model_copy(update={"physics_weight": 0.8, "direct_weight": 0.1})
    weighted = refine_ionic.original(ranking, 0, 2, scaled, store)
    assert blended.n_physics == alone.n_physics == weighted.n_physics
    assert any(row.ionic_method == "physics" for row in alone.refinements)
    for row, two, physics_row in zip(
        blended.refinements, weighted.refinements, alone.refinements, strict=True
    ):
        direct = np.asarray(predictions[row.material_id].eps_ionic.tensor)
        physics = np.asarray(physics_row.physics_eps_ionic)
        if physics_row.ionic_method == "physics":
            assert row.ionic_method == two.ionic_method == "blend"
            np.testing.assert_allclose(row.eps_ionic, direct + 0.4 * (physics - direct))
            np.testing.assert_allclose(two.eps_ionic, 0.1 * direct + 0.8 * physics)
            eps_inf = np.asarray(predictions[row.material_id].dielectric_tensor)
            np.testing.assert_allclose(row.eps_total, eps_inf + np.asarray(row.eps_ionic))
        else:
            assert row.ionic_method == two.ionic_method == "direct"
            np.testing.assert_allclose(row.eps_ionic, direct)
            np.testing.assert_allclose(two.eps_ionic, direct)


def test_the_spread_weighted_blend_weighs_each_row_by_both_ensembles(refined, tmp_path):
    """``spread_ratio`` c: share w = s_d^2 / (s_d^2 + c s_p^2), eps0 = w a physics + (1 - w) d."""
    from test_born_charges import born_model_file

    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential
    from anisoscreen.ionic_physics.route import physics_ionic
    from anisoscreen.model.born_charges import predict_born_charge_members

    _, _, ranking, predictions, structures, store = refined
    born_model = str(born_model_file(tmp_path / "born.pt", elements=()))
    method = predicted_method(born_model)
    ratio, scale = 0.5, 0.9
    spread = method.model_copy(update={"spread_ratio": ratio, "physics_weight": scale})
    alone = refine_ionic.original(ranking, 0, 2, method, store)
    weighted = refine_ionic.original(ranking, 0, 2, spread, store)
    potential = HarmonicSpringPotential(spring=1.0, cutoff=3.2)
    assert any(row.ionic_method == "physics" for row in alone.refinements)
    for row, physics_row in zip(weighted.refinements, alone.refinements, strict=True):
        prediction = predictions[row.material_id]
        direct = np.asarray(prediction.eps_ionic.tensor)
        # each member's physics eps0 on the same force constants, by hand
        structure = structures[row.material_id]
        fc = gamma_force_constants(structure, potential)
        [members] = predict_born_charge_members(born_model, [structure])
        values = np.stack([physics_ionic(structure, z, fc).eps_ionic for z in members])
        upper = np.triu_indices(3)
        s_p = np.sqrt((values.std(axis=0, ddof=1)[upper] ** 2).mean())
        s_d = np.sqrt((np.asarray(prediction.eps_ionic.tensor_std)[upper] ** 2).mean())
        assert row.physics_spread == pytest.approx(s_p, rel=1e-8)
        if physics_row.ionic_method == "physics":
            share = s_d**2 / (s_d**2 + ratio * s_p**2)
            assert row.ionic_method == "blend"
            assert row.physics_share == pytest.approx(share, rel=1e-8)
            assert 0.0 < row.physics_share < 1.0
            physics = np.asarray(row.physics_eps_ionic)
            np.testing.assert_allclose(
                row.eps_ionic, share * scale * physics + (1 - share) * direct, atol=1e-10
            )
        else:  # flagged: the direct value, no share
            assert (row.ionic_method, row.physics_share) == ("direct", None)
            np.testing.assert_allclose(row.eps_ionic, direct)


def test_each_born_source_gets_its_measured_recipe():
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.screening.ionic_refine import PREDICTED_BLENDS

    dfpt = IonicRefineMaker.for_charges("dfpt", top_k=5)
    assert (dfpt.born_source, dfpt.physics_sources, dfpt.physics_weight, dfpt.top_k) == (
        "dfpt",
        ("dfpt",),
        1.0,
        5,
    )
    # predicted charges: SevenNet-l3i5 force constants, both blend weights fitted on validation
    predicted = IonicRefineMaker.for_charges("predicted")
    assert predicted.physics_sources == ("predicted",)
    # SevenNet-l3i5: weighted per row by the spreads, the physics value scaled
    assert (
        predicted.potential,
        predicted.physics_weight,
        predicted.direct_weight,
        predicted.spread_ratio,
    ) == ("sevennet-l3i5", PREDICTED_BLENDS["sevennet-l3i5"].physics_weight, None, 0.0501)
    assert predicted.born_model == "anisonet-mp-born"
    older = IonicRefineMaker.for_charges("predicted", potential="sevennet-0")
    assert (older.physics_weight, older.direct_weight, older.spread_ratio) == (0.7, 0.15, None)
    # a weight given by the caller replaces the table's whole blend
    mine = IonicRefineMaker.for_charges("predicted", physics_weight=1)
    assert (mine.physics_weight, mine.direct_weight, mine.spread_ratio) == (1, None, None)
    with pytest.raises(AnisoscreenError, match="no blend of predicted charges is measured"):
        IonicRefineMaker.for_charges("predicted", potential="harmonic-springs")
    # nominal charges never replace the direct value: the same as the default stage
    assert IonicRefineMaker.for_charges("nominal") == IonicRefineMaker()
    with pytest.raises(AnisoscreenError, match="unknown Born source 'formal'"):
        IonicRefineMaker.for_charges("formal")
    with pytest.raises(AnisoscreenError, match="physics_weight must be in"):
        IonicRefineMaker(physics_weight=0.0)
    with pytest.raises(AnisoscreenError, match="direct_weight must be in"):
        IonicRefineMaker(direct_weight=-0.1)
    with pytest.raises(AnisoscreenError, match="spread_ratio must be positive"):
        IonicRefineMaker(spread_ratio=0.0)
    with pytest.raises(AnisoscreenError, match="direct_weight or spread_ratio, not both"):
        IonicRefineMaker(direct_weight=0.1, spread_ratio=0.04)


def test_run_screen_refuses_an_unknown_born_source_in_one_line(tmp_path):
    from cli_helpers import run_cli

    out = run_cli(
        "run-screen", "--data-dir", str(tmp_path), "--refine-top", "1", "--refine-charges", "x"
    )
    assert out.returncode == 1
    assert (
        out.stderr.strip() == "error: unknown Born source 'x'; use one of dfpt, predicted, nominal"
    )
    alone = run_cli("run-screen", "--data-dir", str(tmp_path), "--refine-charges", "dfpt")
    assert alone.returncode == 1
    assert alone.stderr.strip() == "error: refine_charges needs refine_top"


def test_refine_progress_counts_up_to_the_last_shards_end(refined):
    """Shards run in order share one progress bar: its total ends at the rows refined."""
    from anisoscreen.screening import jobs

    _, _, ranking, _, _, store = refined
    calls = []
    jobs.set_progress_reporter(lambda stage, advance, total: calls.append((advance, total)))
    try:
        for start, stop in ((0, 2), (2, 3)):
            refine_ionic.original(ranking, start, stop, SPRINGS, store)
    finally:
        jobs.set_progress_reporter(None)
    assert calls == [(1, 2), (1, 2), (1, 3)]


def test_the_makers_method_carries_every_refine_setting():
    """The jobs get the maker's settings as one RefineMethod, intact after a JSON round trip."""
    maker = IonicRefineMaker.for_charges("predicted", min_frequency_thz=0.5, top_k=3)
    method = maker.method
    for name in RefineMethod.model_fields:
        assert getattr(method, name) == getattr(maker, name)
    assert (method.min_frequency_thz, method.physics_weight) == (0.5, maker.physics_weight)
    assert RefineMethod.model_validate_json(method.model_dump_json()) == method
