"""Where a study's results go: its JSON file, and the line that says where.

Not a script: the studies import it (``from _study_io import save_study``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_study(study: dict[str, Any], output: Path, note: str = "") -> None:
    """Write ``study`` to ``output`` as JSON (folders made); print ``{note}-> {output}``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(study, indent=2))
    print(f"{note}-> {output}")
