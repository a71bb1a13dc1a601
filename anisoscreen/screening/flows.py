"""jobflow Makers of the screening campaign (atomate2 style: fields are settings, make() builds).

``ScreeningMaker`` chains ``CandidateMaker`` -> ``PredictionMaker`` -> ``RankingMaker`` and a
job recording the run; with ``validate=True`` a dynamic job appends DFT validation flows for
the top candidates (a_r above ``ar_threshold``, or the ``top_k`` highest).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Job, Maker

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.screening.jobs import (
    fetch_candidates,
    predict_candidates,
    rank_candidates,
    record_screening_run,
    select_for_validation,
)

__all__ = ["CandidateMaker", "PredictionMaker", "RankingMaker", "ScreeningMaker"]


@dataclass
class CandidateMaker(Maker):
    """Load and filter candidates into the results store.

    Parameters
    ----------
    name
        Job name.
    source
        ``bundled`` (shipped demo pool), ``mp`` (Materials Project; needs ``MP_API_KEY``) or a
        path to a JSON(.gz) list of MP-summary-like documents, a structure file or a folder.
    criteria
        Screening thresholds (the reference paper's by default).
    model
        Model whose training elements restrict the candidates (``None``: no restriction).
    store
        Results-store settings overrides (``{"store": ..., "data_dir": ...}``).
    """

    name: str = "candidates"
    source: str = "bundled"
    criteria: ScreeningCriteria = field(default_factory=ScreeningCriteria)
    model: str | None = None
    store: dict[str, Any] | None = None

    def make(self) -> Job:
        job = fetch_candidates(self.source, self.criteria, self.model, self.store)
        job.name = self.name
        return job


@dataclass
class PredictionMaker(Maker):
    """Predict dielectric tensors of stored candidates, batched, on GPU when present.

    Parameters
    ----------
    model
        Model name or checkpoint path (an ensemble gives mean and spread).
    device
        ``auto``, ``cpu`` or ``cuda``.
    batch_size
        Structures per forward pass.
    """

    name: str = "predict"
    model: str = "anisonet-mp-v1"
    device: str = "auto"
    batch_size: int = 64
    store: dict[str, Any] | None = None

    def make(self, candidates: Any) -> Job:
        job = predict_candidates(candidates, self.model, self.device, self.batch_size, self.store)
        job.name = self.name
        return job


@dataclass
class RankingMaker(Maker):
    """Dimensionality (CrystalNN + Larsen) and crystal system, in parallel; rank by a_r.

    ``describe_top`` candidates also get robocrys's text description (~2 s each).
    """

    name: str = "rank"
    processes: int | None = None
    store: dict[str, Any] | None = None
    describe_top: int = 0

    def make(self, predictions: Any) -> Job:
        job = rank_candidates(
            predictions, self.processes, self.store, describe_top=self.describe_top
        )
        job.name = self.name
        return job


@dataclass
class ScreeningMaker(Maker):
    """The whole campaign: candidates -> prediction -> ranking (-> validation).

    Parameters
    ----------
    source, criteria, model, device, batch_size, processes, describe_top
        Passed to the stage makers (see their docs).
    store
        Results-store settings overrides shared by every stage.
    validate
        Append validation flows for the selected candidates.
    ar_threshold, top_k
        Selection for validation: a_r above the threshold (paper: 2.5) or the top k.
    validation_maker
        A maker whose ``make(structure, material_id=...)`` returns the validation flow.
    """

    name: str = "anisotropic dielectric screening"
    source: str = "bundled"
    criteria: ScreeningCriteria = field(default_factory=ScreeningCriteria)
    model: str = "anisonet-mp-v1"
    device: str = "auto"
    batch_size: int = 64
    processes: int | None = None
    describe_top: int = 0
    store: dict[str, Any] | None = None
    validate: bool = False
    ar_threshold: float | None = 2.5
    top_k: int | None = None
    validation_maker: Any = None

    def make(self, run_id: str | None = None) -> Flow:
        run_id = run_id or str(uuid.uuid4())
        candidates = CandidateMaker(
            source=self.source, criteria=self.criteria, model=self.model, store=self.store
        ).make()
        predictions = PredictionMaker(
            model=self.model, device=self.device, batch_size=self.batch_size, store=self.store
        ).make(candidates.output)
        ranking = RankingMaker(
            processes=self.processes, store=self.store, describe_top=self.describe_top
        ).make(predictions.output)
        record = record_screening_run(
            run_id, self.source, candidates.output, predictions.output, ranking.output, self.store
        )
        record.name = "record run"
        jobs = [candidates, predictions, ranking, record]
        if self.validate:
            select = select_for_validation(
                ranking.output, self.ar_threshold, self.top_k, self.validation_maker, self.store
            )
            select.name = "select for validation"
            jobs.append(select)
        return Flow(jobs, output=record.output, name=self.name)
