"""Pieces every command shares: consoles, settings from flags, store and limit options.

Kept apart from ``cli.py`` so that command modules never import the app they register into.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = [
    "DataDirOption",
    "LimitOption",
    "StoreOption",
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
        help="Results store: 'embedded' (default), 'monty' (legacy), 'memory', a mongodb:// "
        "URI or a maggma store YAML/JSON file. Overrides ANISOSCREEN_STORE and the config file.",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder of the embedded store and user models."),
]

# -- the row limit of ``query``, ``table`` and ``plot`` (the filters: query_options.py) --------
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", help="At most N rows (0: all).")]
