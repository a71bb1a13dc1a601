"""Candidate tables: golden files per format, optional columns, CLI and empty stores.

The golden files are written and reviewed by hand (issue 26): no code path regenerates them.
After an intended change the failing test prints the difference; edit the file to match once
every changed line has been checked.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from report_data import fill

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import CandidateQuery, find_candidates
from anisoscreen.report.tables import (
    format_from_path,
    html_formula,
    latex_formula,
    parse_columns,
    render_table,
    write_table,
)

GOLDEN = Path(__file__).parent / "golden"
SUFFIX = {"csv": "csv", "markdown": "md", "latex": "tex", "html": "html"}


def check_golden(name: str, text: str) -> None:
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), text.splitlines(), f"golden/{name}", "rendered", lineterm=""
        )
        pytest.fail(f"{name} differs from its golden file:\n" + "\n".join(diff))


@pytest.fixture
def filled(memory_results):
    return fill(memory_results)


@pytest.fixture
def validated_rows(filled):
    return find_candidates(filled, CandidateQuery(validated_only=True))


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_validated_table_matches_golden(validated_rows, fmt):
    check_golden(f"table_s1.{SUFFIX[fmt]}", render_table(validated_rows, fmt))


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_mixed_table_with_all_columns_matches_golden(filled, fmt):
    rows = find_candidates(filled)
    check_golden(f"table_all_columns.{SUFFIX[fmt]}", render_table(rows, fmt, ["all"]))


def test_table_s1_layout(validated_rows):
    latex = render_table(validated_rows, "latex")
    first = next(line for line in latex.splitlines() if line.startswith("mp-1104369"))
    assert first == (
        r"mp-1104369 & $\rm NaV_2O_4$ & $\begin{bmatrix} 2.7 & 0.0 & -0.3 \\ 0.0 & 18.4 & 0.0 \\ "
        r"-0.3 & 0.0 & 20.8 \end{bmatrix}$ & 7.72 \\"
    )
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert "Source" not in latex  # every row validated: no source column, no note


def test_prediction_rows_are_marked(filled):
    rows = find_candidates(filled, CandidateQuery(dimensionality=2))
    markdown = render_table(rows, "markdown")
    wse2 = next(line for line in markdown.splitlines() if "WSe2" in line)
    assert "| predicted |" in wse2
    assert "Rows marked 'predicted' (1 of 3)" in markdown
    html = render_table(rows, "html")
    assert '<tr class="predicted">' in html and html.count('<tr class="validated">') == 2


def test_formula_markup():
    assert latex_formula("NaV2O4") == r"$\rm NaV_2O_4$"
    assert latex_formula("Cs3Sb2I9") == r"$\rm Cs_3Sb_2I_9$"
    assert latex_formula("Li10GeP2S12") == r"$\rm Li_{10}GeP_2S_{12}$"
    assert html_formula("MoS2") == "MoS<sub>2</sub>"


def test_columns_and_formats_are_checked(validated_rows):
    assert parse_columns("band_gap,dimensionality") == ["dimensionality", "band_gap"]
    assert parse_columns(["e-hull"]) == ["e_hull"]
    with pytest.raises(AnisoscreenError, match="unknown table column 'colour'"):
        parse_columns("colour")
    with pytest.raises(AnisoscreenError, match="unknown table format"):
        render_table(validated_rows, "xlsx")
    with pytest.raises(AnisoscreenError, match="no candidates to tabulate"):
        render_table([], "csv")
    assert format_from_path("t.TEX") == "latex"
    with pytest.raises(AnisoscreenError, match="cannot tell the table format"):
        format_from_path("table.txt")


def test_write_table_picks_format_from_suffix(validated_rows, tmp_path):
    path = write_table(validated_rows, tmp_path / "out" / "s1.html")
    assert path.read_text() == (GOLDEN / "table_s1.html").read_text()


# -- CLI ------------------------------------------------------------------------------------
@pytest.fixture
def app():
    import typer

    from anisoscreen.commands.report import register

    application = typer.Typer()
    register(application)
    return application


@pytest.fixture
def monty_dir(tmp_path):
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    data_dir = tmp_path / "monty"
    with ResultsStore(get_settings(store="embedded", data_dir=data_dir)) as results:
        fill(results)
    return data_dir


def invoke(app, *args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_cli_table_writes_each_format(app, monty_dir, tmp_path, fmt):
    out = tmp_path / f"t.{SUFFIX[fmt]}"
    result = invoke(
        app, "table", "--store", "embedded", "--data-dir", str(monty_dir), "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == (GOLDEN / f"table_s1.{SUFFIX[fmt]}").read_text()


def test_cli_table_filters_and_stdout(app, monty_dir):
    result = invoke(
        app,
        "table",
        "--store",
        "embedded",
        "--data-dir",
        str(monty_dir),
        "--include-predictions",
        "-d",
        "2",
        "--ar-min",
        "2.6",
        "-x",
        "Na",
        "--columns",
        "predicted",
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("material_id,formula,source,eps_xx")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["mp-1003", "WSe2", "predicted"],
        ["mp-2815", "MoS2", "DFPT"],
    ]


def test_cli_table_on_empty_store_gives_a_clear_message(app, tmp_path):
    result = invoke(app, "table", "--store", "embedded", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert isinstance(result.exception, AnisoscreenError)
    assert "no predictions in the store" in str(result.exception)


def test_cli_table_without_validations_suggests_include_predictions(app, tmp_path):
    from report_data import small_docs

    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    data_dir = tmp_path / "preds"
    with ResultsStore(get_settings(store="embedded", data_dir=data_dir)) as results:
        results.upsert(small_docs()[0])
    result = invoke(app, "table", "--store", "embedded", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    message = str(result.exception)
    assert (
        message.startswith("no validated candidates in the store")
        and "--include-predictions" in message
    )
    result = invoke(app, "table", "--store", "embedded", "--data-dir", str(data_dir), "-e", "Xx")
    assert "unknown element symbol 'Xx'" in str(result.exception)
