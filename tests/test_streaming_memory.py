"""``anisoscreen predict`` streams: its peak memory does not grow with the number of inputs.

Real processes on real files: a randomly initialised tiny model is saved to disk and the
console-script entry point predicts 1,000 and then 5,000 structures (200 small cells of the
shared MP oxide pool cycled, every site displaced by 0.01 Å) from gzip JSON Lines in fresh processes; the peak
resident memory of each child comes from ``wait4``. A reader that held every record would add
about 25 kB per structure (measured on the pool), some 100 MB between the two runs. The 100,000-
structure measurement is ``benchmarks/bench_streaming.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_helpers import CLI

from anisoscreen.model.checkpoint import save_model
from anisoscreen.model.nn.network import AnisoNet, ModelConfig

BASE_STRUCTURES = 200
"""Distinct pool structures cycled (all seen within the first 1,000 inputs)."""
MAX_SITES = 12
"""Only small cells: the test measures memory, not speed."""


def write_synthetic_pool(pool: list[dict], path, n: int, seed: int = 0) -> list[str]:
    """``n`` pool documents cycled with displaced sites, as gzip JSON Lines; their ids."""
    rng = np.random.default_rng(seed)
    ids = []
    with gzip.open(path, "wt", compresslevel=1) as handle:
        for index in range(n):
            base = pool[index % len(pool)]
            structure = base["structure"]
            matrix = np.array(structure["lattice"]["matrix"])
            frac = np.array([site["abc"] for site in structure["sites"]])
            cart = frac @ matrix + rng.normal(0.0, 0.01, size=frac.shape)
            frac = np.linalg.solve(matrix.T, cart.T).T
            sites = [
                {**site, "abc": abc.tolist(), "xyz": xyz.tolist()}
                for site, abc, xyz in zip(structure["sites"], frac, cart, strict=True)
            ]
            ids.append(f"{base['material_id']}-syn{index:06d}")
            doc = {**base, "material_id": ids[-1], "structure": {**structure, "sites": sites}}
            handle.write(json.dumps(doc) + "\n")
    return ids


def predict_peak_rss_mb(source, output, model) -> float:
    """Run ``anisoscreen predict`` in a fresh process; the child's peak RSS in MB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CLI, "predict", str(source), "-o", str(output)]
    process = subprocess.Popen(
        [*command, "--model", str(model), "--device", "cpu", "--batch-size", "64"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    error = process.stderr.read().decode()
    process.stderr.close()
    assert process.returncode == 0, error
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_predict_memory_is_flat_from_1k_to_5k_structures(shared_dir, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(mul=4, lmax=2, radial_hidden=16, embed_dim=8)
    model = save_model(tmp_path / "tiny.pt", config, [AnisoNet(config).state_dict()], "t", "0.1")
    with gzip.open(shared_dir / "data" / "mp_candidates_oxides.json.gz", "rt") as handle:
        pool = [doc for doc in json.load(handle) if doc["nsites"] <= MAX_SITES][:BASE_STRUCTURES]
    assert len(pool) == BASE_STRUCTURES

    peaks = {}
    for n in (1_000, 5_000):
        source, output = tmp_path / f"pool_{n}.jsonl.gz", tmp_path / f"predictions_{n}.jsonl"
        ids = write_synthetic_pool(pool, source, n)
        peaks[n] = predict_peak_rss_mb(source, output, model)
        lines = [json.loads(line) for line in output.read_text().splitlines()]
        assert [line["material_id"] for line in lines] == ids  # every input, in order
        assert all(np.isfinite(line["eps_poly"]) for line in lines)
        source.unlink()

    assert peaks[5_000] <= peaks[1_000] + max(60.0, 0.1 * peaks[1_000]), peaks
