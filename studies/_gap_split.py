"""The shipped split's entries with their band gaps, and a model's eps_poly on them.

Not a script: the gap studies import it (``from _gap_split import ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.train import prepare_graphs
from anisoscreen.settings import get_settings

GAP_BINS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 20.0))
"""PBE band-gap bins (eV) the gap studies report."""


@dataclass
class GapSubset:
    """One split of the cleaned data set (seed 42): graphs, DFPT eps_poly and PBE gaps."""

    graphs: list[Any]
    reference: np.ndarray
    gaps: np.ndarray

    @classmethod
    def of(cls, subset: str, cutoff: float) -> GapSubset:
        """``subset`` (``validation`` or ``test``) as graphs of ``cutoff``."""
        data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
        entries, _ = clean_entries(load_entries(data))
        chosen = [entries[i] for i in random_split(len(entries), 42)[subset]]
        return cls(
            prepare_graphs(chosen, cutoff, None, None),
            np.array(
                [tmath.irreps_to_tensor(e.target_irreps("electronic")).trace() / 3 for e in chosen]
            ),
            np.array([math.nan if e.band_gap is None else e.band_gap for e in chosen]),
        )

    def eps_poly(self, networks: Any) -> np.ndarray:
        """The ensemble-mean eps_poly of ``networks`` on the graphs (as they are now)."""
        mean = predict_irreps(networks, self.graphs, "cpu").mean(axis=0)
        return np.trace(tmath.irreps_to_tensor(mean), axis1=1, axis2=2) / 3
