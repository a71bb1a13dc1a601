"""The local screening the tests run: the tiny model on CPU, one process, known dielectrics kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.screening.flows import ScreeningMaker


def local_maker(model: Path, pool: Path, data: Path, **options: Any) -> ScreeningMaker:
    """``ScreeningMaker.from_options`` for ``pool`` and ``model``, storing under ``data``.

    ``options`` override the defaults (batch size 4, one process, known dielectrics kept).
    """
    defaults: dict[str, Any] = {
        "source": str(pool),
        "model": str(model),
        "device": "cpu",
        "batch_size": 4,
        "processes": 1,
        "store": {"data_dir": str(data)},
        "criteria": ScreeningCriteria(exclude_known_dielectrics=False),
    }
    return ScreeningMaker.from_options(**{**defaults, **options})


def screen_args(model: Path, pool: Path, data: Path, *extra: str) -> list[str]:
    """``anisoscreen run-screen`` arguments for the same screen, then ``extra``."""
    return [
        "run-screen",
        "--source",
        str(pool),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--data-dir",
        str(data),
        "--processes",
        "1",
        *extra,
    ]
