"""Campaign figure: hits against DFT calculations, one line per strategy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_hits"]


def plot_hits(reports: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Cumulative hits against DFT calculations, the mean over runs of each strategy.

    Parameters
    ----------
    reports
        Simulation reports (:func:`anisoscreen.campaign.simulate.simulate`).
    path
        Image file to write (format from the suffix).
    """
    from matplotlib.figure import Figure

    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for report in reports:
        calcs = np.cumsum([0] + [len(r["picked"]) for r in report["rounds"]])
        hits = np.cumsum([0] + [r["hits"] for r in report["rounds"]])
        curves[report["strategy"]].append((calcs, hits))
    figure = Figure(figsize=(5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    for strategy, runs in sorted(curves.items()):
        length = min(len(c) for c, _ in runs)
        calcs = runs[0][0][:length]
        mean = np.mean([h[:length] for _, h in runs], axis=0)
        axes.plot(calcs, mean, marker="o", label=f"{strategy} (n={len(runs)})")
    top_k = reports[0].get("top_k") if reports else None
    axes.set_xlabel("DFT calculations")
    axes.set_ylabel(f"hits (true top-{top_k})" if top_k else "hits")
    axes.legend(frameon=False)
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path
