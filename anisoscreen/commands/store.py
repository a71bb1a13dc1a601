"""``anisoscreen store migrate``: the legacy montydb store copied into the embedded engine."""

from __future__ import annotations

import typer
from rich.table import Table

from anisoscreen.commands.common import DataDirOption, console, settings_from_options

__all__ = ["register"]

store_app = typer.Typer(help="Manage the embedded results store.", no_args_is_help=True)


def migrate(data_dir: DataDirOption = None) -> None:
    """Copy the montydb store (<data dir>/store) into the embedded SQLite store and verify it.

    Counts and a checksum per collection are compared after the copy; the montydb store is
    only read.
    """
    from anisoscreen.store.migrate import migrate_montydb

    settings = settings_from_options(None, data_dir)
    copies = migrate_montydb(settings)
    table = Table(title=f"montydb -> {settings.embedded_store_path}")
    for column in ("collection", "documents", "duplicate keys", "stored", "checksum"):
        table.add_column(column)
    for copy in copies:
        table.add_row(
            copy.collection,
            str(copy.source_documents),
            str(copy.duplicate_keys),
            str(copy.copied),
            copy.checksum[:16] + " ok",
        )
    console.print(table)
    console.print(
        f"migrated {sum(c.copied for c in copies)} documents; use the default store "
        "('embedded'), or remove 'store: monty' from your configuration"
    )


def register(app: typer.Typer) -> None:
    """Add ``store migrate`` to ``app``."""
    store_app.command()(migrate)
    app.add_typer(store_app, name="store")
