"""``anisoscreen report --html``: one self-contained file with the table, cards and overview."""

from __future__ import annotations

import base64
import os
import re

import numpy as np
import pytest
from cli_helpers import run_cli
from report_data import fill

from anisoscreen.query import CandidateQuery, find_candidates
from anisoscreen.report.cards import TensorView
from anisoscreen.report.html import render_html_report
from anisoscreen.schemas import ScreeningRunDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


def test_tensor_view_decomposes_a_rotated_tensor():
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    tensor = rotation @ np.diag([2.0, 3.0, 8.0]) @ rotation.T
    view = TensorView.of(tensor.tolist())
    assert view.eigenvalues == pytest.approx([2.0, 3.0, 8.0])
    assert view.anisotropy_ratio == pytest.approx(4.0) and view.eps_poly == pytest.approx(13 / 3)
    for value, axis in zip(view.eigenvalues, view.principal_axes, strict=True):
        assert tensor @ np.array(axis) == pytest.approx(value * np.array(axis))


def test_report_is_self_contained_with_table_cards_and_figures(memory_results):
    fill(memory_results)
    run = ScreeningRunDoc(
        run_id="run-7",
        source="bundled",
        n_input=300,
        removed_by={"num_sites": 66},
        n_candidates=234,
        n_predicted=7,
    )
    rows = find_candidates(memory_results, CandidateQuery())
    html = render_html_report(
        rows, [run], top=5, store="memory", training_ratios=[1.1, 1.3, 1.2, 2.5, 1.05]
    )
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and not re.search(r"<script[^>]+src=", html)
    table = re.findall(r'<tr data-material-id="([^"]+)"', html)
    assert table == [row.material_id for row in rows[:5]]
    assert len(re.findall(r'<section class="card" id="card-', html)) == 5
    assert 'href="#card-mp-1104369"' in html
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(pngs) == 6  # Fig. 6a, 6b, parity and three periodic tables: all drawable here
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for png in pngs)
    assert "removed by num_sites" in html and "run-7" in html
    # the DFPT tensor of the validated top candidate sits beside the prediction
    assert "DFPT ε∞" in html and "20.800" in html


def test_report_command_writes_the_file(tmp_path):
    # no shared data here: the histogram is listed as not drawn (reading the training set
    # takes minutes on a busy machine; the drawn case is covered above)
    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        fill(results)
    out = tmp_path / "out" / "report.html"
    report = ["report", "--html", str(out), "--data-dir", str(tmp_path / "d")]
    done = run_cli(
        *report,
        "--top",
        "3",
        "--ar-min",
        "2",
        env={**os.environ, "ANISOSCREEN_SHARED": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "(3 of 4 candidates)" in done.stderr
    html = out.read_text(encoding="utf-8")
    assert len(re.findall(r"<tr data-material-id=", html)) == 3 and "a_r &gt;= 2" in html
    assert "Not drawn: no training data found" in html
    empty = run_cli(*report, "--ar-min", "100")
    assert (
        empty.returncode == 1
        and "no candidates" in empty.stderr
        and "Traceback" not in empty.stderr
    )


def _with_static_predictions(results: ResultsStore) -> None:
    """Two predictions of an ionic model set: FOM 30 / eps_total 20 and FOM 5 / eps_total 8."""
    from anisoscreen.schemas import PredictionDoc, TensorPrediction

    for mid, eps_total, gap in (("mp-9001", 20.0, 1.5), ("mp-9002", 8.0, 0.625)):
        total = np.diag([eps_total] * 3).tolist()
        results.upsert(
            [
                PredictionDoc.from_tensor(
                    np.diag([3.0, 3.0, 9.0]),
                    material_id=mid,
                    formula_pretty="TiO2",
                    model="anisonet-test",
                    model_version="1.0",
                    model_checksum="0" * 64,
                    elements=["O", "Ti"],
                    band_gap=gap,
                    eps_total=TensorPrediction(
                        tensor=total,
                        eigenvalues=[eps_total] * 3,
                        eps_poly=eps_total,
                        anisotropy_ratio=1.0,
                    ),
                    figure_of_merit=gap * eps_total,
                )
            ]
        )


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("--fom-min", "10", ["mp-9001"]), ("--eps-total-min", "7.5", ["mp-9001", "mp-9002"])],
)
def test_report_command_honours_the_static_tensor_filters(tmp_path, option, value, expected):
    from html import escape

    from typer.testing import CliRunner

    from anisoscreen.cli import app

    settings = get_settings(data_dir=tmp_path / "d")
    with ResultsStore(settings) as results:
        fill(results)
        _with_static_predictions(results)
    out = tmp_path / "report.html"
    args = ["report", "--html", str(out), "--data-dir", str(tmp_path / "d"), option, value]
    done = CliRunner(env={"ANISOSCREEN_SHARED": str(tmp_path)}).invoke(app, args)
    assert done.exit_code == 0, done.output
    html = out.read_text(encoding="utf-8")
    shown = re.findall(r'<tr data-material-id="([^"]+)"', html)
    assert sorted(shown) == expected
    query = CandidateQuery.build(**{option.removeprefix("--").replace("-", "_"): float(value)})
    assert escape(query.describe()) in html  # "FOM >= 10" / "eps_total >= 7.5"


def test_every_query_command_has_the_same_filter_options():
    import typer.main

    from anisoscreen.cli import app
    from anisoscreen.commands.query_options import QueryOptions

    command = typer.main.get_command(app)
    names = {f.replace("_", "-") for f in QueryOptions.__dataclass_fields__}
    for name in ("query", "table", "plot", "report"):
        options = {
            opt.removeprefix("--")
            for param in command.commands[name].params  # type: ignore[attr-defined]
            for opt in param.opts
        }
        assert names <= options, (name, names - options)


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (
            "/home/ana/.local/share/anisoscreen/store (embedded montydb)",
            "…/anisoscreen/store (embedded montydb)",
        ),
        (
            "mongodb://***@db.example.org:27017/results",
            "mongodb://***@db.example.org:27017/results",
        ),
        (
            "C:\\Users\\ana\\anisoscreen\\store (embedded montydb)",
            "…/anisoscreen/store (embedded montydb)",
        ),
        ("memory", "memory"),
    ],
)
def test_report_shows_a_redacted_store_location(memory_results, location, shown):
    fill(memory_results)
    rows = find_candidates(memory_results, CandidateQuery())
    html = render_html_report(rows, top=1, store=location)
    assert f"Store: {shown}" in html
    assert "ana" not in html.split("Store: ", 1)[1][:200]
