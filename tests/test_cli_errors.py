"""Every user-facing failure ends as one line and a documented exit code; nothing is lost."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from importlib import resources

import pytest
from cli_helpers import CLI
from jobflow import Flow, JobStore, job
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure

from anisoscreen.errors import ExitCode, StageError
from anisoscreen.screening.flow_runner import run_flow_locally


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = CLI
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=900
    )


def _bundled(n: int) -> list[dict]:
    raw = resources.files("anisoscreen.data").joinpath("bundled_candidates.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))[:n]


def _zero_volume() -> dict:
    lattice = Lattice([[3, 0, 0], [0, 3, 0], [3, 3, 0]])
    structure = Structure(lattice, ["Si", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {"material_id": "zero-volume", "structure": structure.as_dict()}


@job
def divide(x: float) -> float:
    return 1 / x


def test_a_failing_job_reaches_the_caller_with_its_cause():
    step = divide(0)
    step.name = "divide stage"
    with pytest.raises(StageError) as info:
        run_flow_locally(Flow([step]), JobStore(MemoryStore()))
    message = str(info.value)
    assert "'divide stage' stage failed: ZeroDivisionError: division by zero" in message
    assert info.value.exit_code == ExitCode.STAGE


def test_the_failing_stage_is_named_even_when_logging_was_configured_away():
    """uvicorn/jobflow-remote style ``dictConfig(disable_existing_loggers=True)``."""
    import logging.config

    logging.getLogger("jobflow.core.job")  # exists before the reconfiguration
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})
    try:
        step = divide(0)
        step.name = "divide stage"
        with pytest.raises(StageError, match="'divide stage' stage failed"):
            run_flow_locally(Flow([step]), JobStore(MemoryStore()))
    finally:
        logging.getLogger("jobflow.core.job").disabled = False


def test_run_screen_names_a_missing_source(tmp_path):
    missing = tmp_path / "no-such-pool.json"
    out = run_cli("run-screen", "--source", str(missing), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == ExitCode.SOURCE, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]
    assert "see the messages above" not in out.stderr + out.stdout


def test_predict_zero_volume_record_in_a_batch(tmp_path):
    docs = [{"material_id": d["material_id"], "structure": d["structure"]} for d in _bundled(3)]
    docs.insert(1, _zero_volume())
    source = tmp_path / "batch.json"
    source.write_text(json.dumps(docs))
    output = tmp_path / "out.jsonl"
    out = run_cli("predict", str(source), "--output", str(output))
    assert out.returncode == ExitCode.FAILED_RECORDS, out.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["material_id"] for line in lines] == [d["material_id"] for d in docs]
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and "cell volume is 0" in errors[0]["error"]
    assert all(line["eps_poly"] > 1 for line in lines if "error" not in line)
    assert not output.with_name(output.name + ".partial").exists()
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_run_screen_with_bad_and_duplicate_records(tmp_path):
    pool = _bundled(3)
    docs = [*pool, _zero_volume(), pool[0]]  # one impossible record, one repeated id
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(docs))
    data_dir = str(tmp_path / "d")
    out = run_cli(
        "run-screen",
        "--source",
        str(source),
        "--data-dir",
        data_dir,
        "--include-known",
        "--validate",
    )
    assert out.returncode == ExitCode.FAILED_RECORDS, out.stderr
    assert (
        f"warning: {source}: 1 material id(s) appear more than once ({pool[0]['material_id']})"
        in out.stderr
    )
    assert "zero-volume: the cell volume is 0" in out.stdout
    assert "Nothing was submitted: a local run cannot run VASP" in out.stdout
    assert out.stderr.strip().splitlines()[-1].startswith("error: 1 of 4 records failed")
    # the good records were predicted and stored
    listed = run_cli("query", "--data-dir", data_dir, "--format", "json")
    assert listed.returncode == 0
    assert sorted(r["material_id"] for r in json.loads(listed.stdout)) == sorted(
        d["material_id"] for d in pool
    )
    failed = run_cli("query", "--failed", "--data-dir", data_dir, "--format", "json")
    assert failed.returncode == 0
    assert [f["material_id"] for f in json.loads(failed.stdout)] == ["zero-volume"]
    # plot's hint names only options plot has
    figure = run_cli("plot", "histogram", "--data-dir", data_dir, "-o", str(tmp_path / "h.png"))
    assert figure.returncode == ExitCode.USAGE
    assert "--include-predictions" not in figure.stderr and "anisoscreen submit" in figure.stderr
