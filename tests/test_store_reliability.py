"""Store faults: concurrent writers, an unreachable MongoDB, a corrupt embedded file, bad config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import CLI

from anisoscreen.errors import ConfigError, ExitCode, StoreError
from anisoscreen.schemas import PredictionDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, StoreConfigError, build_store
from anisoscreen.store.sqlite import _CHECKED

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    code = CLI
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )


def _prediction(i: int, value: float = 2.0) -> PredictionDoc:
    return PredictionDoc.from_tensor(
        np.diag([value, value, value + 1.0]),
        material_id=f"mp-{i}",
        formula_pretty="X",
        model="m",
        model_version="1",
        model_checksum="c",
    )


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    from pathlib import Path

    data_dir, barrier, n, value = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    docs = [PredictionDoc.from_tensor(np.diag([value, value, value + 1.0]), material_id=f"mp-{i}",
            formula_pretty="X", model="m", model_version="1", model_checksum="c") for i in range(n)]
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        results.store("predictions")  # connected before the barrier
        (barrier / f"ready-{value}").touch()
        deadline = time.time() + 300
        while len(list(barrier.glob("ready-*"))) < 2:  # both ready: start together
            assert time.time() < deadline, "the other writer never got ready"
            time.sleep(0.01)
        started = time.time()
        results.upsert(docs)
    print("done", started)
    """
)


@pytest.mark.slow
def test_two_processes_upserting_the_same_keys_leave_each_key_once(tmp_path):
    data_dir = tmp_path / "store-data"
    n = 3000
    barrier = tmp_path / "barrier"  # both processes build their documents, then start together
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data_dir), str(barrier), str(n), value],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in ("2.0", "3.0")
    ]
    outputs = [w.communicate(timeout=600) for w in writers]
    both_ready = max(path.stat().st_mtime for path in barrier.glob("ready-*"))
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert out.startswith("done"), out
        # the barrier held: each writer started its upsert after both were ready
        assert float(out.split()[1]) >= both_ready - 0.05
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        records = list(results.records("predictions", properties=["material_id", "eps_poly"]))
    ids = [r["material_id"] for r in records]
    assert len(ids) == n and len(set(ids)) == n
    # every key holds one writer's document, whole
    assert {round(r["eps_poly"], 6) for r in records} <= {round(7 / 3, 6), round(10 / 3, 6)}


def test_upsert_in_one_process_reuses_its_index_and_sees_other_writes(tmp_path):
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as first, ResultsStore(settings) as second:
        first.upsert([_prediction(i) for i in range(10)])
        second.upsert([_prediction(i, 3.0) for i in range(5, 15)])  # overlaps 5-9
        first.upsert([_prediction(i, 4.0) for i in range(12, 20)])  # overlaps the other's 12-14
        records = list(first.records("predictions"))
    ids = [r["material_id"] for r in records]
    assert len(ids) == len(set(ids)) == 20
    by_id = {r["material_id"]: r["eps_poly"] for r in records}
    assert by_id["mp-0"] == pytest.approx(7 / 3)
    assert by_id["mp-7"] == pytest.approx(10 / 3)
    assert by_id["mp-13"] == pytest.approx(13 / 3)


def test_failed_upsert_writes_nothing_of_its_chunk(tmp_path):
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        results.upsert([_prediction(0)])
        store = results.store("predictions")
        unencodable = _prediction(1).store_dict() | {"note": object()}
        with pytest.raises(TypeError, match="not JSON serializable"):
            store.upsert_records([_prediction(2).store_dict(), unencodable])
        assert results.count("predictions") == 1  # the chunk is one transaction
        results.upsert([_prediction(i, 4.0) for i in range(3)])
        records = list(results.records("predictions"))
    assert sorted(r["material_id"] for r in records) == ["mp-0", "mp-1", "mp-2"]
    assert {round(r["eps_poly"], 6) for r in records} == {round(13 / 3, 6)}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_mongodb_fails_within_the_timeout_with_one_line():
    uri = f"mongodb://127.0.0.1:{_closed_port()}"
    settings = get_settings(store=uri, server_timeout=1.0)
    start = time.perf_counter()
    with pytest.raises(StoreError, match=r"did not answer within 1 s") as info:
        ResultsStore(settings).count("predictions")
    assert time.perf_counter() - start < 5.0
    assert "\n" not in str(info.value) and "127.0.0.1" in str(info.value)
    # the CLI: default 5 s timeout, one line, the store exit code
    start = time.perf_counter()
    out = run_cli("query", "--store", uri)
    elapsed = time.perf_counter() - start
    assert out.returncode == ExitCode.STORE, out.stderr
    assert elapsed < 5.0 + 25.0  # 5 s selection timeout plus the interpreter start-up
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer within 5 s" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_memory_store_has_unique_key_index(memory_results):
    from pymongo.errors import DuplicateKeyError

    memory_results.upsert([_prediction(1)])
    collection = memory_results.store("predictions")._collection
    record = dict(collection.find_one({}, {"_id": 0}))
    with pytest.raises(DuplicateKeyError):
        collection.insert_one(record)
    assert "anisoscreen_store_key" in collection.index_information()


def test_corrupt_embedded_store_is_reported_with_path_and_hint(tmp_path):
    data_dir = tmp_path / "d"
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        results.upsert([_prediction(i) for i in range(300)])
    path = data_dir / "anisoscreen.sqlite"
    size = path.stat().st_size
    assert size > 16384
    _CHECKED.clear()  # this process checked the healthy file already
    with open(path, "r+b") as handle:  # clobber b-tree pages in the middle of the file
        handle.seek(4096)
        handle.write(os.urandom(8192))
    with pytest.raises(StoreError) as info:
        ResultsStore(get_settings(data_dir=data_dir)).count("predictions")
    message = str(info.value)
    assert str(path) in message and "mv " in message and "\n" not in message
    out = run_cli("query", "--data-dir", str(data_dir))
    assert out.returncode == ExitCode.STORE
    assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("store: [unclosed\nmodel: x\n", "is not valid YAML"),
        ("device: gpu\n", "invalid setting 'device' = 'gpu' from the config file"),
        ("stor: memory\n", "unknown key 'stor'"),
        ("- a\n- b\n", "must be a mapping"),
        ("batch_size: many\n", "invalid setting 'batch_size'"),
    ],
)
def test_bad_config_file_is_one_line_naming_the_key(tmp_path, monkeypatch, content, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    monkeypatch.setenv("ANISOSCREEN_CONFIG", str(config))
    with pytest.raises(ConfigError, match=expected):
        get_settings()
    out = run_cli("info")
    assert out.returncode == ExitCode.CONFIG, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected.split("'")[0] in lines[0] and str(config) in lines[0]


def test_explicit_config_path_must_exist(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("ANISOSCREEN_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="does not exist"):
        get_settings()
    monkeypatch.delenv("ANISOSCREEN_CONFIG")
    out = run_cli("--config", str(missing), "info")
    assert out.returncode == ExitCode.CONFIG and str(missing) in out.stderr


def test_garbage_store_config_is_an_error(tmp_path):
    garbage = tmp_path / "store.yaml"
    garbage.write_text("{{{ not: [yaml\n")
    with pytest.raises(StoreConfigError, match="cannot be parsed"):
        build_store(get_settings(store=str(garbage)), "predictions")
    garbage.write_text("just a string\n")
    with pytest.raises(StoreConfigError, match="must hold one serialised maggma store"):
        build_store(get_settings(store=str(garbage)), "predictions")
    out = run_cli("query", "--store", str(garbage))
    assert out.returncode == ExitCode.CONFIG and "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = run_cli("--debug", "info", "--store", "redis://nowhere")
    assert out.returncode == ExitCode.CONFIG and "Traceback" in out.stderr
    env = {**os.environ, "ANISOSCREEN_DEBUG": "1"}
    out = run_cli("info", "--store", "redis://nowhere", env=env)
    assert "Traceback" in out.stderr and "unknown store" in out.stderr.splitlines()[-1]


def test_help_lists_the_exit_codes():
    out = run_cli("--help", env={**os.environ, "COLUMNS": "300"})
    assert out.returncode == 0
    for code in ExitCode:
        assert f"{int(code)}: " in out.stdout
