"""Candidate tables in the layout of the reference paper's Table S1.

The base columns are Material ID, Formula, the dielectric tensor (3x3, one decimal) and the
anisotropy ratio (two decimals). The tensor and a_r are the DFPT values for validated rows; a
row without a completed DFPT validation shows the model's prediction and is marked
``predicted`` in a *Source* column (added whenever such rows are present; always in CSV).
Optional columns (:data:`OPTIONAL_COLUMNS`) add the predicted tensor and a_r next to the
DFPT ones, the structural dimensionality, the energy above hull, the band gap and eps_poly.
With ``static`` or ``fom``, an *eps0 Method* column says where each row's predicted ionic and
static values come from: ``physics`` or ``direct`` (the ionic refine stage), ``network`` (the
prediction's ionic model); see :attr:`anisoscreen.query.CandidateRow.ionic_method`.

Formats: CSV (one column per tensor component), Markdown, LaTeX (booktabs, tensors as
``bmatrix``, formulas with subscripts; needs ``booktabs`` and ``amsmath``) and HTML.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import CandidateRow

__all__ = [
    "OPTIONAL_COLUMNS",
    "TABLE_FORMATS",
    "format_from_path",
    "html_formula",
    "latex_formula",
    "parse_columns",
    "render_table",
    "write_table",
]

TABLE_FORMATS: dict[str, str] = {"csv": ".csv", "markdown": ".md", "latex": ".tex", "html": ".html"}
"""Table formats and their file suffixes."""

_SUFFIXES = {
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
    ".tex": "latex",
    ".html": "html",
    ".htm": "html",
}

OPTIONAL_COLUMNS: dict[str, str] = {
    "predicted": "predicted tensor and a_r next to the DFPT ones",
    "dimensionality": "structural dimensionality (0D-3D)",
    "e_hull": "energy above hull (eV/atom)",
    "band_gap": "band gap (eV)",
    "eps_poly": "polycrystalline eps_inf (DFPT when validated; predicted too with 'predicted')",
    "static": "DFPT ionic and static (total) tensors beside the predicted ones (ionic model; "
    "refined where refined, with the eps0 method)",
    "fom": "predicted static eps_poly and the high-kappa FOM = E_g x eps_poly(total) "
    "(refined where refined, with the eps0 method)",
    "optics": "principal refractive indices, birefringence and optical character "
    "(DFPT when validated)",
    "symmetry": "space group (symbol and number)",
}
"""Optional columns, in the order they are added."""

_COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")
DEFAULT_CAPTION = (
    "Candidates with their DFPT high-frequency dielectric tensors and anisotropy ratios, "
    "sorted by anisotropy ratio."
)


@dataclass(frozen=True)
class _Column:
    """One table column: headers per format, a value getter and how to print it."""

    key: str
    text: str
    latex: str
    kind: str  # "text" | "formula" | "tensor" | "float" | "dim"
    get: Callable[[CandidateRow], Any]
    decimals: int = 2
    align: str = "l"


def parse_columns(values: Sequence[str] | str | None) -> list[str]:
    """Optional column names from a list and/or comma-separated strings (``all`` for every one)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values:
        for token in value.replace(",", " ").split():
            token = token.strip().lower().replace("-", "_")
            if token == "all":
                names.extend(OPTIONAL_COLUMNS)
                continue
            if token not in OPTIONAL_COLUMNS:
                raise AnisoscreenError(
                    f"unknown table column {token!r}; "
                    f"choose from {', '.join(OPTIONAL_COLUMNS)}, all"
                )
            names.append(token)
    return [name for name in OPTIONAL_COLUMNS if name in names]


def _source(row: CandidateRow) -> str:
    return "DFPT" if row.validated else "predicted"


def _columns(
    extra: Sequence[str], with_source: bool, tensor_decimals: int, ratio_decimals: int
) -> list[_Column]:
    cols = [
        _Column("material_id", "Material ID", "Material ID", "text", lambda r: r.material_id),
        _Column("formula", "Formula", "Formula", "formula", lambda r: r.formula),
    ]
    if with_source:
        cols.append(_Column("source", "Source", "Source", "text", _source))
    cols += [
        _Column(
            "eps",
            "Dielectric Tensor",
            "Dielectric Tensor",
            "tensor",
            lambda r: r.tensor,
            tensor_decimals,
            "c",
        ),
        _Column(
            "anisotropy_ratio",
            "Anisotropy Ratio",
            "Anisotropy Ratio",
            "float",
            lambda r: r.anisotropy_ratio,
            ratio_decimals,
            "r",
        ),
    ]
    if "predicted" in extra:
        cols += [
            _Column(
                "predicted_eps",
                "Predicted Tensor",
                "Predicted Tensor",
                "tensor",
                lambda r: r.prediction.dielectric_tensor,
                tensor_decimals,
                "c",
            ),
            _Column(
                "predicted_anisotropy_ratio",
                "Predicted a_r",
                "Predicted $a_r$",
                "float",
                lambda r: r.prediction.anisotropy_ratio,
                ratio_decimals,
                "r",
            ),
        ]
    if "dimensionality" in extra:
        cols.append(
            _Column(
                "dimensionality",
                "Dimensionality",
                "Dim.",
                "dim",
                lambda r: r.dimensionality,
                0,
                "c",
            )
        )
    if "e_hull" in extra:
        cols.append(
            _Column(
                "energy_above_hull",
                "E_hull (eV/atom)",
                r"$E_\mathrm{hull}$ (eV/atom)",
                "float",
                lambda r: r.energy_above_hull,
                3,
                "r",
            )
        )
    if "band_gap" in extra:
        cols.append(
            _Column(
                "band_gap", "Band Gap (eV)", "Band Gap (eV)", "float", lambda r: r.band_gap, 2, "r"
            )
        )
    if "eps_poly" in extra:
        cols.append(
            _Column(
                "eps_poly",
                "ε_poly",
                r"$\varepsilon_\infty^\mathrm{poly}$",
                "float",
                lambda r: r.eps_poly,
                2,
                "r",
            )
        )
        if "predicted" in extra:
            cols.append(
                _Column(
                    "predicted_eps_poly",
                    "Predicted ε_poly",
                    r"Predicted $\varepsilon_\infty^\mathrm{poly}$",
                    "float",
                    lambda r: r.prediction.eps_poly,
                    2,
                    "r",
                )
            )
    if "static" in extra or "fom" in extra:
        cols.append(
            _Column(
                "ionic_method",
                "ε⁰ Method",
                r"$\varepsilon^0$ Method",
                "text",
                lambda r: r.ionic_method or "",
            )
        )
    if "static" in extra:
        for key, text, latex, getter in (
            ("dft_eps_ionic", "DFPT Ionic Tensor", r"DFPT $\varepsilon^0$",
             lambda r: r.dft_ionic_tensor),
            ("predicted_eps_ionic", "Predicted Ionic Tensor", r"Predicted $\varepsilon^0$",
             lambda r: r.ionic_tensor.tensor if r.ionic_tensor else None),
            ("dft_eps_total", "DFPT Static Tensor", r"DFPT $\varepsilon$",
             lambda r: r.dft_total_tensor),
            ("predicted_eps_total", "Predicted Static Tensor", r"Predicted $\varepsilon$",
             lambda r: r.total_tensor.tensor if r.total_tensor else None),
        ):  # fmt: skip
            cols.append(_Column(key, text, latex, "tensor", getter, tensor_decimals, "c"))
    if "fom" in extra:
        cols += [
            _Column(
                "predicted_eps_total_poly",
                "Predicted ε_poly (static)",
                r"Predicted $\varepsilon^\mathrm{poly}$",
                "float",
                lambda r: r.predicted_eps_total,
                2,
                "r",
            ),
            _Column(
                "figure_of_merit",
                "FOM (eV)",
                r"FOM (eV)",
                "float",
                lambda r: r.figure_of_merit,
                2,
                "r",
            ),
        ]
    if "optics" in extra:
        for i, name in enumerate(("alpha", "beta", "gamma")):
            cols.append(
                _Column(
                    f"n_{name}",
                    f"n_{name}",
                    rf"$n_\{name}$",
                    "float",
                    _index_getter(i),
                    3,
                    "r",
                )
            )
        cols += [
            _Column(
                "birefringence", "Δn", r"$\Delta n$", "float", lambda r: r.birefringence, 3, "r"
            ),
            _Column(
                "optical_character",
                "Optical Character",
                "Optical Character",
                "text",
                lambda r: r.optical_character or "",
            ),
        ]
    if "symmetry" in extra:
        cols.append(
            _Column(
                "space_group",
                "Space Group",
                "Space Group",
                "text",
                lambda r: _space_group(
                    r.prediction.space_group_symbol, r.prediction.space_group_number
                ),
            )
        )
    return cols


def _index_getter(i: int) -> Callable[[CandidateRow], float | None]:
    def get(row: CandidateRow) -> float | None:
        indices = row.refractive_indices
        return indices[i] if indices else None

    return get


def _space_group(symbol: str | None, number: int | None) -> str:
    if symbol is None:
        return ""
    return symbol if number is None else f"{symbol} ({number})"


# -- value formatting -------------------------------------------------------------------------
def _number(value: float | None, decimals: int, missing: str) -> str:
    if value is None or not np.isfinite(value):
        return missing
    text = f"{value:.{decimals}f}"
    if float(text) == 0.0:  # no "-0.0"
        text = f"{0.0:.{decimals}f}"
    return text


def _tensor_strings(tensor: Any, decimals: int) -> list[list[str]]:
    if tensor is None:  # e.g. no ionic tensor for this row
        return [["", "", ""] for _ in range(3)]
    array = np.asarray(tensor, dtype=float).reshape(3, 3)
    return [[_number(v, decimals, "") for v in line] for line in array]


def _dim(value: int | None, missing: str) -> str:
    return missing if value is None else f"{int(value)}D"


_FORMULA_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def latex_formula(formula: str) -> str:
    r"""``NaV2O4`` -> ``$\rm NaV_2O_4$`` (multi-digit counts in braces), as in Table S1."""
    body = _FORMULA_NUMBER.sub(
        lambda m: "_" + (m.group(1) if len(m.group(1)) == 1 else f"{{{m.group(1)}}}"), formula
    )
    return rf"$\rm {body}$"


def html_formula(formula: str) -> str:
    """``NaV2O4`` -> ``NaV<sub>2</sub>O<sub>4</sub>`` (HTML-escaped)."""
    return _FORMULA_NUMBER.sub(r"<sub>\1</sub>", html.escape(formula))


# -- renderers -----------------------------------------------------------------------------------
def _render_csv(rows: Sequence[CandidateRow], cols: list[_Column]) -> str:
    header: list[str] = []
    for col in cols:
        if col.kind == "tensor":
            header += [f"{col.key}_{c}" for c in _COMPONENTS]
        else:
            header.append(col.key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line: list[str] = []
        for col in cols:
            value = col.get(row)
            if col.kind == "tensor":
                line += [v for part in _tensor_strings(value, col.decimals) for v in part]
            elif col.kind == "float":
                line.append(_number(value, col.decimals, ""))
            elif col.kind == "dim":
                line.append("" if value is None else str(int(value)))
            else:
                line.append(str(value))
        writer.writerow(line)
    return buffer.getvalue()


def _cell_text(col: _Column, value: Any, missing: str = "—") -> str:
    if col.kind == "tensor" and value is None:
        return missing
    if col.kind == "tensor":
        return (
            "[" + "; ".join(" ".join(line) for line in _tensor_strings(value, col.decimals)) + "]"
        )
    if col.kind == "float":
        return _number(value, col.decimals, missing)
    if col.kind == "dim":
        return _dim(value, missing)
    return str(value)


def _render_markdown(rows: Sequence[CandidateRow], cols: list[_Column], note: str | None) -> str:
    def escape(text: str) -> str:
        return text.replace("|", r"\|")

    lines = ["| " + " | ".join(col.text for col in cols) + " |"]
    marks = {"l": ":---", "c": ":---:", "r": "---:"}
    lines.append("| " + " | ".join(marks[col.align] for col in cols) + " |")
    for row in rows:
        lines.append("| " + " | ".join(escape(_cell_text(c, c.get(row))) for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    return text + (f"\n{note}\n" if note else "")


def _latex_cell(col: _Column, value: Any) -> str:
    if col.kind == "tensor" and value is None:
        return "--"
    if col.kind == "tensor":
        body = r" \\ ".join(" & ".join(line) for line in _tensor_strings(value, col.decimals))
        return rf"$\begin{{bmatrix}} {body} \end{{bmatrix}}$"
    if col.kind == "formula":
        return latex_formula(value)
    if col.kind == "float":
        return _number(value, col.decimals, "--")
    if col.kind == "dim":
        return _dim(value, "--")
    return _latex_escape(str(value))


def _latex_escape(text: str) -> str:
    specials = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}"}
    return "".join(specials.get(ch, ch) for ch in text)


def _render_latex(
    rows: Sequence[CandidateRow], cols: list[_Column], caption: str, note: str | None, label: str
) -> str:
    lines = [
        "% requires \\usepackage{booktabs} and \\usepackage{amsmath}",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{" + "".join(col.align for col in cols) + "}",
        r"\toprule",
        " & ".join(col.latex for col in cols) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        lines.append(" & ".join(_latex_cell(c, c.get(row)) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if note:
        lines.append(r"\par\smallskip\footnotesize " + _latex_escape(note))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _html_cell(col: _Column, value: Any) -> str:
    if col.kind == "tensor" and value is None:
        return "—"
    if col.kind == "tensor":
        body = "".join(
            "<tr>" + "".join(f"<td>{v}</td>" for v in line) + "</tr>"
            for line in _tensor_strings(value, col.decimals)
        )
        return f'<table class="tensor">{body}</table>'
    if col.kind == "formula":
        return html_formula(value)
    return html.escape(_cell_text(col, value))


def _render_html(
    rows: Sequence[CandidateRow], cols: list[_Column], caption: str, note: str | None
) -> str:
    align = {"l": "left", "c": "center", "r": "right"}
    lines = ['<table class="anisoscreen-candidates">', f"<caption>{html.escape(caption)}</caption>"]
    lines.append("<thead>")
    lines.append(
        "<tr>"
        + "".join(
            f'<th style="text-align: {align[c.align]}">{html.escape(c.text)}</th>' for c in cols
        )
        + "</tr>"
    )
    lines += ["</thead>", "<tbody>"]
    for row in rows:
        klass = "validated" if row.validated else "predicted"
        cells = "".join(
            f'<td style="text-align: {align[c.align]}">{_html_cell(c, c.get(row))}</td>'
            for c in cols
        )
        lines.append(f'<tr class="{klass}">{cells}</tr>')
    lines.append("</tbody>")
    if note:
        lines.append(f'<tfoot><tr><td colspan="{len(cols)}">{html.escape(note)}</td></tr></tfoot>')
    lines.append("</table>")
    return "\n".join(lines) + "\n"


def _prediction_note(rows: Sequence[CandidateRow]) -> str | None:
    predicted = [row for row in rows if not row.validated]
    if not predicted:
        return None
    models = ", ".join(sorted({row.model for row in predicted}))
    return (
        f"Rows marked 'predicted' ({len(predicted)} of {len(rows)}) show the prediction of "
        f"{models}; they have no DFPT validation yet."
    )


def render_table(
    rows: Sequence[CandidateRow],
    fmt: str = "markdown",
    columns: Sequence[str] = (),
    *,
    caption: str = DEFAULT_CAPTION,
    label: str = "tab:candidates",
    tensor_decimals: int = 1,
    ratio_decimals: int = 2,
) -> str:
    """Render candidate rows (already filtered and sorted) as a table.

    Parameters
    ----------
    rows
        Rows from :func:`anisoscreen.query.find_candidates`, in the order to print.
    fmt
        One of :data:`TABLE_FORMATS` (``csv``, ``markdown``, ``latex``, ``html``).
    columns
        Optional columns (keys of :data:`OPTIONAL_COLUMNS`).
    caption, label
        Caption (LaTeX, HTML) and LaTeX label.
    tensor_decimals, ratio_decimals
        Decimals of tensor components (Table S1: 1) and anisotropy ratios (Table S1: 2).

    Raises
    ------
    AnisoscreenError
        For an empty ``rows``, an unknown format or column.
    """
    if not rows:
        raise AnisoscreenError("no candidates to tabulate")
    fmt = fmt.lower()
    if fmt not in TABLE_FORMATS:
        raise AnisoscreenError(
            f"unknown table format {fmt!r}; choose from {', '.join(TABLE_FORMATS)}"
        )
    extra = parse_columns(list(columns))
    mixed = any(not row.validated for row in rows)
    cols = _columns(extra, mixed or fmt == "csv", tensor_decimals, ratio_decimals)
    note = _prediction_note(rows)
    if fmt == "csv":
        return _render_csv(rows, cols)
    if fmt == "markdown":
        return _render_markdown(rows, cols, note)
    if fmt == "latex":
        return _render_latex(rows, cols, caption, note, label)
    return _render_html(rows, cols, caption, note)


def format_from_path(path: str | Path) -> str:
    """Table format implied by a file suffix (``.csv``, ``.md``, ``.tex``, ``.html``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise AnisoscreenError(
            f"cannot tell the table format of {path}; use a suffix among "
            f"{', '.join(sorted(_SUFFIXES))} or give --format"
        )
    return _SUFFIXES[suffix]


def write_table(
    rows: Sequence[CandidateRow], path: str | Path, fmt: str | None = None, **options: Any
) -> Path:
    """Render rows and write them to ``path`` (format from the suffix unless ``fmt``)."""
    path = Path(path)
    text = render_table(rows, fmt or format_from_path(path), **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
