"""A stand-in for DFT in a ``--local`` campaign: known labels stored as finished validations.

:class:`OracleRunner` has the signature of
:func:`~anisoscreen.campaign.local_run.run_local_validation`; put in its place, each picked
candidate's record jobs get a completed, valid DFPT ValidationDoc with the known eps_inf, at
once. So a real campaign (selection, submission records, collection, learning) runs end to
end without VASP, and its cost can be measured without that of the DFT
(``benchmarks/bench_campaign_round.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.schemas import CandidateDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

__all__ = ["OracleRunner"]


class OracleRunner:
    """Store the known eps_inf of each validated candidate as its DFPT result.

    Parameters
    ----------
    tensors
        eps_inf (3x3) of every candidate that may be picked, by material id.
    """

    def __init__(self, tensors: Mapping[str, np.ndarray]) -> None:
        self.tensors = dict(tensors)
        self.calls: list[str] = []

    def __call__(
        self,
        flow: Any,
        records: list[Any],
        candidate: CandidateDoc,
        settings: AnisoscreenSettings,
        results: ResultsStore,
        work_dir: Path,
    ) -> list[str]:
        """Store one completed ValidationDoc per record job; returns no failure."""
        from anisoscreen.hpc.submit import submitted_validation_doc

        self.calls.append(candidate.material_id)
        eps = tmath.symmetrize(np.asarray(self.tensors[candidate.material_id], dtype=float))
        docs = []
        for job in records:
            doc = submitted_validation_doc(job, candidate, flow.uuid, "local", None)
            docs.append(
                doc.model_copy(
                    update={
                        "state": ValidationState.COMPLETED,
                        "epsilon_electronic": tmath.as_list(eps),
                        "anisotropy_ratio": float(tmath.anisotropy_ratio(eps)),
                    }
                )
            )
        results.upsert(docs)
        return []
