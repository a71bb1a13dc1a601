"""Figures: every kind rendered from a small store, optics parsing, heat-map layout, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from report_data import fill, optics_payload

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import find_candidates
from anisoscreen.report import figures
from anisoscreen.report.figures import FIGURE_KINDS, FIGURE_SIZES, make_figure, save_figure

TRAINING = [1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0, 2.6]


@pytest.fixture
def rows(memory_results):
    return find_candidates(fill(memory_results))


def png_size(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def with_static_tensors(rows):
    """The rows as if predicted with an ionic model (eps0 = eps_inf, so eps_total = 2 eps_inf)."""
    from anisoscreen.schemas import TensorPrediction

    static = []
    for row in rows:
        eps = row.prediction.eps_electronic
        total = TensorPrediction.from_members([[2 * v for v in line] for line in eps.tensor])
        fom = None if row.band_gap is None else row.band_gap * total.eps_poly
        update = {"eps_ionic": eps, "eps_total": total, "figure_of_merit": fom}
        static.append(
            row.model_copy(update={"prediction": row.prediction.model_copy(update=update)})
        )
    return static


@pytest.mark.parametrize("kind", list(FIGURE_KINDS))
def test_each_figure_renders_a_png_of_the_expected_size(rows, tmp_path, kind):
    if kind == "high-kappa":  # needs predictions of a model set with an ionic model
        rows = with_static_tensors(rows)
    fig = make_figure(kind, rows, training_ratios=TRAINING)
    path = save_figure(fig, tmp_path / f"{kind}.png", dpi=100)
    width, height = FIGURE_SIZES[kind]
    assert path.stat().st_size > 10_000
    assert png_size(path) == (round(width * 100), round(height * 100))


@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_vector_formats_are_written(rows, tmp_path, fmt, magic):
    path = save_figure(make_figure("parity", rows), tmp_path / f"parity.{fmt}")
    data = path.read_bytes()
    assert data.startswith(magic) and len(data) > 5_000


def test_high_kappa_needs_static_predictions_and_labels_the_best_fom(rows):
    from anisoscreen.errors import AnisoscreenError

    with pytest.raises(AnisoscreenError, match="ionic model"):
        make_figure("high-kappa", rows)
    static = with_static_tensors(rows)
    fig = make_figure("high-kappa", static)
    best = max(
        (r for r in static if r.figure_of_merit is not None), key=lambda r: r.figure_of_merit
    )
    assert best.formula in [t.get_text() for t in fig.axes[0].texts]
    assert fig.axes[0].get_yscale() == "log"


def test_figure_text_has_labels_and_units(rows):
    fig = make_figure("spectra", rows)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2  # the two candidates with optics
    assert axes[0].get_xlabel() == "Photon energy (eV)"
    assert "cm$^{-1}$" in axes[0].get_ylabel()
    assert "mp-1104369" in axes[0].get_title()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()][0].endswith("= 2.7)")
    parity = make_figure("parity", rows)
    assert parity.axes[1].get_xlabel() == "DFPT $a_r$"
    assert "n = 4" in parity.axes[0].texts[0].get_text()
    dims = make_figure("dimensionality", rows)
    assert [t.get_text() for t in dims.axes[0].get_xticklabels()] == ["0D", "1D", "2D", "3D"]


def test_dimensionality_means_are_drawn(rows):
    from matplotlib.collections import LineCollection

    fig = figures.plot_ar_by_dimensionality(rows)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    means = [float(c.get_segments()[0][0][1]) for c in lines]
    by_dim = {
        d: [r.prediction.anisotropy_ratio for r in rows if r.dimensionality == d] for d in range(4)
    }
    # Si has no dimensionality and is left out; one dashed mean line per class
    assert means == pytest.approx([np.mean(by_dim[d]) for d in range(4)])
    assert f"{np.mean(by_dim[2]):.2f}\n(n=3)" in [t.get_text() for t in ax.texts]
    dft = figures.plot_ar_by_dimensionality(rows, source="dft")
    assert "DFPT" in dft.axes[0].get_ylabel()
    dft_lines = [c for c in dft.axes[0].collections if isinstance(c, LineCollection)]
    assert len(dft_lines) == 3  # validated: 1D, 2D (two), 3D


def test_histogram_from_the_shared_training_data(rows, shared_dir, tmp_path):
    ratios = figures.training_anisotropy_ratios(shared=shared_dir)
    assert 2000 < ratios.size < 2890 and ratios.min() >= 1.0
    assert 1.1 < ratios.mean() < 1.4  # the paper: an average of 1.2
    fig = make_figure("histogram", rows, training_ratios=ratios)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[1].startswith("Validated candidates (n=4")
    assert png_size(save_figure(fig, tmp_path / "h.png", dpi=50)) == (250, 200)


def test_missing_data_gives_clear_errors(rows, tmp_path):
    unvalidated = [r for r in rows if not r.validated]
    with pytest.raises(AnisoscreenError, match="parity plots need DFPT results"):
        make_figure("parity", unvalidated)
    with pytest.raises(AnisoscreenError, match="no candidates with a frequency-dependent"):
        make_figure("spectra", unvalidated)
    with pytest.raises(AnisoscreenError, match="no validated candidates"):
        make_figure("histogram", unvalidated, training_ratios=TRAINING)
    with pytest.raises(AnisoscreenError, match="no predicted candidates"):
        make_figure("periodic-ar", [])
    with pytest.raises(AnisoscreenError, match="known dimensionality"):
        make_figure("dimensionality", [])
    with pytest.raises(AnisoscreenError, match="training data .* not found"):
        figures.training_anisotropy_ratios(tmp_path / "missing.json.gz")
    with pytest.raises(AnisoscreenError, match="figure format must be one of png, svg, pdf"):
        save_figure(make_figure("parity", rows), tmp_path / "x.jpg")


# -- optics ---------------------------------------------------------------------------------
def test_optics_spectrum_layouts():
    from anisoscreen.report.optics import optics_spectrum

    payload = optics_payload(n=5)
    spectrum = optics_spectrum(payload)
    assert spectrum.eps_imag.shape == (5, 3, 3) and spectrum.eps_real.shape == (5, 3, 3)
    row = payload["eps_imag"][2]
    assert np.allclose(np.diag(spectrum.eps_imag[2]), row[:3])
    tensors = optics_spectrum({"energy": [0, 1], "imag": np.eye(3)[None].repeat(2, 0).tolist()})
    assert tensors.eps_real is None and np.allclose(tensors.eps_imag[1], np.eye(3))
    voigt = optics_spectrum({"energies": [0, 1], "eps_imag": [[1, 2, 3, 4, 5, 6]] * 2})
    assert np.allclose(voigt.eps_imag[0], [[1, 4, 6], [4, 2, 5], [6, 5, 3]])
    with pytest.raises(AnisoscreenError, match="no frequency-dependent dielectric function"):
        optics_spectrum({})
    with pytest.raises(AnisoscreenError, match="unreadable optics data"):
        optics_spectrum({"energies": [0, 1, 2], "eps_imag": [[1, 2, 3]] * 2})


def test_absorption_coefficient_matches_the_textbook_formula():
    from anisoscreen.tensor import absorption_coefficient

    # n + i kappa = sqrt(eps): eps = (2 + 0.5i)^2 = 3.75 + 2i -> kappa = 0.5
    alpha = absorption_coefficient(np.array([2.0]), np.array([3.75]), np.array([2.0]))
    assert alpha[0] == pytest.approx(4 * np.pi * 0.5 * 2.0 / 1.239841984e-4, rel=1e-9)


# -- periodic table -------------------------------------------------------------------------
def test_element_positions():
    from anisoscreen.report.periodic_table import F_BLOCK_GAP, element_position, grid_positions

    assert element_position("H") == (1, 1)
    assert element_position("O") == (2, 16)
    assert element_position("Hf") == (6, 4)
    assert element_position("La") == (8 + F_BLOCK_GAP, 3)
    assert element_position("Lr") == (9 + F_BLOCK_GAP, 17)
    positions = grid_positions()
    assert len(positions) == 103 and len(set(positions.values())) == 103


def test_per_element_values():
    from anisoscreen.report.periodic_table import per_element_values

    elements = [["Mo", "S"], ["W", "S"], ["O"]]
    assert per_element_values(elements, [2.0, 4.0, None]) == {"Mo": 2.0, "S": 3.0, "W": 4.0}
    assert per_element_values(elements, None, "count") == {"Mo": 1.0, "S": 2.0, "W": 1.0, "O": 1.0}


def test_periodic_count_cap(rows):
    fig = figures.plot_periodic_heatmap(rows, "count", vmax=1)
    colourbar = fig.axes[-1]
    assert colourbar.get_ylabel() == "Number of candidates"
    cells = {t.get_text() for t in fig.axes[0].texts}
    assert {"O", "Lr", "3"} <= cells  # oxygen is in three candidates


# -- CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def app():
    import typer

    from anisoscreen.commands.report import register

    application = typer.Typer()
    register(application)
    return application


def invoke(app, *args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def plot(app, kind: str, data_dir, out, *extra: str):
    """``anisoscreen plot KIND`` on the embedded store in ``data_dir``, written to ``out``."""
    return invoke(
        app,
        "plot",
        kind,
        "--store",
        "embedded",
        "--data-dir",
        str(data_dir),
        "-o",
        str(out),
        *extra,
    )


@pytest.mark.parametrize("kind", ["dimensionality", "parity", "spectra", "periodic-count"])
def test_cli_plot(app, tmp_path, kind):
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    data_dir = tmp_path / "monty"
    with ResultsStore(get_settings(store="embedded", data_dir=data_dir)) as results:
        fill(results)
    out = tmp_path / f"{kind}.png"
    result = plot(app, kind, data_dir, out, "--dpi", "40")
    assert result.exit_code == 0, result.output
    width, height = FIGURE_SIZES[kind]
    assert png_size(out) == (round(width * 40), round(height * 40))


def test_cli_plot_histogram_with_training_file_and_filters(app, tmp_path, shared_dir):
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    data_dir = tmp_path / "monty"
    with ResultsStore(get_settings(store="embedded", data_dir=data_dir)) as results:
        fill(results)
    out = tmp_path / "hist.svg"
    training = str(shared_dir / "data" / "mp_dielectric_tensors.json.gz")
    result = plot(app, "histogram", data_dir, out, "-e", "O", "--training", training)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"<?xml")


def test_cli_plot_histogram_without_training_data_draws_the_candidates_alone(
    app, tmp_path, monkeypatch
):
    """A fresh install has no shared data: the figure is drawn, and says what it left out."""
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    monkeypatch.setenv("ANISOSCREEN_SHARED", str(tmp_path / "no-shared-data"))
    data_dir = tmp_path / "store"
    with ResultsStore(get_settings(store="embedded", data_dir=data_dir)) as results:
        fill(results)
    out = tmp_path / "hist.png"
    result = plot(app, "histogram", data_dir, out)
    assert result.exit_code == 0, result.output
    assert "drawing the validated candidates alone" in result.output
    assert png_size(out)[0] > 0
    # a training file the user names must exist
    missing = plot(app, "histogram", data_dir, out, "--training", str(tmp_path / "x.json.gz"))
    assert missing.exit_code != 0 and "not found" in str(missing.exception)
    fig = figures.plot_ar_histogram([2.0, 3.0], [])
    assert "training set not at hand" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "Validated candidates (n=2, mean 2.50)"
    ]


@pytest.mark.parametrize("kind", list(FIGURE_KINDS))
def test_cli_plot_on_empty_store_gives_a_clear_message(app, tmp_path, kind):
    result = plot(app, kind, tmp_path / "empty", tmp_path / "x.png")
    assert result.exit_code == 1
    assert isinstance(result.exception, AnisoscreenError)
    assert "no predictions in the store" in str(result.exception)
    assert not (tmp_path / "x.png").exists()


def test_cli_plot_rejects_unknown_kind_and_format(app, tmp_path):
    result = invoke(app, "plot", "pie", "--store", "embedded", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    result = plot(app, "parity", tmp_path, "x.gif")
    assert result.exit_code == 1 and "figure format must be one of" in str(result.exception)
