"""Band gaps for data-set entries without one, matched from the MP id table."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anisoscreen.model.training import gap_matching
from anisoscreen.model.training.dataset import GAP_TABLE, DielectricEntry, load_entries
from anisoscreen.model.training.gap_matching import IdTableRow, fill_band_gaps, read_id_table

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402
from campaign_helpers import record_calls  # noqa: E402


def _entry(structure, gap=None) -> DielectricEntry:
    return DielectricEntry("x", "NaCl", structure, np.eye(3) * 2.3, band_gap=gap)


def _row(material_id: str, volume_per_atom: float, gap: float, spacegroup: int = 225):
    return IdTableRow(material_id, "NaCl", volume_per_atom, gap, spacegroup)


def test_a_unique_match_of_formula_space_group_and_volume_gives_its_gap():
    nacl = crystals.nacl()
    volume = nacl.volume / len(nacl)
    table = [
        _row("mp-22862", volume * 1.01, 5.0),
        _row("mp-far", volume * 1.2, 1.0),  # another polymorph's volume
        _row("mp-other-sg", volume, 2.0, spacegroup=221),
    ]
    (filled,), report = fill_band_gaps([_entry(nacl)], table)
    assert filled.band_gap == 5.0 and filled.band_gap_source == "matched mp-22862"
    assert (report.matched, report.no_match, report.ambiguous) == (1, 0, 0)


def test_no_match_or_two_matches_leave_the_gap_unknown_and_a_known_gap_stays():
    nacl = crystals.nacl()
    volume = nacl.volume / len(nacl)
    twins = [_row("mp-a", volume, 5.0), _row("mp-b", volume * 1.02, 4.0)]
    (ambiguous,), report = fill_band_gaps([_entry(nacl)], twins)
    assert ambiguous.band_gap is None and report.ambiguous == 1
    (unmatched,), report = fill_band_gaps([_entry(nacl)], [_row("mp-a", volume * 1.1, 5.0)])
    assert unmatched.band_gap is None and report.no_match == 1
    known = _entry(nacl, gap=4.2)
    (kept,), report = fill_band_gaps([known], twins)
    assert kept is known and report.n_without_gap == 0


def test_load_entries_matches_gaps_from_the_table_beside_the_data(tmp_path):
    nacl = crystals.nacl()
    record = {"structure": nacl.as_dict(), "eps_electronic": (np.eye(3) * 2.3).tolist()}
    (tmp_path / "data.json").write_text(json.dumps([record, {**record, "band_gap": 3.0}]))
    with (tmp_path / GAP_TABLE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["material_id", "formula", "n_sites", "volume", "bandgap_pbe", "spacegroup"]
        )
        writer.writerow(["mp-22862", "NaCl", len(nacl), nacl.volume, 5.0, 225])
    matched, recorded = load_entries(tmp_path / "data.json")
    assert matched.band_gap == 5.0 and matched.band_gap_source == "matched mp-22862"
    assert recorded.band_gap == 3.0 and recorded.band_gap_source == "record"
    unmatched, _ = load_entries(tmp_path / "data.json", match_gaps=False)
    assert unmatched.band_gap is None and unmatched.band_gap_source is None


def _write_data_and_table(folder: Path, gap: float) -> Path:
    nacl = crystals.nacl()
    record = {"structure": nacl.as_dict(), "eps_electronic": (np.eye(3) * 2.3).tolist()}
    other = {**record, "material_id": "mp-no-match", "structure": crystals.mos2().as_dict()}
    data = folder / "data.json"
    data.write_text(json.dumps([record, other, {**record, "band_gap": 3.0}]))
    with (folder / GAP_TABLE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["material_id", "formula", "n_sites", "volume", "bandgap_pbe", "spacegroup"]
        )
        writer.writerow(["mp-22862", "NaCl", len(nacl), nacl.volume, gap, 225])
    return data


def _gaps(entries: list[DielectricEntry]) -> list[tuple[str, float | None, str | None]]:
    return [(e.material_id, e.band_gap, e.band_gap_source) for e in entries]


def test_the_matching_is_cached_in_the_process_and_on_disk(tmp_path, monkeypatch):
    analysed = record_calls(monkeypatch, gap_matching, "_space_group")
    monkeypatch.setattr(gap_matching, "_MATCHES", {})
    data = _write_data_and_table(tmp_path, gap=5.0)
    first = load_entries(data)
    assert analysed == ["NaCl"]
    assert _gaps(first)[0][1:] == (5.0, "matched mp-22862")
    assert _gaps(first)[1:] == [("mp-no-match", None, None), (first[2].material_id, 3.0, "record")]

    again = load_entries(data)  # this process's cache
    assert analysed == ["NaCl"] and _gaps(again) == _gaps(first)

    monkeypatch.setattr(gap_matching, "_MATCHES", {})  # a new process: the disk cache
    (cache,) = (tmp_path / "data" / "cache" / "gap_matching").iterdir()
    assert _gaps(load_entries(data)) == _gaps(first)
    assert analysed == ["NaCl"]

    _write_data_and_table(tmp_path, gap=4.5)  # a changed table is matched again
    changed = load_entries(data)
    assert analysed == ["NaCl", "NaCl"] and changed[0].band_gap == 4.5
    assert len(list(cache.parent.iterdir())) == 2


def test_a_corrupt_disk_cache_is_ignored_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(gap_matching, "_MATCHES", {})
    data = _write_data_and_table(tmp_path, gap=5.0)
    expected = _gaps(load_entries(data))
    (cache,) = (tmp_path / "data" / "cache" / "gap_matching").iterdir()
    cache.write_bytes(b"not gzip")
    monkeypatch.setattr(gap_matching, "_MATCHES", {})
    assert _gaps(load_entries(data)) == expected
    assert gap_matching._read_outcome(cache) is not None


@pytest.mark.slow
def test_matching_recovers_the_recorded_gaps_of_the_shared_set(shared_dir):
    """Hide the gaps of 300 entries that have one: the match gives them back."""
    data = shared_dir / "data"
    entries = load_entries(data / "mp_dielectric_tensors.json.gz", match_gaps=False)
    known = [e for e in entries if e.band_gap is not None][:300]
    filled, report = fill_band_gaps(
        [replace(e, band_gap=None) for e in known], read_id_table(data / GAP_TABLE)
    )
    assert report.matched >= 0.9 * len(known)
    errors = np.array(
        [
            abs(f.band_gap - e.band_gap)
            for f, e in zip(filled, known, strict=True)
            if f.band_gap is not None
        ]
    )
    assert np.mean(errors <= 0.2) >= 0.85
