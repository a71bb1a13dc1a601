"""Sharded prediction: ``ScreeningMaker.from_options(shard_size=N)`` runs one prediction job per shard of N
candidates, merged before ranking, with the same predictions and ranking as one job."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import PredictionDoc, ScreeningRunDoc
from anisoscreen.screening.flow_runner import run_flow_locally
from anisoscreen.screening.flows import ScreeningMaker, screening_outputs
from anisoscreen.screening.shards import shard_bounds, shard_ids
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store

sys.path.insert(0, str(Path(__file__).parent))

from screening_helpers import local_maker, screen_args  # noqa: E402
from test_screening import small_pool  # noqa: E402


def test_shard_ids_cover_every_id_once_in_order():
    ids = [f"mp-{i}" for i in range(10)]
    shards = shard_ids(ids, 4)
    assert [len(s) for s in shards] == [4, 4, 2]
    assert [i for s in shards for i in s] == ids
    assert shard_ids(ids, 10) == [ids] and shard_ids([], 3) == [[]]
    with pytest.raises(ValueError, match="at least 1"):
        shard_ids(ids, 0)
    with pytest.raises(AnisoscreenError, match="at least 1"):
        ScreeningMaker.from_options(shard_size=0)


def test_shard_bounds_are_the_slices_of_shard_ids():
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(3, 3) == [(0, 3)]
    assert shard_bounds(0, 3) == [] and shard_bounds(-1, 3) == []  # no rows: no shards
    ids = [f"mp-{i}" for i in range(7)]
    assert shard_ids(ids, 3) == [ids[a:b] for a, b in shard_bounds(7, 3)]
    with pytest.raises(ValueError, match="at least 1"):
        shard_bounds(5, 0)


def test_shard_size_option_is_checked():
    result = CliRunner().invoke(app, ["run-screen", "--shard-size", "0"])
    assert result.exit_code == 2 and "--shard-size" in result.output
    result = CliRunner().invoke(app, ["submit", "screening", "--shard-size", "0"])
    assert result.exit_code == 2 and "--shard-size" in result.output


def _run(folder: Path, pool: Path, data: Path, shard_size: int | None, run_id: str):
    settings = get_settings(data_dir=data)
    maker = local_maker(folder, pool, data, shard_size=shard_size)
    flow = maker.make(run_id)
    job_store = build_job_store(settings)
    responses = run_flow_locally(flow, job_store)
    outputs = screening_outputs(flow, responses)
    assert outputs is not None
    job_store.connect()
    names = [d["name"] for d in job_store.query({}, properties=["name"])]
    job_store.close()
    with ResultsStore(settings) as results:
        predictions = {p.material_id: p for p in results.query(PredictionDoc)}
        run = next(r for r in results.query(ScreeningRunDoc) if r.run_id == run_id)
    return outputs, names, predictions, run


@pytest.mark.slow
def test_sharded_and_single_job_runs_agree(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    single, single_names, single_preds, single_run = _run(
        folder, pool, tmp_path / "single", None, "single"
    )
    shard_size = 3
    sharded, names, preds, run = _run(folder, pool, tmp_path / "sharded", shard_size, "sharded")

    n = single_run.n_candidates
    assert n > shard_size and n % shard_size  # two shards or more, the last one partial
    shard_jobs = sorted(name for name in names if name.startswith("predict shard"))
    n_shards = math.ceil(n / shard_size)
    assert len(shard_jobs) == n_shards
    assert shard_jobs == sorted(f"predict shard {i}/{n_shards}" for i in range(1, n_shards + 1))
    assert names.count("merge prediction shards") == 1
    assert not any(name.startswith("predict shard") for name in single_names)

    # the same predictions (float32 forward passes over differently composed batches agree
    # to ~1e-9 absolute), descriptors and ranking
    assert preds.keys() == single_preds.keys() and len(preds) == n
    for material_id, doc in preds.items():
        ref = single_preds[material_id]
        np.testing.assert_allclose(
            doc.dielectric_tensor, ref.dielectric_tensor, rtol=1e-6, atol=1e-7
        )
        assert doc.anisotropy_ratio == pytest.approx(ref.anisotropy_ratio, rel=1e-6)
        assert (doc.dimensionality, doc.crystal_system) == (ref.dimensionality, ref.crystal_system)
    assert [r.material_id for r in sharded.ranking.ranking] == [
        r.material_id for r in single.ranking.ranking
    ]
    assert len(sharded.ranking.ranking) == n
    # the merged stage output is the union of the shards
    assert (run.n_candidates, run.n_predicted, run.n_reused) == (n, n, 0)
    assert run.n_failed == single_run.n_failed

    # a re-run of the sharded flow predicts nothing again: every shard reuses its predictions
    _, _, again, rerun = _run(folder, pool, tmp_path / "sharded", shard_size, "again")
    assert (rerun.n_predicted, rerun.n_reused) == (0, n)
    assert again.keys() == preds.keys()


@pytest.mark.slow
def test_run_screen_shard_size_option(tiny_model, tmp_path):
    folder, _ = tiny_model
    pool = small_pool(tmp_path / "pool.json")
    data = tmp_path / "d"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app,
        screen_args(folder, pool, data, "--include-known", "--shard-size", "2"),
    )
    assert "top 10 by anisotropy ratio" in result.output, result.output
    settings = get_settings(data_dir=data)
    with ResultsStore(settings) as results:
        (run,) = results.query(ScreeningRunDoc)
        n = results.count("predictions")
    assert n == run.n_candidates == run.n_predicted
    # the progress bar counts every shard against the stage's total
    (line,) = [line for line in result.output.splitlines() if "predicting" in line]
    assert f" {n}/{n} " in line
    job_store = build_job_store(settings)
    job_store.connect()
    names = [d["name"] for d in job_store.query({}, properties=["name"])]
    job_store.close()
    assert sum(name.startswith("predict shard") for name in names) == math.ceil(n / 2)
