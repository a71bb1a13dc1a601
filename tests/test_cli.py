"""The console entry point: version, info on the embedded store, one-line user errors."""

from __future__ import annotations

import os

import numpy as np
from cli_helpers import run_cli

from anisoscreen import __version__
from anisoscreen.schemas import PredictionDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"anisoscreen {__version__}"


def test_info_reports_embedded_store_counts(tmp_path):
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        results.upsert(
            [
                PredictionDoc.from_tensor(
                    np.eye(3) * 2,
                    material_id="mp-1",
                    formula_pretty="X",
                    model="m",
                    model_version="1",
                    model_checksum="c",
                )
            ]
        )
    wide = {**os.environ, "COLUMNS": "250"}  # no wrapped table cells
    out = run_cli("info", "--data-dir", str(tmp_path / "d"), env=wide)
    assert out.returncode == 0, out.stderr
    assert "embedded SQLite" in out.stdout
    assert any(
        line.split("│")[1:3] and "predictions" in line and "1" in line
        for line in out.stdout.splitlines()
    )
    assert "default model" in out.stdout and "torch" in out.stdout
    assert "fused kernel (" in out.stdout and "edge_tp-" in out.stdout  # built on this machine
    disabled = run_cli(
        "info", "--data-dir", str(tmp_path / "d"), env={**wide, "ANISOSCREEN_FUSED_KERNEL": "0"}
    )
    assert "PyTorch path (ANISOSCREEN_FUSED_KERNEL=0)" in disabled.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    out = run_cli("info", "--store", "redis://nowhere")
    assert out.returncode == 4  # a configuration error (ExitCode.CONFIG)
    assert out.stderr.strip().startswith("error: unknown store 'redis://nowhere'")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = run_cli(
        "predict",
        str(tmp_path / "nope.cif"),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--model",
        str(tmp_path / "no-model"),
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    # the cheap check first: the missing input is named before any model is looked for
    assert "nope.cif does not exist" in missing.stderr
