"""A killed ranking run leaves no worker alive and keeps the descriptors it stored."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib import resources
from pathlib import Path

import numpy as np
import psutil
import pytest

from anisoscreen.schemas import CandidateDoc, PredictionDoc
from anisoscreen.screening.jobs import RANK_CHUNK
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]

RANKER = textwrap.dedent(
    """
    import sys
    from anisoscreen.screening.jobs import rank_candidates
    from anisoscreen.screening.outputs import PredictionStageOutput
    ids = sys.argv[2].split(",")
    predictions = PredictionStageOutput(
        material_ids=ids, model="m", model_version="1", model_checksum="c",
        n_predicted=len(ids), n_reused=0, device="cpu", seconds=0.0,
    )
    rank_candidates.original(predictions, processes=2, store={"data_dir": sys.argv[1]})
    print("finished")
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ranked(data_dir: Path) -> int:
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        return results.count("predictions", {"crystal_system": {"$ne": None}})


@pytest.mark.slow
def test_killed_ranking_leaves_no_worker_and_keeps_stored_chunks(tmp_path):
    raw = resources.files("anisoscreen.data").joinpath("bundled_candidates.json.gz").read_bytes()
    pool = json.loads(gzip.decompress(raw))[:160]
    data_dir = tmp_path / "d"
    candidates = [
        CandidateDoc.from_structure(_structure(d), "bundled", material_id=d["material_id"])
        for d in pool
    ]
    predictions = [
        PredictionDoc.from_tensor(
            np.diag([2.0, 2.0, 3.0]),
            material_id=c.material_id,
            formula_pretty=c.formula_pretty,
            model="m",
            model_version="1",
            model_checksum="c",
        )
        for c in candidates
    ]
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        results.upsert(candidates + predictions)
    ids = ",".join(c.material_id for c in candidates)
    ranker = subprocess.Popen(
        [sys.executable, "-c", RANKER, str(data_dir), ids],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    deadline = time.time() + 240
    stored = 0
    while time.time() < deadline and ranker.poll() is None:
        children = psutil.Process(ranker.pid).children(recursive=True)
        workers = sorted(set(workers) | {p.pid for p in children})
        stored = _ranked(data_dir)
        if stored >= RANK_CHUNK and len(workers) >= 2:
            break
        time.sleep(0.2)
    assert ranker.poll() is None, (
        "the ranking finished before it could be killed: " + ranker.stderr.read().decode()[-2000:]
    )
    assert len(workers) >= 2, "no worker processes seen"
    os.kill(ranker.pid, signal.SIGKILL)
    ranker.wait(timeout=30)
    deadline = time.time() + 10  # the parent watch polls once a second
    while time.time() < deadline and not all(_gone(pid) for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if not _gone(pid)]
    assert not alive, f"orphaned workers still running: {alive}"
    # what was ranked before the kill is stored, in whole chunks; the rest is not
    kept = _ranked(data_dir)
    assert RANK_CHUNK <= kept < len(candidates)


def _structure(doc):
    from pymatgen.core import Structure

    return Structure.from_dict(doc["structure"])
