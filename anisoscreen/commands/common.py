"""Pieces every command shares: consoles, settings from flags, store and filter options.

Kept apart from ``cli.py`` so that command modules never import the app they register into.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = [
    "ArMaxOption",
    "ArMinOption",
    "DataDirOption",
    "DescendingOption",
    "DimensionalityOption",
    "ElementsOption",
    "EpsTotalMinOption",
    "ExcludeElementsOption",
    "FomMinOption",
    "LimitOption",
    "ModelOption",
    "SortOption",
    "StoreOption",
    "build_query",
    "console",
    "err_console",
    "settings_from_options",
]

console = Console()
err_console = Console(stderr=True)


def settings_from_options(store: str | None = None, data_dir: Path | None = None, **extra):
    """Settings with CLI flags taking precedence over environment and config file."""
    from anisoscreen.settings import get_settings

    return get_settings(store=store, data_dir=data_dir, **extra)


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Results store: 'monty' (embedded, default), 'memory', a mongodb:// URI or a "
        "maggma store YAML/JSON file. Overrides ANISOSCREEN_STORE and the config file.",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder of the embedded store and user models."),
]

# -- filter options shared with ``query`` -----------------------------------------------------
ArMinOption = Annotated[float | None, typer.Option("--ar-min", help="Smallest predicted a_r.")]
ArMaxOption = Annotated[float | None, typer.Option("--ar-max", help="Largest predicted a_r.")]
DimensionalityOption = Annotated[
    list[str] | None,
    typer.Option("--dimensionality", "-d", help="Structural dimensionality 0-3 (repeat or '1,2')."),
]
ElementsOption = Annotated[
    list[str] | None,
    typer.Option("--elements", "-e", help="Elements that must all be present (repeat or 'Mo,S')."),
]
ExcludeElementsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-elements", "-x", help="Elements that must be absent (repeat or 'Pb,Cd')."
    ),
]
EpsTotalMinOption = Annotated[
    float | None,
    typer.Option("--eps-total-min", help="Smallest predicted static eps_poly (ionic model)."),
]
FomMinOption = Annotated[
    float | None,
    typer.Option("--fom-min", help="Smallest FOM = E_g x predicted static eps_poly (eV)."),
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Only predictions of this model (default: newest).")
]
SortOption = Annotated[
    str | None,
    typer.Option(
        "--sort",
        help="Sort key: ar, predicted_ar, dft_ar, eps_poly, predicted_eps_poly, "
        "dft_eps_poly, energy_above_hull, band_gap, material_id, formula, "
        "predicted_eps_ionic, predicted_eps_total, predicted_ar_total, fom, dft_eps_ionic, "
        "dft_eps_total, ar_spread.",
    ),
]
DescendingOption = Annotated[
    bool | None,
    typer.Option("--descending/--ascending", help="Sort direction (default: natural for the key)."),
]
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", help="At most N rows (0: all).")]


def build_query(**options):
    """A :class:`~anisoscreen.query.CandidateQuery` from CLI values (``None``: not given)."""
    from anisoscreen.query import CandidateQuery

    return CandidateQuery.build(**options)
