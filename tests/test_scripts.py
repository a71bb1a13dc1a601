"""Every script users or maintainers run answers ``--help``: it imports and parses its options.

The scripts of ``workflows/`` (maintenance users run), ``studies/`` (one-off studies, each
with its results) and ``benchmarks/`` import the package as it is now, so a renamed or moved
function breaks this test, not the next person who runs the script. A module whose name starts
with ``_`` is a helper the folder's scripts import (``benchmarks/_pool.py``), not a script: it
is checked through the scripts that import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    path.relative_to(REPO).as_posix()
    for folder in ("workflows", "studies", "benchmarks")
    for path in (REPO / folder).glob("*.py")
    if not path.name.startswith("_")
)
HELPERS = sorted(
    path.relative_to(REPO).as_posix()
    for folder in ("workflows", "studies", "benchmarks")
    for path in (REPO / folder).glob("_*.py")
    if path.name != "__init__.py"
)


def test_the_script_folders_hold_what_they_should():
    assert not (REPO / "workflows" / "train_shipped_model.py").exists()  # anisoscreen train
    assert all(not name.endswith("_study.py") for name in SCRIPTS if name.startswith("workflows"))
    assert "studies/v3_study.py" in SCRIPTS and len(SCRIPTS) >= 15
    assert "benchmarks/_pool.py" in HELPERS
    for helper in HELPERS:  # a helper runs nothing of its own
        assert '__name__ == "__main__"' not in (REPO / helper).read_text(), helper


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower(), done.stdout[-500:]
