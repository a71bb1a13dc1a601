"""Figures of a screening, after Lou & Ganose (2025): Figs. 6, 7 and S3-S5, plus parity plots.

Every function takes :class:`anisoscreen.query.CandidateRow` objects (or plain values) and
returns a matplotlib ``Figure`` built without pyplot (no global state, Agg rendering), with
the fixed size of :data:`FIGURE_SIZES` and a constrained layout, so a file saved at ``dpi``
is exactly ``size * dpi`` pixels. :func:`save_figure` writes PNG, SVG or PDF.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import CandidateRow

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_DPI",
    "FIGURE_FORMATS",
    "FIGURE_KINDS",
    "FIGURE_SIZES",
    "experimental_parity",
    "make_figure",
    "plot_ar_by_dimensionality",
    "plot_ar_histogram",
    "plot_high_kappa",
    "plot_parity",
    "plot_periodic_heatmap",
    "plot_periodic_table",
    "plot_spectra",
    "save_figure",
    "training_anisotropy_ratios",
]

DEFAULT_DPI = 150
FIGURE_FORMATS = ("png", "svg", "pdf")

FIGURE_KINDS: dict[str, str] = {
    "dimensionality": "a_r by structural dimensionality (0D-3D) with class means (Fig. 6a)",
    "histogram": "a_r histogram: training set vs validated candidates (Fig. 6b)",
    "parity": "predicted vs DFPT eps_poly and a_r of validated candidates",
    "spectra": "absorption / eps_2 along the principal axes of candidates with optics (Fig. 7)",
    "periodic-eps": "mean predicted eps_poly per element (Fig. S3)",
    "periodic-ar": "mean predicted a_r per element (Fig. S4)",
    "periodic-count": "number of candidates containing each element (Fig. S5)",
    "high-kappa": "predicted static eps_poly vs band gap with FOM = E_g x eps_poly contours",
}
"""Figure kinds of ``anisoscreen plot KIND``."""

FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "dimensionality": (5.0, 4.0),
    "histogram": (5.0, 4.0),
    "parity": (9.0, 4.2),
    "spectra": (10.0, 6.0),
    "periodic-eps": (11.0, 6.0),
    "periodic-ar": (11.0, 6.0),
    "periodic-count": (11.0, 6.0),
    "high-kappa": (5.5, 4.2),
}
"""Figure size (inches) of each kind; the PNG is ``size * dpi`` pixels."""

AR_LABEL = r"Anisotropy ratio $a_r$"
EPS_LABEL = r"$\varepsilon_\infty^\mathrm{poly}$"
DIM_COLOURS = ("#7f3c8d", "#11a579", "#3969ac", "#f2b701")
AXIS_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")


def _figure(kind: str) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=FIGURE_SIZES[kind], layout="constrained")


def _finite(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return array[np.isfinite(array)]


# -- high-kappa map ------------------------------------------------------------------------------
def plot_high_kappa(rows: Sequence[CandidateRow], label_top: int = 5) -> Figure:
    """Predicted static eps_poly (log) against the band gap, with FOM contours.

    Needs predictions made with an ionic model; the ``label_top`` highest-FOM candidates
    are labelled with their formula.
    """
    points = [
        (row.band_gap, row.predicted_eps_total, row.figure_of_merit, row.formula)
        for row in rows
        if row.band_gap is not None and row.predicted_eps_total is not None
    ]
    if not points:
        raise AnisoscreenError(
            "no candidates with a predicted static tensor and a band gap; screen with an "
            "ionic model (--ionic-model)"
        )
    gap = np.array([p[0] for p in points])
    eps = np.array([p[1] for p in points])
    fig = _figure("high-kappa")
    ax = fig.add_subplot()
    ax.scatter(gap, eps, s=14, alpha=0.7, color="#3969ac", edgecolors="none")
    ax.set_yscale("log")
    x = np.linspace(max(gap.min(), 0.05), gap.max() * 1.05 + 0.1, 200)
    fom_values = np.array([p[2] for p in points if p[2] is not None])
    for level in np.quantile(fom_values, [0.5, 0.9, 0.99]) if fom_values.size else []:
        ax.plot(x, level / x, "--", color="0.6", linewidth=0.8)
        ax.annotate(f"FOM {level:.0f}", (x[-1], level / x[-1]), fontsize=7, color="0.4")
    for g, e, _, formula in sorted(points, key=lambda p: p[2] or 0.0, reverse=True)[:label_top]:
        ax.annotate(formula, (g, e), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_ylim(max(eps.min() / 1.5, 1.0), eps.max() * 1.5)
    ax.set_xlabel("Band gap $E_g$ (eV)")
    ax.set_ylabel(r"Predicted $\varepsilon^\mathrm{poly}$ (static)")
    return fig


# -- Fig. 6a ------------------------------------------------------------------------------------
def plot_ar_by_dimensionality(
    rows: Sequence[CandidateRow], source: str = "predicted", seed: int = 0
) -> Figure:
    """a_r of each material against its structural dimensionality, with class means.

    Parameters
    ----------
    rows
        Candidates; rows without a dimensionality are left out.
    source
        ``"predicted"`` (model a_r of every row) or ``"dft"`` (DFPT a_r of validated rows).
    seed
        Seed of the horizontal jitter.
    """
    if source not in ("predicted", "dft"):
        raise ValueError(f"source must be 'predicted' or 'dft', got {source!r}")
    points: dict[int, list[float]] = {d: [] for d in range(4)}
    for row in rows:
        value = (
            row.prediction.anisotropy_ratio if source == "predicted" else row.dft_anisotropy_ratio
        )
        if row.dimensionality is not None and value is not None and math.isfinite(value):
            points[row.dimensionality].append(value)
    if not any(points.values()):
        what = "predicted" if source == "predicted" else "DFPT-validated"
        raise AnisoscreenError(f"no {what} candidates with a known dimensionality to plot")
    fig = _figure("dimensionality")
    ax = fig.add_subplot()
    rng = np.random.default_rng(seed)
    for dim, values in points.items():
        if not values:
            continue
        x = dim + rng.uniform(-0.25, 0.25, len(values))
        ax.scatter(x, values, s=14, alpha=0.6, color=DIM_COLOURS[dim], edgecolors="none")
        mean = float(np.mean(values))
        ax.hlines(mean, dim - 0.4, dim + 0.4, colors="k", linestyles="--", linewidth=1.2)
        ax.annotate(f"{mean:.2f}\n(n={len(values)})", (dim + 0.42, mean), fontsize=7, va="center")
    ax.set_xticks(range(4), [f"{d}D" for d in range(4)])
    ax.set_xlim(-0.6, 3.9)
    ax.set_xlabel("Structural dimensionality")
    ax.set_ylabel(("Predicted" if source == "predicted" else "DFPT") + " anisotropy ratio $a_r$")
    ax.set_title("Anisotropy by dimensionality (dashed: class mean)", fontsize=10)
    return fig


# -- Fig. 6b ------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load_training_ratios(path: str, mtime: float) -> tuple[float, ...]:
    from anisoscreen import tensor as tmath
    from anisoscreen.model.training.dataset import clean_entries, load_entries

    kept, _ = clean_entries(load_entries(path, match_gaps=False))  # tensors only
    tensors = np.stack([entry.eps_electronic for entry in kept])
    eig = tmath.eigenvalues(tensors)
    eig = eig[eig[:, 0] > 0]
    return tuple((eig[:, -1] / eig[:, 0]).tolist())


def training_anisotropy_ratios(
    path: str | Path | None = None, shared: str | Path | None = None
) -> np.ndarray:
    """a_r of the cleaned MP training set (the paper's cleaning via ``model.dataset``).

    Parameters
    ----------
    path
        The ``mp_dielectric_tensors.json(.gz)`` file; default
        ``<shared>/data/mp_dielectric_tensors.json.gz``.
    shared
        Shared data folder (default: ``settings.shared``).
    """
    if path is None:
        if shared is None:
            from anisoscreen.settings import get_settings

            shared = get_settings().shared
        path = Path(shared) / "data" / "mp_dielectric_tensors.json.gz"
    path = Path(path)
    if not path.is_file():
        raise AnisoscreenError(f"training data {path} not found (set ANISOSCREEN_SHARED?)")
    return np.asarray(_load_training_ratios(str(path.resolve()), path.stat().st_mtime))


def plot_ar_histogram(
    candidate_ratios: Sequence[float | None],
    training_ratios: Sequence[float] | np.ndarray,
    bins: int = 30,
    density: bool = True,
) -> Figure:
    """Histogram of a_r: training set against validated candidates (DFPT a_r).

    Without training ratios (an empty sequence: the training data is not at hand) only the
    candidates are drawn, and the title says so.
    """
    candidates = _finite(candidate_ratios)
    training = _finite(training_ratios)
    if candidates.size == 0:
        raise AnisoscreenError("no validated candidates with a DFPT anisotropy ratio to plot")
    high = max(float(candidates.max()), float(training.max()) if training.size else 1.0)
    edges = np.linspace(1.0, max(high, 1.5), bins + 1).tolist()
    fig = _figure("histogram")
    ax = fig.add_subplot()
    if training.size:
        ax.hist(
            training,
            bins=edges,
            density=density,
            alpha=0.55,
            color="#7f7f7f",
            label=f"Training set (n={training.size}, mean {training.mean():.2f})",
        )
    ax.hist(
        candidates,
        bins=edges,
        density=density,
        alpha=0.7,
        color="#d62728",
        label=f"Validated candidates (n={candidates.size}, mean {candidates.mean():.2f})",
    )
    ax.set_xlabel(AR_LABEL)
    ax.set_ylabel("Probability density" if density else "Number of materials")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(
        "Anisotropy ratio: training set vs candidates"
        if training.size
        else "Anisotropy ratio of validated candidates (training set not at hand)",
        fontsize=10,
    )
    return fig


# -- parity ---------------------------------------------------------------------------------
_PARITY = {
    "eps_poly": (EPS_LABEL, lambda r: r.dft_eps_poly, lambda r: r.prediction.eps_poly),
    "ar": (r"$a_r$", lambda r: r.dft_anisotropy_ratio, lambda r: r.prediction.anisotropy_ratio),
}


def plot_parity(
    rows: Sequence[CandidateRow],
    quantities: Sequence[str] = ("eps_poly", "ar"),
    include_training: bool = False,
) -> Figure:
    """Predicted against DFPT values (one panel per quantity) with the y = x line and MAE.

    Materials in a model's training split are left out unless ``include_training``: a model
    scored on its own training data would look better than it is.
    """
    validated = [row for row in rows if row.validated]
    if not validated:
        raise AnisoscreenError("no validated candidates: parity plots need DFPT results")
    if not include_training:
        validated = [row for row in validated if not row.in_training_split]
        if not validated:
            raise AnisoscreenError(
                "every validated candidate was in the model's training split; parity plots "
                "leave those out (add --include-training to draw them anyway)"
            )
    unknown = [q for q in quantities if q not in _PARITY]
    if unknown or not quantities:
        raise AnisoscreenError(f"parity quantities must be among {', '.join(_PARITY)}")
    panels = {}
    for quantity in quantities:
        label, dft, predicted = _PARITY[quantity]
        panels[label] = (
            np.array([dft(r) for r in validated], dtype=float),
            np.array([predicted(r) for r in validated], dtype=float),
        )
    title = (
        "Predicted vs DFPT (validated candidates"
        + ("" if include_training else ", training split left out")
        + ")"
    )
    return plot_parity_values(panels, title)


def plot_parity_values(
    panels: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    reference: str = "DFPT",
    log_scale: bool = False,
) -> Figure:
    """Parity panels from ``{label: (reference values, predicted values)}``.

    ``log_scale`` draws log-log axes (for heavy-tailed ionic and static tensors); only
    points positive on both axes are drawn there, and the MAE is over those points.
    """
    fig = _figure("parity")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, (x, y)) in zip(axes, panels.items(), strict=True):
        ok = np.isfinite(x) & np.isfinite(y)
        if log_scale:
            ok &= (x > 0) & (y > 0)
        x, y = x[ok], y[ok]
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        if log_scale:
            low, high = low / 1.2, high * 1.2
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            pad = 0.05 * max(high - low, 0.5)
            low, high = low - pad, high + pad
        ax.plot([low, high], [low, high], "k--", linewidth=1)
        ax.scatter(x, y, s=20, alpha=0.75, color="#3969ac", edgecolors="none")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(f"{reference} {label}")
        ax.set_ylabel(f"Predicted {label}")
        mae = float(np.mean(np.abs(y - x)))
        ax.text(
            0.04,
            0.96,
            f"MAE = {mae:.3f}\nn = {x.size}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
    fig.suptitle(title, fontsize=10)
    return fig


def parity_from_arrays(
    predicted: np.ndarray,
    reference: np.ndarray,
    path: str | Path,
    label: str = "DFPT",
    log_scale: bool = False,
) -> Path:
    """Write eps_poly and a_r parity plots of predicted vs reference tensors (n, 3, 3)."""
    from anisoscreen import tensor as tmath

    def ratio(tensors: np.ndarray) -> np.ndarray:  # tolerant of a poor model's eigenvalues
        eig = tmath.eigenvalues(tensors)
        return eig[:, -1] / np.clip(eig[:, 0], 1e-6, None)

    panels = {
        _PARITY["eps_poly"][0]: (
            np.asarray(tmath.polycrystalline_average(reference)),
            np.asarray(tmath.polycrystalline_average(predicted)),
        ),
        _PARITY["ar"][0]: (ratio(reference), ratio(predicted)),
    }
    figure = plot_parity_values(
        panels, f"Predicted vs {label}", reference=label, log_scale=log_scale
    )
    return save_figure(figure, path)


def experimental_parity(rows: Sequence[dict], path: str | Path) -> Path:
    """Model and MP DFPT refractive indices against experiment (``evaluate --experimental``).

    One panel per source; every principal index of every crystal is a point, layered crystals
    filled orange, the others blue; MAE and n in the corner.
    """
    fig = _figure("parity")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, (source, name) in zip(axes, (("model", "Model"), ("dft", "MP DFPT")), strict=True):
        points = [
            (value, r[source]["n"][axis], r["layered"])
            for r in rows
            if r[source] is not None
            for axis, value in r["experiment"]["n"].items()
        ]
        if not points:
            ax.set_visible(False)
            continue
        x = np.array([p[0] for p in points])
        y = np.array([p[1] for p in points])
        layered = np.array([p[2] for p in points])
        low, high = float(min(x.min(), y.min())) - 0.1, float(max(x.max(), y.max())) + 0.1
        ax.plot([low, high], [low, high], "k--", linewidth=1)
        ax.scatter(x[~layered], y[~layered], s=20, color="#3969ac", label="not layered")
        ax.scatter(x[layered], y[layered], s=20, color="#f2b701", label="layered")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("measured n (refractiveindex.info)")
        ax.set_ylabel(f"{name} n = √λ(ε∞)")
        mae = float(np.mean(np.abs(y - x)))
        ax.text(0.04, 0.96, f"MAE = {mae:.3f}\nn = {x.size} indices", transform=ax.transAxes,
                va="top", fontsize=8)  # fmt: skip
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("Principal refractive indices against experiment", fontsize=10)
    return save_figure(fig, path)


# -- Fig. 7 ---------------------------------------------------------------------------------------
def plot_spectra(
    rows: Sequence[CandidateRow],
    quantity: str = "auto",
    max_materials: int = 6,
    max_energy: float | None = None,
) -> Figure:
    """Absorption coefficient (or eps_2) along the principal axes of each candidate's tensor.

    The frequency-dependent tensor is projected on the eigenvectors of the DFPT eps_inf (of
    the real part at the lowest energy when there is no DFPT tensor), so each curve is the
    response polarised along one principal axis.

    Parameters
    ----------
    rows
        Candidates; those without optics data are skipped.
    quantity
        ``"absorption"`` (cm^-1, needs ``eps_real``), ``"eps_imag"`` or ``"auto"`` (absorption
        when every spectrum has a real part).
    max_materials
        At most this many panels (the first rows, in the given order).
    max_energy
        Upper energy limit (eV) of the plot.
    """
    from anisoscreen.report.optics import optics_spectrum, principal_axes, project
    from anisoscreen.tensor import absorption_coefficient

    chosen = [row for row in rows if row.optics_validation is not None][:max_materials]
    if not chosen:
        raise AnisoscreenError(
            "no candidates with a frequency-dependent dielectric function (optics)"
        )
    spectra = [optics_spectrum(row.optics_validation) for row in chosen]
    if quantity == "auto":
        quantity = "absorption" if all(s.eps_real is not None for s in spectra) else "eps_imag"
    if quantity not in ("absorption", "eps_imag"):
        raise AnisoscreenError(
            f"spectrum quantity must be 'absorption' or 'eps_imag', got {quantity!r}"
        )
    fig = _figure("spectra")
    ncols = min(3, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, row, spectrum in zip(axes, chosen, spectra, strict=False):
        reference = row.dft_tensor
        if reference is None:
            base = spectrum.eps_real if spectrum.eps_real is not None else spectrum.eps_imag
            reference = base[0]
        eigvals, vectors = principal_axes(reference)
        imag = project(spectrum.eps_imag, vectors)
        if quantity == "absorption":
            if spectrum.eps_real is None:
                raise AnisoscreenError(
                    f"{row.material_id}: absorption needs eps_real; use eps_imag"
                )
            values = absorption_coefficient(
                spectrum.energies, project(spectrum.eps_real, vectors), imag
            )
        else:
            values = imag
        for k in range(3):
            ax.plot(
                spectrum.energies,
                values[:, k],
                color=AXIS_COLOURS[k],
                linewidth=1.3,
                label=rf"axis {k + 1} ($\varepsilon_\infty$ = {eigvals[k]:.1f})",
            )
        ax.set_title(f"{_mathtext_formula(row.formula)} ({row.material_id})", fontsize=9)
        ax.set_xlabel("Photon energy (eV)")
        ax.set_ylabel(
            r"Absorption $\alpha$ (cm$^{-1}$)" if quantity == "absorption" else r"$\varepsilon_2$"
        )
        if quantity == "absorption":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        if max_energy is not None:
            ax.set_xlim(right=max_energy)
        ax.set_xlim(left=float(spectrum.energies[0]))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    return fig


def _mathtext_formula(formula: str) -> str:
    import re

    return re.sub(r"(\d+(?:\.\d+)?)", r"$_{\1}$", formula)


# -- Figs. S3-S5 ----------------------------------------------------------------------------------
def plot_periodic_table(
    values: Mapping[str, float],
    label: str,
    title: str = "",
    vmax: float | None = None,
    vmin: float | None = None,
    cmap: str = "viridis",
    kind: str = "periodic-eps",
    decimals: int = 2,
) -> Figure:
    """A periodic-table heat map of one value per element (grey: no data).

    Parameters
    ----------
    values
        Value per element symbol.
    label
        Colour-bar label (with units).
    vmax, vmin
        Colour-scale limits; values above ``vmax`` are drawn in the top colour (the
        paper caps the oxygen count this way).
    kind
        Figure kind, for the figure size.
    decimals
        Decimals of the value printed under each symbol.
    """
    import matplotlib as mpl
    from matplotlib.patches import Rectangle

    from anisoscreen.report.periodic_table import grid_positions

    if not values:
        raise AnisoscreenError("no per-element values to plot")
    data = np.array(list(values.values()), dtype=float)
    vmin = float(np.min(data)) if vmin is None else vmin
    vmax = float(np.max(data)) if vmax is None else vmax
    if vmax <= vmin:
        vmax = vmin + 1.0
    norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    colours = mpl.colormaps[cmap]
    fig = _figure(kind)
    ax = fig.add_subplot()
    for symbol, (row, col) in grid_positions().items():
        value = values.get(symbol)
        face = "#e6e6e6" if value is None else colours(norm(value))
        ax.add_patch(
            Rectangle((col - 0.5, row - 0.5), 0.95, 0.95, facecolor=face, edgecolor="white")
        )
        dark = value is not None and sum(colours(norm(value))[:3]) < 1.5
        ink = "white" if dark else "black"
        ax.text(
            col - 0.03,
            row - 0.12,
            symbol,
            ha="center",
            va="center",
            fontsize=8,
            color=ink,
            fontweight="bold",
        )
        if value is not None:
            ax.text(
                col - 0.03,
                row + 0.22,
                f"{value:.{decimals}f}",
                ha="center",
                va="center",
                fontsize=5,
                color=ink,
            )
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(10.1, 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=colours)
    extend = "max" if float(np.max(data)) > vmax else "neither"
    fig.colorbar(mappable, ax=ax, label=label, shrink=0.6, extend=extend, pad=0.01)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def plot_periodic_heatmap(
    rows: Sequence[CandidateRow], quantity: str = "eps_poly", vmax: float | None = None
) -> Figure:
    """Per-element heat map of the mean predicted eps_poly or a_r, or of the candidate count."""
    from anisoscreen.report.periodic_table import per_element_values

    if not rows:
        raise AnisoscreenError("no predicted candidates to map on the periodic table")
    elements = [row.elements for row in rows]
    if quantity == "eps_poly":
        values = per_element_values(elements, [r.prediction.eps_poly for r in rows], "mean")
        return plot_periodic_table(
            values,
            f"Mean predicted {EPS_LABEL}",
            f"Mean predicted {EPS_LABEL} per element ({len(rows)} materials)",
            vmax=vmax,
            kind="periodic-eps",
        )
    if quantity == "ar":
        values = per_element_values(elements, [r.prediction.anisotropy_ratio for r in rows], "mean")
        return plot_periodic_table(
            values,
            r"Mean predicted $a_r$",
            r"Mean predicted $a_r$ per element "
            f"({len(rows)} materials)",
            vmax=vmax,
            kind="periodic-ar",
        )
    if quantity == "count":
        values = per_element_values(elements, None, "count")
        return plot_periodic_table(
            values,
            "Number of candidates",
            f"Candidates containing each element ({len(rows)} materials)",
            vmax=vmax,
            vmin=0.0,
            kind="periodic-count",
            decimals=0,
        )
    raise AnisoscreenError(
        f"periodic-table quantity must be eps_poly, ar or count, got {quantity!r}"
    )


_PERIODIC = {"periodic-eps": "eps_poly", "periodic-ar": "ar", "periodic-count": "count"}


# -- dispatch and output --------------------------------------------------------------------------
def make_figure(
    kind: str,
    rows: Sequence[CandidateRow],
    *,
    training_ratios: Sequence[float] | np.ndarray | None = None,
    source: str = "predicted",
    vmax: float | None = None,
    quantity: str = "auto",
    max_materials: int = 6,
    include_training: bool = False,
) -> Figure:
    """Build the figure of ``kind`` (a key of :data:`FIGURE_KINDS`) from rows.

    ``training_ratios`` is read from the shared training data when not given (histogram);
    ``include_training`` keeps training-split materials in the parity plot.
    """
    if kind == "dimensionality":
        return plot_ar_by_dimensionality(rows, source=source)
    if kind == "histogram":
        validated = [row.dft_anisotropy_ratio for row in rows if row.validated]
        if not validated:
            raise AnisoscreenError("no validated candidates with a DFPT anisotropy ratio to plot")
        if training_ratios is None:
            training_ratios = training_anisotropy_ratios()
        return plot_ar_histogram(validated, training_ratios)
    if kind == "parity":
        return plot_parity(rows, include_training=include_training)
    if kind == "spectra":
        return plot_spectra(rows, quantity=quantity, max_materials=max_materials)
    if kind in _PERIODIC:
        return plot_periodic_heatmap(rows, _PERIODIC[kind], vmax)
    if kind == "high-kappa":
        return plot_high_kappa(rows)
    raise AnisoscreenError(f"unknown figure kind {kind!r}; choose from {', '.join(FIGURE_KINDS)}")


def figure_format(path: str | Path, fmt: str | None = None) -> str:
    """Output format from ``fmt`` or the file suffix (png, svg, pdf)."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FIGURE_FORMATS:
        raise AnisoscreenError(
            f"figure format must be one of {', '.join(FIGURE_FORMATS)} (got {fmt or path!s})"
        )
    return fmt


def save_figure(
    fig: Figure, path: str | Path, fmt: str | None = None, dpi: int = DEFAULT_DPI
) -> Path:
    """Write ``fig`` to ``path`` as PNG, SVG or PDF (format from the suffix unless ``fmt``)."""
    path = Path(path)
    fmt = figure_format(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None} if fmt == "png" else None
    fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
    return path
