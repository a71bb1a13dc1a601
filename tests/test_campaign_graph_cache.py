"""What a campaign computes from its pool's structures is computed once (issue 27): the first
prediction pass keeps the graphs in the campaign folder, and the re-prediction after each
fine-tuned round builds none, with the same documents as a pass that builds them all; the
prototype labels (and vacuum geometry) of the selection are kept by structure hash. DFT is
stood in for by known labels (:class:`~anisoscreen.campaign.standin.OracleRunner`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from anisoscreen.campaign.cache import cached_rows, read_graphs, write_graphs
from anisoscreen.campaign.rounds import load_campaign, start_campaign, step_campaign
from anisoscreen.schemas import CampaignDoc, CandidateDoc, PredictionDoc
from anisoscreen.store import ResultsStore
from anisoscreen.structures_io import StructureRecord

sys.path.insert(0, str(Path(__file__).parent))

from campaign_helpers import oracle_pool, record_calls  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def test_graph_cache_round_trip_and_damaged_files_are_misses(tmp_path, triclinic):
    from anisoscreen.model.nn.graph import structure_to_graph

    graphs = {
        "a": structure_to_graph(triclinic, 5.0, band_gap=1.5),
        "b": structure_to_graph(triclinic, 4.0),
    }
    path = tmp_path / "c" / "graphs.npz"
    write_graphs(path, graphs)
    read = read_graphs(path)
    assert list(read) == ["a", "b"]
    for key, graph in graphs.items():
        for field in ("atomic_numbers", "edge_src", "edge_dst", "edge_vec", "depolarisation"):
            assert np.array_equal(getattr(read[key], field), getattr(graph, field))
        assert read[key].volume == graph.volume
    assert read["a"].band_gap == 1.5 and np.isnan(read["b"].band_gap)
    assert read["b"].num_edges < read["a"].num_edges  # a shorter cutoff, its own graph
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert read_graphs(path) == {}  # truncated: rebuilt, not an error
    assert read_graphs(tmp_path / "missing.npz") == {}


def test_cached_rows_computes_only_the_missing_keys(tmp_path):
    path = tmp_path / "c" / "geometry.npz"
    asked: list[list[int]] = []

    def compute(at):
        asked.append(list(at))
        return np.array([[float(i), 2.0 * i] for i in at])

    first = cached_rows(path, ["a", "b"], compute)
    assert np.array_equal(first, [[0.0, 0.0], [1.0, 2.0]])
    again = cached_rows(path, ["b", "c", "a"], compute)  # only "c" is new (at index 1)
    assert asked == [[0, 1], [1]]
    assert np.array_equal(again, [[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    labels = cached_rows(tmp_path / "p.npz", ["x"], lambda at: np.array(["AB2-194"] * len(at)))
    assert labels.tolist() == ["AB2-194"]
    path.write_bytes(b"not an npz")
    assert np.array_equal(cached_rows(path, ["a"], compute), [[0.0, 0.0]])  # damaged: recomputed
    assert asked[-1] == [0]


@pytest.mark.slow
def test_a_finetune_round_repredicts_the_pool_without_building_a_graph(
    tmp_path, monkeypatch, tiny_ensemble
):
    import anisoscreen.campaign.acquisition as acquisition
    import anisoscreen.model.inference as inference

    settings, _, _ = oracle_pool(tmp_path, monkeypatch)
    built = record_calls(monkeypatch, inference, "structure_to_graph")
    prototypes = record_calls(monkeypatch, acquisition, "_prototype")
    doc = CampaignDoc(
        name="ft1",
        source="test",
        strategy="greedy",
        batch_size=3,
        budget=6,
        max_per_group=0,
        base_model=str(tiny_ensemble),
        current_model=str(tiny_ensemble),
        local=True,
        finetune={"epochs": 1, "replay": 8},
    )
    predicted = start_campaign(doc, settings)
    assert predicted >= 12 and len(built) == predicted  # every pool graph built once
    assert len(read_graphs(settings.data_dir / "campaigns" / "ft1" / "graphs.npz")) == predicted
    for _ in range(2):
        assert "done" in step_campaign("ft1", settings)
    doc = load_campaign("ft1", settings)
    # two fine-tuned versions, each predicted the whole pool, without building a graph again
    assert [r.new_model for r in doc.rounds] == ["campaign-ft1-r1", "campaign-ft1-r2"]
    assert doc.current_model == "campaign-ft1-r2" and len(built) == predicted
    # two selections, one symmetry analysis per structure
    assert (
        len(prototypes) == predicted
        and len({p.material_id for r in doc.rounds for p in r.picks}) == 6
    )
    with ResultsStore(settings) as results:
        stored = {
            p.material_id: p for p in results.query(PredictionDoc, {"model": "campaign-ft1-r2"})
        }
        pool = sorted(results.query(CandidateDoc, {"source": "test"}), key=lambda c: c.material_id)
    assert len(stored) == predicted
    # the same documents as a pass that builds every graph (no cache), in the same batches
    fresh = inference.Predictor.load(doc.current_model, settings.data_dir, device="cpu")
    records = [
        StructureRecord(c.material_id, c.structure, c.source, fields={"band_gap": c.band_gap})
        for c in pool
    ]
    again = [d for d in fresh.predict(records) if isinstance(d, PredictionDoc)]
    assert len(built) == 2 * predicted and len(again) == predicted
    for d in again:
        np.testing.assert_allclose(
            stored[d.material_id].dielectric_tensor, d.dielectric_tensor, rtol=1e-6, atol=1e-9
        )
        assert stored[d.material_id].anisotropy_ratio_std == pytest.approx(
            d.anisotropy_ratio_std, rel=1e-6
        )
