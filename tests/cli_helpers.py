"""The CLI in a child process, as a user runs it (stdout not a terminal)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

CLI = "import sys; from anisoscreen.cli import main; sys.argv[0] = 'anisoscreen'; main()"
"""``python -c`` code that runs ``anisoscreen`` with the arguments after it."""


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """``anisoscreen ARGS`` in a child process; text output captured (``kwargs``: ``env``...)."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, **kwargs
    )
