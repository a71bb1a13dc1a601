"""jobflow jobs of the screening campaign.

Jobs write their documents to the **results store** as they go (one upsert per document) and
return small typed summaries (:mod:`anisoscreen.screening.outputs`: ids, counts, timings),
so an interrupted campaign resumes with nothing lost or duplicated, and nothing large
travels through the JobStore. ``store`` arguments are settings overrides
(``{"store": ..., "data_dir": ...}``) so that a job rebuilds the same stores on whatever
machine runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from jobflow import Flow, Response, job
from pymatgen.core import Structure

from anisoscreen.candidates import parsed, source_cache
from anisoscreen.candidates.filters import (
    FilterResult,
    ScreeningCriteria,
    apply_criteria,
    filter_fields,
)
from anisoscreen.candidates.sources import CandidateBatch, watching_candidates
from anisoscreen.schemas import (
    CandidateDoc,
    PredictionDoc,
    ScreeningRunDoc,
    StructureDescriptorsDoc,
    utcnow,
)
from anisoscreen.screening.early_descriptors import EarlyDescriptors, idle_cores
from anisoscreen.screening.outputs import (
    CandidateStageOutput,
    PredictionStageOutput,
    RankedCandidate,
    RankingStageOutput,
    ValidationSelectionOutput,
)
from anisoscreen.screening.shards import shard_ids
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore
from anisoscreen.structures_io import StructureRecord

if TYPE_CHECKING:
    from anisoscreen.screening.descriptors import DescriptorJobs

__all__ = [
    "fetch_candidates",
    "merge_predictions",
    "predict_candidates",
    "predict_in_shards",
    "rank_candidates",
    "record_screening_run",
    "select_for_validation",
    "set_progress_reporter",
]

ProgressReporter = Callable[[str, int, int | None], None]
_reporter: ProgressReporter | None = None


def set_progress_reporter(reporter: ProgressReporter | None) -> None:
    """Install a callback ``(stage, advance, total)`` that in-process runs report progress to."""
    global _reporter
    _reporter = reporter


def _report(stage: str, advance: int, total: int | None = None) -> None:
    if _reporter is not None:
        _reporter(stage, advance, total)


def _results(store: dict[str, Any] | None) -> ResultsStore:
    return ResultsStore(get_settings(**(store or {})))


def load_source(
    source: str,
    data_dir: Path | str | None = None,
    criteria: ScreeningCriteria | None = None,
) -> CandidateBatch:
    """Candidates of a source: ``bundled``, ``mp``, ``optimade:URL|NAME`` or a path.

    ``criteria`` are pushed to the server where the source can filter (OPTIMADE).
    """
    from anisoscreen.candidates import optimade, sources

    if optimade.is_optimade_source(source):
        fetch = optimade.OptimadeFetch(
            source,
            get_settings(data_dir=data_dir).data_dir / "cache" / "optimade",
            optimade.OptimadeQuery.from_criteria(criteria),
        )
        return fetch.load(progress=lambda done, total: _report("fetch", 1, total))

    if source == "bundled":
        return sources.load_bundled()
    if source == "mp":
        from anisoscreen.candidates.mp import (
            MPResterSearcher,
            RetryPolicy,
            api_key,
            fetch_mp_candidates,
        )

        settings = get_settings(data_dir=data_dir)
        key = api_key(settings)
        docs = fetch_mp_candidates(
            MPResterSearcher(key),
            settings.data_dir / "cache" / "mp",
            retry=RetryPolicy(secret=key),
            progress=lambda done, total: _report("fetch", 1, total),
        )
        return sources.candidates_from_summary_docs(docs, source="mp")
    return sources.load_local(source)


def filter_source(
    source: str,
    criteria: ScreeningCriteria | None = None,
    model: str | None = None,
    data_dir: Path | str | None = None,
) -> tuple[ScreeningCriteria, CandidateBatch, FilterResult]:
    """Load a source and apply the criteria (no store writes).

    Returns ``(criteria, batch, result)``: the effective criteria, the loaded
    :class:`~anisoscreen.candidates.sources.CandidateBatch` and the
    :class:`~anisoscreen.candidates.filters.FilterResult`.
    """
    criteria = _effective_criteria(criteria, model, data_dir)
    batch = load_source(source, data_dir, criteria)
    return criteria, batch, apply_criteria(batch.candidates, criteria)


def _effective_criteria(
    criteria: ScreeningCriteria | None, model: str | None, data_dir: Path | str | None
) -> ScreeningCriteria:
    """``criteria`` with ``model``'s training elements and materials joined in."""
    criteria = (criteria or ScreeningCriteria()).model_copy()
    if model is not None:
        from anisoscreen.model.checkpoint import read_model_info

        info = read_model_info(model, Path(data_dir) if data_dir is not None else None)
        if criteria.model_elements is None:
            criteria.model_elements = info.element_symbols
        criteria.extra_known_ids = sorted(set(criteria.extra_known_ids) | set(info.material_ids))
    return criteria


@job(output_schema=CandidateStageOutput)
def fetch_candidates(
    source: str,
    criteria: ScreeningCriteria | None = None,
    model: str | None = None,
    store: dict[str, Any] | None = None,
    processes: int | None = None,
) -> CandidateStageOutput:
    """Load candidates, apply the criteria and upsert the survivors as ``CandidateDoc``s.

    When ``model`` is given, its training elements become the ``unseen_elements`` criterion
    and the materials of its data set join the known dielectrics. While the source is read,
    the other ``processes`` less one (``None``: all cores; at most 3) compute the ranking
    descriptors of the survivors and cache what they finish
    (:mod:`~anisoscreen.screening.early_descriptors`).
    """
    start = time.perf_counter()
    settings = get_settings(**(store or {}))
    criteria = _effective_criteria(criteria, model, settings.data_dir)
    with (
        ResultsStore(settings) as results,
        EarlyDescriptors(results, criteria, idle_cores(processes)) as early,
    ):
        # a file's checked candidates are cached by its bytes: a repeat parses nothing
        with watching_candidates(early.offer):
            table = source_cache.candidate_table(
                source,
                settings.data_dir / "cache" / "sources",
                lambda: load_source(source, settings.data_dir, criteria),
            )
        kept, removed_by, descriptions = filter_fields(table.fields(), criteria)
        results.upsert_records("candidates", (table.stored(i) for i in kept))
        n_descriptors = early.store()
    records = [table.records[i] for i in kept]
    structures = [table.structures[i] for i in kept] if table.structures is not None else None
    parsed.remember_records(records, structures)  # the later stages parse nothing again
    return CandidateStageOutput(
        material_ids=[r["material_id"] for r in records],
        n_input=table.n_input,
        removed_by={"unreadable": len(table.failures), **removed_by},
        criteria={
            **criteria.model_dump(exclude={"extra_known_ids", "model_elements"}),
            "descriptions": descriptions,
        },
        failures=table.failures,
        seconds=time.perf_counter() - start,
        n_descriptors_computed=n_descriptors,
    )


def _candidate_ids(candidates: CandidateStageOutput | dict[str, Any] | Sequence[str]) -> list[str]:
    """The material ids of a candidate-stage output (or of a plain list of ids, one shard)."""
    if isinstance(candidates, CandidateStageOutput | dict):
        return list(CandidateStageOutput.model_validate(candidates).material_ids)
    return list(candidates)


@dataclass(frozen=True)
class _ModelSet:
    """Name, version and checksums of a model set (and its device), without its networks."""

    name: str
    version: str
    checksum: str
    ionic_name: str | None
    ionic_checksum: str | None
    device: str

    @classmethod
    def read(cls, model: str, data_dir: Path, device: str, ionic_model: str | None) -> _ModelSet:
        """The identity of a model set from its files (headers read, checksums hashed)."""
        from anisoscreen.model.checkpoint import read_model_info
        from anisoscreen.model.checksum import file_checksum
        from anisoscreen.model.runtime import resolve_device

        info = read_model_info(model, data_dir)
        ionic = read_model_info(ionic_model, data_dir) if ionic_model else None
        return cls(
            name=info.name,
            version=info.version,
            checksum=file_checksum(info.path),
            ionic_name=ionic.name if ionic is not None else None,
            ionic_checksum=file_checksum(ionic.path) if ionic is not None else None,
            device=str(resolve_device(device)),
        )

    @classmethod
    def of(cls, predictor: Any) -> _ModelSet:
        """The identity of a loaded :class:`~anisoscreen.model.inference.Predictor`."""
        ionic = predictor.ionic
        return cls(
            name=predictor.model.name,
            version=predictor.model.version,
            checksum=predictor.model.checksum,
            ionic_name=ionic.name if ionic is not None else None,
            ionic_checksum=ionic.checksum if ionic is not None else None,
            device=str(predictor.device),
        )


_RECORD_PROPERTIES = ["material_id", "structure_hash", "source", "energy_above_hull", "band_gap"]


def _candidate_records(results: ResultsStore, ids: Sequence[str]) -> Iterator[StructureRecord]:
    """The stored candidates of ``ids`` as records to predict, their structures parsed once.

    A candidate parsed by this process's candidate stage (same structure hash) is not decoded
    again and comes in the order of ``ids``, the order in which its descriptors are computed
    (:class:`_PendingDescriptors`); the others follow, streamed from the store in one read.
    """
    if not ids:
        return
    fields = {
        record["material_id"]: record
        for record in results.records(
            "candidates", {"material_id": {"$in": list(ids)}}, properties=_RECORD_PROPERTIES
        )
    }
    unread = []
    for material_id in ids:
        record = fields.get(material_id)
        if record is None:
            continue
        structure = parsed.structure_of(material_id, record.get("structure_hash"))
        if structure is None:
            unread.append(material_id)
        else:
            yield _structure_record(record, structure)
    if unread:  # one streaming read (a query per batch would rescan the store)
        for doc in map(
            CandidateDoc.from_store,
            results.records("candidates", {"material_id": {"$in": unread}}),
        ):
            yield _structure_record(doc.model_dump(exclude={"structure"}), doc.structure)


def _structure_record(fields: dict[str, Any], structure: Structure) -> StructureRecord:
    """A record to predict from a candidate's stored fields and its structure."""
    return StructureRecord(
        fields["material_id"],
        structure,
        fields.get("source", ""),
        fields={
            "energy_above_hull": fields.get("energy_above_hull"),
            "band_gap": fields.get("band_gap"),
        },
    )


@job(output_schema=PredictionStageOutput)
def predict_candidates(
    candidates: CandidateStageOutput | dict[str, Any] | Sequence[str],
    model: str,
    device: str = "auto",
    batch_size: int = 64,
    store: dict[str, Any] | None = None,
    ionic_model: str | None = None,
    processes: int | None = None,
) -> PredictionStageOutput:
    """Predict every candidate not yet predicted by this exact model set (same checksums).

    Predictions are upserted batch by batch, so a killed run loses at most one batch and a
    re-run predicts only what is missing. With ``ionic_model`` the documents also hold
    eps_ionic, eps_total and the figure of merit; adding an ionic model to a set re-predicts
    the materials predicted without it. ``candidates`` may also be a list of ids: one shard
    of :func:`predict_in_shards`.

    The predictions then get their ranking descriptors (dimensionality, crystal system) on
    ``processes`` cores (``None``: all), reused from any model's prediction of the same
    material where stored, so that this structural work scales out with the shards and
    :func:`rank_candidates` only ranks. They are stored as they come: a killed run keeps
    them, and ranking computes whatever is still missing.
    """
    from anisoscreen.model.inference import PredictionFailure, Predictor

    start = time.perf_counter()
    settings = get_settings(**(store or {}))
    # the model set's identity from its files alone: the networks are built only if there
    # is something to predict, so a repeated run with nothing new does no model work
    model_set = _ModelSet.read(model, settings.data_dir, device, ionic_model)
    name, checksum = model_set.name, model_set.checksum
    ionic_checksum = model_set.ionic_checksum
    ids = _candidate_ids(candidates)
    # a shard advances the progress of the whole stage, whose total predict_in_shards set
    total = len(ids) if isinstance(candidates, CandidateStageOutput | dict) else None
    failures: list[dict[str, Any]] = []
    n_predicted = 0
    with ResultsStore(settings) as results:
        done = results.keys(
            PredictionDoc,
            "material_id",
            {
                "model": name,
                "model_checksum": checksum,
                "ionic_model_checksum": ionic_checksum,
                "material_id": {"$in": ids},
            },
        )
        todo = [i for i in ids if i not in done]
        _report("predict", len(done), total)
        # the descriptors of what is to be predicted start in worker processes now, alongside
        # the model's loading and pass, so that each prediction is written once, with them
        pending = _PendingDescriptors.start(results, todo, name, processes)
        predictor: Predictor | None = None
        with pending:
            if todo or not ids:  # no ids: load anyway, so a broken model set still fails here
                predictor = Predictor.load(
                    model, settings.data_dir, device, batch_size, ionic_model
                )
                model_set = _ModelSet.of(predictor)
            records = _candidate_records(results, todo)
            batch_docs: list[PredictionDoc] = []

            def flush() -> None:
                nonlocal n_predicted
                docs, cache_docs = pending.attach(batch_docs)
                results.upsert([*cache_docs, *docs])
                n_predicted += len(batch_docs)
                batch_docs.clear()

            outputs = (
                predictor.predict(records, progress=lambda n: _report("predict", n, total))
                if predictor is not None
                else ()
            )
            for out in outputs:
                if isinstance(out, PredictionFailure):
                    failures.append(out.as_dict())
                else:
                    batch_docs.append(out)
                    if len(batch_docs) == batch_size:
                        flush()
            flush()
        predicted = time.perf_counter()
        # what the predictions still lack (reused predictions made without descriptors)
        _, n_descriptors = _add_descriptors(results, ids, name, processes, total)
    return PredictionStageOutput(
        material_ids=ids,
        model=name,
        model_version=model_set.version,
        model_checksum=checksum,
        n_predicted=n_predicted,
        n_reused=len(done),
        failures=failures,
        ionic_model=model_set.ionic_name,
        device=model_set.device,
        seconds=time.perf_counter() - start,
        n_descriptors_computed=n_descriptors + pending.n_computed,
        descriptor_seconds=time.perf_counter() - predicted + pending.wait_seconds,
    )


SHARD_METADATA = "anisoscreen_shard"
"""Metadata key of a prediction shard job: ``"<index>/<count>"`` (index from 1)."""


@job(output_schema=PredictionStageOutput)
def predict_in_shards(
    candidates: CandidateStageOutput | dict[str, Any],
    shard_size: int,
    model: str,
    device: str = "auto",
    batch_size: int = 64,
    store: dict[str, Any] | None = None,
    ionic_model: str | None = None,
    processes: int | None = None,
) -> Response:
    """Replace itself by one :func:`predict_candidates` job per shard of ``shard_size`` ids.

    A dynamic job (``Response(replace=...)``): the shards are independent jobs that a
    jobflow-remote worker runs in parallel, each upserting its own predictions, and a
    :func:`merge_predictions` job joins their outputs into the one
    :class:`~anisoscreen.screening.outputs.PredictionStageOutput` that this job's output
    reference resolves to, so ranking waits for every shard. A failed shard can be rerun
    alone; a shard whose predictions are stored already reuses them.
    """
    from jobflow import CURRENT_JOB

    ids = _candidate_ids(candidates)
    shards = shard_ids(ids, shard_size)
    _report("predict", 0, len(ids))
    _report("descriptors", 0, len(ids))
    current = CURRENT_JOB.job
    metadata = dict(current.metadata) if current is not None else {}
    jobs: list[Any] = []
    for index, members in enumerate(shards, start=1):
        shard = predict_candidates(
            members,
            model=model,
            device=device,
            batch_size=batch_size,
            store=store,
            ionic_model=ionic_model,
            processes=processes,
        )
        shard.name = f"predict shard {index}/{len(shards)}"
        shard.metadata = {**metadata, SHARD_METADATA: f"{index}/{len(shards)}"}
        jobs.append(shard)
    merge = merge_predictions([shard.output for shard in jobs])
    merge.name = "merge prediction shards"
    merge.metadata = metadata
    if current is not None:
        # the merge job takes this job's place (its uuid, the next index), as jobflow does
        # for a single replacing job, so references to this job's output read the merged
        # output; a replacing Flow with an output would add an unvalidated store_inputs job
        merge.set_uuid(current.uuid)
        merge.index = current.index + 1
    return Response(replace=Flow([*jobs, merge], name="predict shards"))


@job(output_schema=PredictionStageOutput)
def merge_predictions(
    shards: Sequence[PredictionStageOutput | dict[str, Any]],
) -> PredictionStageOutput:
    """The union of the shards' outputs, in shard order (counts, failures and times summed).

    ``seconds`` is the sum of the shards' wall times (the compute spent, not the elapsed time
    when shards ran in parallel).
    """
    outputs = [PredictionStageOutput.model_validate(s) for s in shards]
    if not outputs:
        raise ValueError("no prediction shards to merge")
    first = outputs[0]
    different = [o for o in outputs if o.model_checksum != first.model_checksum]
    if different:
        raise ValueError(
            f"prediction shards used different models: {first.model_checksum[:12]} and "
            f"{different[0].model_checksum[:12]}"
        )
    return first.model_copy(
        update={
            "material_ids": [i for o in outputs for i in o.material_ids],
            "n_predicted": sum(o.n_predicted for o in outputs),
            "n_reused": sum(o.n_reused for o in outputs),
            "failures": [f for o in outputs for f in o.failures],
            "seconds": sum(o.seconds for o in outputs),
            "n_descriptors_computed": sum(o.n_descriptors_computed for o in outputs),
            "descriptor_seconds": sum(o.descriptor_seconds for o in outputs),
        }
    )


RANK_CHUNK = 16
"""Ranked predictions stored per write while descriptors are computed."""


def _with_descriptors(doc: PredictionDoc, values: dict[str, Any] | None) -> PredictionDoc | None:
    """``doc`` with new dimensionality and crystal system, or ``None`` if nothing changes."""
    if not values or all(getattr(doc, name) == value for name, value in values.items()):
        return None
    return doc.model_copy(update={**values, "last_updated": utcnow()})


def _descriptor_values(record: dict[str, Any]) -> dict[str, Any] | None:
    """The descriptors stored on a prediction record, or ``None`` when it lacks them."""
    from anisoscreen.screening.descriptor_cache import descriptor_values

    if record.get("crystal_system") is None or record.get("space_group_number") is None:
        return None
    return descriptor_values(record)


def _candidate_structures(
    results: ResultsStore, hashes: dict[str, str | None], wanted: Sequence[str]
) -> dict[str, Structure]:
    """The structures of the ``wanted`` material ids: parsed ones, else read from the store."""
    structures: dict[str, Structure] = {}
    unread = []
    for material_id in wanted:
        structure = parsed.structure_of(material_id, hashes.get(material_id))
        if structure is None:
            unread.append(material_id)
        else:
            structures[material_id] = structure
    for doc in results.query(CandidateDoc, {"material_id": {"$in": unread}}):
        structures[doc.material_id] = doc.structure
    return structures


def _stored_descriptors(
    results: ResultsStore, ids: Sequence[str], model: str, others_only: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """Descriptors stored on predictions of ``ids``: by any model, and by ``model`` itself.

    Returns ``(known, own)``: the first stored descriptors of each material (any model's
    prediction that has them; with ``others_only``, any other model's) and what ``model``'s
    own prediction of each holds (``None`` where it lacks them; materials ``model`` did not
    predict are absent).
    """
    from anisoscreen.screening.descriptor_cache import DESCRIPTOR_FIELDS

    known: dict[str, dict[str, Any]] = {}
    own: dict[str, dict[str, Any] | None] = {}
    if not ids:
        return known, own
    for record in results.records(
        "predictions",
        {"material_id": {"$in": list(ids)}},
        properties=["material_id", "model", *DESCRIPTOR_FIELDS],
    ):
        values = _descriptor_values(record)
        mine = record.get("model") == model
        if mine:
            own[record["material_id"]] = values
        if values is not None and not (mine and others_only):
            known.setdefault(record["material_id"], values)
    return known, own


def _hashes_and_cached(
    results: ResultsStore, missing: Sequence[str], known: dict[str, dict[str, Any]]
) -> dict[str, str | None]:
    """The structure hashes of the ``missing`` materials; those cached go into ``known``.

    Returns the hash of every stored candidate among ``missing`` (``None`` if it has none).
    """
    from anisoscreen.screening import descriptor_cache

    if not missing:
        return {}
    hashes: dict[str, str | None] = {
        r["material_id"]: r.get("structure_hash")
        for r in results.records(
            "candidates",
            {"material_id": {"$in": list(missing)}},
            properties=["material_id", "structure_hash"],
        )
    }
    unhashed = [i for i in missing if hashes.get(i) is None]
    if unhashed:  # candidates stored before they carried their hash
        for doc in results.query(CandidateDoc, {"material_id": {"$in": unhashed}}):
            hashes[doc.material_id] = doc.structure_hash
    cached = descriptor_cache.lookup(results, (h for h in hashes.values() if h is not None))
    for material_id in missing:
        structure_hash = hashes.get(material_id)
        if structure_hash is not None and structure_hash in cached:
            known[material_id] = cached[structure_hash]
    return hashes


class _PendingDescriptors:
    """The ranking descriptors of the materials about to be predicted, found or started early.

    Found as :func:`_add_descriptors` finds them (another model's prediction, then the
    descriptor cache by structure hash); the rest are computed in worker processes
    (:class:`~anisoscreen.screening.descriptors.DescriptorJobs`) while the model loads and
    runs, once per distinct structure. :meth:`attach` gives each new prediction its
    descriptors before its first write, so no prediction is read back and written again.
    """

    def __init__(
        self,
        known: dict[str, dict[str, Any]],
        hashes: dict[str, str | None],
        jobs: DescriptorJobs | None = None,
    ) -> None:
        self.known = known
        self.hashes = hashes
        self.jobs = jobs
        self.n_computed = 0
        self.wait_seconds = 0.0
        self._computed: dict[str, dict[str, Any]] = {}

    @classmethod
    def start(
        cls, results: ResultsStore, ids: Sequence[str], model: str, processes: int | None
    ) -> _PendingDescriptors:
        """Look up the descriptors of ``ids`` and start computing the missing ones."""
        from anisoscreen.screening.descriptors import DescriptorJobs

        if not ids:
            return cls({}, {})
        # model's own (older) predictions are being replaced: theirs are not reused, as when
        # the replacing prediction was written without them
        known, _ = _stored_descriptors(results, ids, model, others_only=True)
        missing = [i for i in ids if i not in known]
        hashes = _hashes_and_cached(results, missing, known)
        first: dict[str, str] = {}
        for material_id in missing:
            structure_hash = hashes.get(material_id)
            if material_id not in known and structure_hash is not None:
                first.setdefault(structure_hash, material_id)
        structures = _candidate_structures(results, hashes, list(first.values()))
        unique = {cast(str, hashes[i]): s for i, s in structures.items()}
        return cls(known, hashes, DescriptorJobs(unique, processes) if unique else None)

    def attach(
        self, docs: Sequence[PredictionDoc]
    ) -> tuple[list[PredictionDoc], list[StructureDescriptorsDoc]]:
        """``docs`` with their descriptors, and the cache documents of those computed now.

        Waits for the workers where a structure's descriptors are not done yet.
        """
        from anisoscreen.screening import descriptor_cache

        out: list[PredictionDoc] = []
        cache_docs: list[StructureDescriptorsDoc] = []
        for doc in docs:
            values = self.known.get(doc.material_id)
            structure_hash = self.hashes.get(doc.material_id)
            if values is None and self.jobs is not None and structure_hash in self.jobs:
                structure_hash = cast(str, structure_hash)
                values = self._computed.get(structure_hash)
                if values is None:
                    start = time.perf_counter()
                    values = descriptor_cache.descriptor_values(self.jobs.result(structure_hash))
                    self.wait_seconds += time.perf_counter() - start
                    self._computed[structure_hash] = values
                    cache_docs.append(descriptor_cache.as_doc(structure_hash, values))
                    self.n_computed += 1
            out.append(doc if values is None else doc.model_copy(update=values))
        return out, cache_docs

    def __enter__(self) -> _PendingDescriptors:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.jobs is not None:
            self.jobs.close()


def _add_descriptors(
    results: ResultsStore,
    ids: Sequence[str],
    model: str,
    processes: int | None,
    total: int | None,
    stage: str = "descriptors",
) -> tuple[dict[str, dict[str, Any]], int]:
    """Store dimensionality, crystal system and space group on ``model``'s predictions of ``ids``.

    Found, in order: on any model's prediction of the same material; in the descriptor cache
    under the candidate's structure hash (:mod:`anisoscreen.screening.descriptor_cache`);
    else computed in parallel over ``processes``, once per distinct structure, and stored in
    the cache and on the predictions every :data:`RANK_CHUNK` structures, so a killed run keeps
    what it computed. Only the predictions whose descriptors change are read whole and
    rewritten. Returns the descriptors of every material by id and the number computed.
    """
    from anisoscreen.screening import descriptor_cache
    from anisoscreen.screening import descriptors as ranking

    known, own = _stored_descriptors(results, ids, model)
    ids = [i for i in ids if i in own]  # materials this model predicted
    missing = [i for i in ids if i not in known]
    hashes = _hashes_and_cached(results, missing, known)
    to_compute = [i for i in missing if i not in known and i in hashes]
    by_hash: dict[str, list[str]] = {}
    for material_id in to_compute:
        by_hash.setdefault(cast(str, hashes[material_id]), []).append(material_id)
    _report(stage, len(ids) - len(to_compute), total)

    def changed(material_ids: Iterable[str]) -> list[PredictionDoc]:
        """``model``'s predictions of ``material_ids`` whose stored descriptors differ."""
        stale = [i for i in material_ids if i in own and own[i] != known.get(i)]
        if not stale:
            return []
        docs = results.query(PredictionDoc, {"model": model, "material_id": {"$in": stale}})
        updated = (_with_descriptors(d, known.get(d.material_id)) for d in docs)
        return [d for d in updated if d is not None]

    results.upsert(changed(i for i in ids if i in known))  # reused descriptors
    structures = _candidate_structures(results, hashes, [ids[0] for ids in by_hash.values()])
    unique = {cast(str, hashes[i]): s for i, s in structures.items()}
    n_computed = 0
    chunk: list[str] = []
    cache_docs: list[Any] = []

    def flush() -> None:
        results.upsert(cache_docs)
        results.upsert(changed(chunk))
        cache_docs.clear()
        chunk.clear()

    for structure_hash, computed in ranking.iter_descriptors(unique, processes):
        values = descriptor_cache.descriptor_values(computed)
        cache_docs.append(descriptor_cache.as_doc(structure_hash, values))
        for material_id in by_hash[structure_hash]:
            known[material_id] = values
            chunk.append(material_id)
            _report(stage, 1, total)
        n_computed += 1
        if len(chunk) >= RANK_CHUNK:  # stored as it goes: a killed run keeps these
            flush()
    flush()
    return known, n_computed


@job(output_schema=RankingStageOutput)
def rank_candidates(
    predictions: PredictionStageOutput | dict[str, Any],
    processes: int | None = None,
    store: dict[str, Any] | None = None,
    top: int = 10,
    describe_top: int = 0,
    objective: str = "ar",
) -> RankingStageOutput:
    """Rank the predictions, first adding the descriptors any of them still lack.

    The prediction stage normally computes dimensionality and crystal system already; this
    stage computes those of predictions made before it did (or by an interrupted run).
    Descriptors are structural, so they are computed once per material and reused by any
    model's predictions of it. ``objective`` (:mod:`anisoscreen.screening.objectives`) is
    what ranks: a_r by default; candidates without a value rank last. The ``describe_top``
    best candidates also get robocrys's text description (~2 s each).
    """
    from anisoscreen.screening import descriptors as ranking
    from anisoscreen.screening.objectives import objective_value

    start = time.perf_counter()
    predictions = PredictionStageOutput.model_validate(predictions)
    ids = predictions.material_ids
    with _results(store) as results:
        docs = results.query(
            PredictionDoc, {"model": predictions.model, "material_id": {"$in": ids}}
        )
        known, n_computed = _add_descriptors(
            results, [d.material_id for d in docs], predictions.model, processes, len(docs), "rank"
        )

        def rank_key(doc: PredictionDoc) -> tuple[bool, float]:
            value = objective_value(doc, objective)
            return (value is not None, value if value is not None else 0.0)

        ranked = sorted(
            (d.model_copy(update=known.get(d.material_id) or {}) for d in docs),
            key=rank_key,
            reverse=True,
        )
        undescribed = [d for d in ranked[:describe_top] if d.description is None]
        if undescribed:
            wanted = {d.material_id for d in undescribed}
            cands = {
                c.material_id: c.structure
                for c in results.query(CandidateDoc, {"material_id": {"$in": sorted(wanted)}})
            }
            described = []
            for doc in undescribed:
                text = ranking.describe(cands[doc.material_id])
                described.append(
                    doc.model_copy(update={"description": text, "last_updated": utcnow()})
                )
                _report("describe", 1, len(undescribed))
            results.upsert(described)
    return RankingStageOutput(
        model=predictions.model,
        objective=objective,
        ranking=[
            RankedCandidate(
                material_id=d.material_id,
                formula=d.formula_pretty,
                anisotropy_ratio=d.anisotropy_ratio,
                eps_poly=d.eps_poly,
                dimensionality=d.dimensionality,
                objective_value=objective_value(d, objective),
                eps_total_poly=d.eps_total.eps_poly if d.eps_total else None,
                eps_total_anisotropy_ratio=d.eps_total.anisotropy_ratio if d.eps_total else None,
                figure_of_merit=d.figure_of_merit,
                birefringence=d.birefringence,
                space_group_symbol=d.space_group_symbol,
            )
            for d in ranked
        ],
        n_descriptors_computed=n_computed,
        seconds=time.perf_counter() - start,
        top=top,
    )


@job(output_schema=ValidationSelectionOutput)
def select_for_validation(
    ranking: RankingStageOutput | dict[str, Any],
    ar_threshold: float | None = None,
    top_k: int | None = None,
    validation_maker: Any = None,
    store: dict[str, Any] | None = None,
) -> Response:
    """Append DFT validation flows for the candidates :mod:`anisoscreen.validation.select` picks.

    The ranked candidates with a_r >= ``ar_threshold``, highest first, then the first
    ``top_k`` (with neither given, the reference threshold); each flow gets the prediction.
    """
    from jobflow import Flow

    from anisoscreen.validation.select import select_candidates, selection_rule

    ranking = RankingStageOutput.model_validate(ranking)
    top_k, ar_threshold = selection_rule(top_k, ar_threshold)
    with _results(store) as results:
        chosen, skipped = select_candidates(
            results,
            ids=[row.material_id for row in ranking.ranking],
            top_k=top_k,
            ar_min=ar_threshold,
            model=ranking.model,
        )
    output = ValidationSelectionOutput(
        selected=[candidate.material_id for candidate, _ in chosen], skipped=skipped
    )
    if not chosen or validation_maker is None:
        return Response(output=output)
    flows = [
        validation_maker.make(
            candidate.structure, material_id=candidate.material_id, prediction=prediction
        )
        for candidate, prediction in chosen
    ]
    return Response(output=output, addition=Flow(flows, name="validation"))


@job(output_schema=ScreeningRunDoc)
def record_screening_run(
    run_id: str,
    source: str,
    candidates: CandidateStageOutput | dict[str, Any],
    predictions: PredictionStageOutput | dict[str, Any],
    ranking: RankingStageOutput | dict[str, Any],
    store: dict[str, Any] | None = None,
) -> ScreeningRunDoc:
    """Store the campaign's provenance: criteria, counts per filter, timings, model."""
    candidates = CandidateStageOutput.model_validate(candidates)
    predictions = PredictionStageOutput.model_validate(predictions)
    ranking = RankingStageOutput.model_validate(ranking)
    doc = ScreeningRunDoc(
        run_id=run_id,
        source=source,
        criteria=candidates.criteria,
        n_input=candidates.n_input,
        removed_by=candidates.removed_by,
        n_candidates=len(candidates.material_ids),
        n_predicted=predictions.n_predicted,
        n_reused=predictions.n_reused,
        n_failed=len(predictions.failures) + len(candidates.failures),
        failures=candidates.failures + predictions.failures,
        timings={
            "candidates": candidates.seconds,
            "prediction": predictions.seconds,
            "prediction_descriptors": predictions.descriptor_seconds,
            "ranking": ranking.seconds,
        },
        model=predictions.model,
        model_version=predictions.model_version,
        finished_at=utcnow(),
    )
    with _results(store) as results:
        results.upsert([doc])
    return doc
