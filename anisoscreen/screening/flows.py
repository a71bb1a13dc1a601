"""jobflow Makers of the screening campaign (atomate2 style: fields are settings, make() builds).

``ScreeningMaker`` chains its ``candidate_maker`` -> ``prediction_maker`` -> ``ranking_maker``
fields (``CandidateMaker``, ``PredictionMaker``, ``RankingMaker`` by default) and a job
recording the run; with ``validate=True`` a dynamic job appends DFT validation flows for
the top candidates (:mod:`anisoscreen.validation.select`). :meth:`ScreeningMaker.from_settings`
is the one way the CLI and ``submit`` build a campaign from settings, and
:func:`screening_outputs` reads a finished run's results by name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Job, Maker
from pydantic import BaseModel

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import ScreeningRunDoc
from anisoscreen.screening.ionic_refine import IonicRefineMaker, IonicRefineOutput
from anisoscreen.screening.jobs import (
    fetch_candidates,
    predict_candidates,
    predict_in_shards,
    rank_candidates,
    record_screening_run,
    select_for_validation,
)
from anisoscreen.screening.outputs import RankingStageOutput, ValidationSelectionOutput
from anisoscreen.settings import DEFAULT_MODEL

if TYPE_CHECKING:
    from anisoscreen.settings import AnisoscreenSettings

__all__ = [
    "CandidateMaker",
    "PredictionMaker",
    "RankingMaker",
    "ScreeningMaker",
    "ScreeningOutputs",
    "screening_outputs",
]

OUTPUT_NAMES = ("candidates", "predictions", "ranking", "run", "selection", "refinement")
"""Keys of the screening flow's ``output`` (``selection`` only with validation,
``refinement`` only with a refine stage)."""


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
    processes
        Cores of the stage (``None``: all): all but the one reading the source (at most 3)
        compute the ranking descriptors of the candidates already read.
    """

    name: str = "candidates"
    source: str = "bundled"
    criteria: ScreeningCriteria = field(default_factory=ScreeningCriteria)
    model: str | None = None
    store: dict[str, Any] | None = None
    processes: int | None = None

    def make(self) -> Job:
        job = fetch_candidates(self.source, self.criteria, self.model, self.store, self.processes)
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
    ionic_model
        Optional ionic model of the set (adds eps_ionic, eps_total and the FOM).
    shard_size
        Candidates per prediction job. ``None``: one job for all of them; else a dynamic job
        replaced by one job per shard of this many candidates and a job merging their outputs
        (:func:`~anisoscreen.screening.jobs.predict_in_shards`), which jobflow-remote can run
        in parallel. Either way the job's output is one ``PredictionStageOutput``.
    processes
        Cores for the ranking descriptors (dimensionality, crystal system) that each
        prediction job computes for its structures (``None``: all).
    """

    name: str = "predict"
    model: str = DEFAULT_MODEL
    device: str = "auto"
    batch_size: int = 64
    store: dict[str, Any] | None = None
    ionic_model: str | None = None
    shard_size: int | None = None
    processes: int | None = None

    def __post_init__(self) -> None:
        if self.shard_size is not None and self.shard_size < 1:
            raise AnisoscreenError(f"shard_size must be at least 1, not {self.shard_size}")

    def make(self, candidates: Any) -> Job:
        settings: dict[str, Any] = {
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "store": self.store,
            "ionic_model": self.ionic_model,
            "processes": self.processes,
        }
        if self.shard_size is None:
            job = predict_candidates(candidates, **settings)
        else:
            job = predict_in_shards(candidates, self.shard_size, **settings)
        job.name = self.name
        return job


@dataclass
class RankingMaker(Maker):
    """Rank the predictions (adding any dimensionality / crystal system still missing).

    The prediction jobs compute the descriptors of what they predict; this stage computes
    those of older predictions, in parallel over ``processes``.

    ``objective`` (ar, ar-total, eps-total or fom; see
    :mod:`anisoscreen.screening.objectives`) is what ranks. ``describe_top`` candidates also
    get robocrys's text description (~2 s each).
    """

    name: str = "rank"
    processes: int | None = None
    store: dict[str, Any] | None = None
    describe_top: int = 0
    objective: str = "ar"

    def make(self, predictions: Any) -> Job:
        job = rank_candidates(
            predictions,
            self.processes,
            self.store,
            describe_top=self.describe_top,
            objective=self.objective,
        )
        job.name = self.name
        return job


_STAGE_MAKERS: dict[str, type[Maker]] = {
    "candidate_maker": CandidateMaker,
    "prediction_maker": PredictionMaker,
    "ranking_maker": RankingMaker,
}
STAGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "candidate_maker": ("source", "criteria", "model", "store", "processes"),
    "prediction_maker": (
        "model",
        "device",
        "batch_size",
        "store",
        "ionic_model",
        "shard_size",
        "processes",
    ),
    "ranking_maker": ("processes", "store", "describe_top", "objective"),
}
"""The flat options of :meth:`ScreeningMaker.from_options`, by the stage maker they go to."""
_OWN_OPTIONS = (
    "name",
    "store",
    "validate",
    "ar_threshold",
    "top_k",
    "validation_maker",
    "refine_top",
    "refine_charges",
    "refine_maker",
)


@dataclass
class ScreeningMaker(Maker):
    """The whole campaign: candidates -> prediction -> ranking (-> validation).

    Each stage is a Maker field, so a stage is swapped the atomate2 way
    (``ScreeningMaker(prediction_maker=MyPredictionMaker())``);
    :meth:`from_settings` and :meth:`from_options` fill them from flat options.

    Parameters
    ----------
    candidate_maker
        Makes the candidate job (:class:`CandidateMaker`).
    prediction_maker
        Makes the prediction job from the candidates' output (:class:`PredictionMaker`:
        ``make(candidates)``). An objective other than ``ar`` needs its ``ionic_model``:
        without one the shipped one
        (:data:`~anisoscreen.screening.objectives.SHIPPED_IONIC_MODEL`) is set.
    ranking_maker
        Makes the ranking job from the predictions' output (:class:`RankingMaker`:
        ``make(predictions)``); its ``objective`` ranks.
    store
        Results-store settings overrides of the run record and the validation selection
        (:meth:`from_options` gives the stages the same).
    validate
        Append validation flows for the selected candidates.
    ar_threshold, top_k
        Selection for validation: a_r >= the threshold, then the top k (neither given: the
        reference threshold 2.5), see :func:`anisoscreen.validation.select.selection_rule`;
        the selection itself is the plain function
        :func:`anisoscreen.validation.select.select_candidates`.
    validation_maker
        A maker whose ``make(structure, material_id=..., prediction=...)`` returns the
        validation flow.
    refine_top
        Refine the ranking's first ``refine_top`` rows with the physics eps0
        (:class:`~anisoscreen.screening.ionic_refine.IonicRefineMaker`, made with this
        maker's ``store`` unless ``refine_maker`` is given; its ``top_k`` is set to this).
    refine_charges
        The Born charges of that stage (``nominal``, ``dfpt`` or ``predicted``), each with its
        measured use of the physics eps0 (:meth:`IonicRefineMaker.for_charges`); ``None``:
        ``nominal``. Needs ``refine_top``; a ``refine_maker`` given as well must use the same
        Born source.
    refine_maker
        The refine stage's maker (``make(ranking)``); ``None`` and no ``refine_top``: none.

    The flow's ``output`` is a dict of the stage outputs named by :data:`OUTPUT_NAMES`.
    """

    name: str = "anisotropic dielectric screening"
    candidate_maker: CandidateMaker = field(default_factory=CandidateMaker)
    prediction_maker: PredictionMaker = field(default_factory=PredictionMaker)
    ranking_maker: RankingMaker = field(default_factory=RankingMaker)
    store: dict[str, Any] | None = None
    validate: bool = False
    ar_threshold: float | None = None
    top_k: int | None = None
    validation_maker: Any = None
    refine_top: int | None = None
    refine_charges: str | None = None
    refine_maker: IonicRefineMaker | None = None

    def __post_init__(self) -> None:
        from anisoscreen.screening.objectives import check_objective, ionic_model_for

        if self.refine_charges is not None:
            if self.refine_top is None:
                raise AnisoscreenError("refine_charges needs refine_top")
            given = self.refine_maker
            if given is not None and given.born_source != self.refine_charges:
                raise AnisoscreenError(
                    f"refine_charges {self.refine_charges!r} contradicts the refine_maker's "
                    f"born_source {given.born_source!r}; give one of them"
                )
        if self.refine_top is not None:
            if self.refine_top < 1:
                raise AnisoscreenError("refine_top must be at least 1")
            base = self.refine_maker or IonicRefineMaker.for_charges(
                self.refine_charges or "nominal", store=self.store
            )
            self.refine_maker = replace(base, top_k=self.refine_top)

        objective = self.ranking_maker.objective
        given = getattr(self.prediction_maker, "ionic_model", None)
        ionic_model = ionic_model_for(objective, given)
        if ionic_model != given:
            self.prediction_maker = replace(self.prediction_maker, ionic_model=ionic_model)
        check_objective(objective, ionic_model)
        if self.validate and objective != "ar" and self.top_k is None:
            raise AnisoscreenError(
                f"with objective {objective!r}, choose the candidates to validate with "
                "top_k (--top-k); the a_r threshold alone would ignore the objective"
            )

    @property
    def source(self) -> str:
        """The candidates' source (the candidate maker's)."""
        return self.candidate_maker.source

    @classmethod
    def from_options(cls, **options: Any) -> ScreeningMaker:
        """The campaign from flat options, each given to the stage makers that take it.

        ``source``, ``criteria``, ``model``, ``device``, ``batch_size``, ``ionic_model``,
        ``shard_size``, ``processes``, ``describe_top`` and ``objective`` go to the stages
        named in :data:`STAGE_OPTIONS` (``store`` to every stage and to this maker); the other
        options are this maker's fields. A stage maker given as an option
        (``prediction_maker=...``) is used as it is: the flat options go to the other stages,
        and one that no built stage takes is an error rather than silently ignored.
        """
        return cls._compose(options, {})

    @classmethod
    def from_settings(
        cls, settings: AnisoscreenSettings, *, optics: bool = False, **options: Any
    ) -> ScreeningMaker:
        """The campaign for ``settings`` (model, device, batch size, store); ``options`` override.

        ``options`` are those of :meth:`from_options`; ``None`` values are ignored. With
        ``validate=True`` and no ``validation_maker``, the DFPT validation maker
        (:func:`~anisoscreen.validation.makers.dfpt_validation_maker`) is used, plus optics
        (LOPTICS) with ``optics``.
        """
        from anisoscreen.settings import store_overrides

        defaults: dict[str, Any] = {
            "model": settings.model,
            "ionic_model": settings.ionic_model,
            "device": settings.device,
            "batch_size": settings.batch_size,
            "store": store_overrides(settings),
        }
        given = {k: v for k, v in options.items() if v is not None}
        if given.get("validate") and given.get("validation_maker") is None:
            from anisoscreen.validation.makers import dfpt_validation_maker

            given["validation_maker"] = dfpt_validation_maker(optics)
        return cls._compose(given, defaults)

    @classmethod
    def _compose(cls, options: dict[str, Any], defaults: dict[str, Any]) -> ScreeningMaker:
        """The maker from explicit ``options`` over ``defaults`` (see :meth:`from_options`)."""
        known = {*_OWN_OPTIONS, *_STAGE_MAKERS, *(n for ns in STAGE_OPTIONS.values() for n in ns)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown screening options: {', '.join(unknown)}")
        fields: dict[str, Any] = {}
        used = set(_OWN_OPTIONS)
        for stage, names in STAGE_OPTIONS.items():
            if stage in options:
                fields[stage] = options[stage]  # used as it is
                continue
            values = {n: defaults[n] for n in names if n in defaults}
            values.update({n: options[n] for n in names if n in options})
            fields[stage] = _STAGE_MAKERS[stage](**values)
            used.update(names)
        ignored = sorted(n for n in options if n not in used and n not in _STAGE_MAKERS)
        if ignored:
            raise AnisoscreenError(
                f"{', '.join(ignored)} would be ignored: only given stage makers take them; "
                "set them on those makers"
            )
        own = {n: options[n] for n in _OWN_OPTIONS if n in options}
        if "store" not in own and "store" in defaults:
            own["store"] = defaults["store"]
        return cls(**own, **fields)

    def make(self, run_id: str | None = None) -> Flow:
        run_id = run_id or str(uuid.uuid4())
        candidates = self.candidate_maker.make()
        predictions = self.prediction_maker.make(candidates.output)
        ranking = self.ranking_maker.make(predictions.output)
        record = record_screening_run(
            run_id, self.source, candidates.output, predictions.output, ranking.output, self.store
        )
        record.name = "record run"
        jobs: list[Job | Flow] = [candidates, predictions, ranking, record]
        output = {
            "candidates": candidates.output,
            "predictions": predictions.output,
            "ranking": ranking.output,
            "run": record.output,
        }
        if self.validate:
            select = select_for_validation(
                ranking.output, self.ar_threshold, self.top_k, self.validation_maker, self.store
            )
            select.name = "select for validation"
            jobs.append(select)
            output["selection"] = select.output
        if self.refine_maker is not None:
            refine = self.refine_maker.make(ranking.output)
            jobs.append(refine)
            output["refinement"] = refine.output
        return Flow(jobs, output=output, name=self.name)


class ScreeningOutputs(BaseModel):
    """The results of a finished screening flow, by name."""

    run: ScreeningRunDoc
    ranking: RankingStageOutput
    selection: ValidationSelectionOutput | None = None
    refinement: IonicRefineOutput | None = None


def screening_outputs(flow: Flow, responses: dict[str, Any]) -> ScreeningOutputs | None:
    """Read the named outputs of ``flow`` from ``run_locally``'s responses.

    Returns ``None`` when the run record is missing (the flow did not finish).
    """

    def output(name: str) -> Any:
        reference = flow.output.get(name)
        if reference is None or reference.uuid not in responses:
            return None
        return next(iter(responses[reference.uuid].values())).output

    run, ranking = output("run"), output("ranking")
    if run is None or ranking is None:
        return None
    return ScreeningOutputs(
        run=run, ranking=ranking, selection=output("selection"), refinement=output("refinement")
    )
