"""Oracle files of `campaign simulate`: accepted shapes, fast checks, training-split warning."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from cli_helpers import CLI
from conftest import SHARED, TEST_DATA

from anisoscreen.campaign.oracle import read_oracle_records
from anisoscreen.campaign.simulate import load_oracle
from anisoscreen.errors import AnisoscreenError, AnisoscreenWarning


def _oracle_records() -> list[dict]:
    with gzip.open(TEST_DATA / "campaign_oracle_40.json.gz", "rt") as handle:
        return json.load(handle)


def test_the_shared_sets_field_names_are_accepted(tmp_path):
    records = _oracle_records()[:5]
    renamed = [
        {
            "material_id": r["material_id"],
            "structure": r["structure"],
            "eps_electronic": r["dielectric_tensor"],
        }
        for r in records
    ]
    path = tmp_path / "shared_style.json"
    path.write_text(json.dumps(renamed))
    entries = load_oracle(path)
    assert [e.material_id for e in entries] == [r["material_id"] for r in records]
    np.testing.assert_allclose(
        entries[0].dielectric_tensor,
        (
            np.asarray(records[0]["dielectric_tensor"])
            + np.asarray(records[0]["dielectric_tensor"]).T
        )
        / 2,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"material_id": "x"}, "not an oracle file"),
        ([{"structure": {}, "dielectric_tensor": [[1, 0, 0]] * 3}], "no material_id"),
        ([{"material_id": "a", "dielectric_tensor": [[1, 0, 0]] * 3}], "no structure dict"),
        ([{"material_id": "a", "structure": {"x": 1}}], "no dielectric_tensor or eps_electronic"),
        ([{"material_id": "a", "structure": {"x": 1}, "dielectric_tensor": [1, 2]}], "not 3x3"),
    ],
)
def test_wrong_oracles_are_named_with_the_expected_shape(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(AnisoscreenError, match=message) as info:
        read_oracle_records(path)
    assert "campaign simulate --help" in str(info.value)


def test_oracles_and_dfpt_imports_read_json_and_gzipped_json_alike(tmp_path):
    from anisoscreen.candidates.json_cache import read_json
    from anisoscreen.errors import SourceError
    from anisoscreen.validation.imports import read_json_records

    records = [{"material_id": "mp-1", "note": "\u03b5 \u00c5"}]
    plain, packed = tmp_path / "r.json", tmp_path / "r.json.gz"
    plain.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        json.dump(records, handle, ensure_ascii=False)
    assert read_json(plain) == read_json(packed) == records
    assert read_json_records(packed) == records
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(AnisoscreenError, match="oracle file .*broken.json.gz is not readable JSON"):
        read_oracle_records(broken)
    with pytest.raises(SourceError, match="broken.json.gz is not readable JSON"):
        read_json_records(broken)


def test_a_wrong_oracle_fails_before_the_model_loads(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"material_id": "a"}]))
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "campaign",
            "simulate",
            "--labels",
            str(path),
            "--output",
            str(tmp_path / "sim.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "record 0 has no structure dict" in out.stderr
    assert time.perf_counter() - start < 8  # no torch, no model (was 15 s)
    assert not (tmp_path / "sim.json").exists()


@pytest.mark.skipif(
    not (SHARED / "data" / "mp_dielectric_tensors.json.gz").is_file(),
    reason="needs the shared MP DFPT set",
)
def test_oracle_materials_in_the_training_split_are_warned_about():
    from anisoscreen.commands.campaign import _warn_training_overlap
    from anisoscreen.settings import get_settings

    settings = get_settings()
    with gzip.open(SHARED / "data" / "mp_dielectric_tensors.json.gz", "rt") as handle:
        ids = {r["material_id"] for r in json.load(handle)[:50]}
    with pytest.warns(AnisoscreenWarning, match=r"oracle materials were in the training split"):
        _warn_training_overlap(ids, "anisonet-mp-v2", settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_training_overlap({"not-a-training-id"}, "anisonet-mp-v2", settings)
