"""One campaign round, resumable at any point: select, submit, collect, fine-tune, re-predict.

The state is a :class:`~anisoscreen.schemas.CampaignDoc` in the results store (upsert key
``name``), written after every transition by compare-and-set on its ``revision``, while the
step holds the campaign's lock (:mod:`~anisoscreen.campaign.guard`): one writer at a time.

1. **select**: the strategy picks a batch from the current model's member predictions; the
   round and its picks are stored (``selected``).
2. **submit**: for each pick the validation flow is built and its flow and job uuids are
   stored (``prepared``) *before* the flow goes to jobflow-remote (or runs in this process
   with ``local``); then the pick is marked ``submitted``. A ``prepared`` pick found on
   resume is looked up in the queue by its flow uuid (``local``: its ValidationDocs), so
   nothing is submitted twice. A local run that fails is stored as ``failed`` with its reason
   (:mod:`~anisoscreen.campaign.local_run`).
3. **collect**: finished validations are copied into the store (:func:`anisoscreen.hpc.queue.
   collect`) and matched to the picks by job uuid; without all of them the step returns.
4. **train**: the ensemble is fine-tuned on every valid DFT label of the campaign and saved
   as model ``campaign-<name>-r<k>`` (kept if it already exists).
5. **predict**: the pool is re-predicted with the new version (PredictionDocs keyed by
   ``(material_id, model)``, so every version keeps its own), which becomes current. The
   pool's graphs come from the campaign's graph cache, built in the first pass.

With ``learner="gp"`` (:mod:`~anisoscreen.campaign.learner`) the networks stay frozen: the
pool's one prediction pass also keeps the members' structure embeddings, **select** refits the
residual GP on every label so far, recalibrates its sigma on their leave-one-out z-scores and
lets the strategy pick from the GP posterior; **train** and **predict** have nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anisoscreen.campaign.acquisition import (
    DiversityGuard,
    EmbeddingDiversity,
    group_labels,
    make_strategy,
)
from anisoscreen.campaign.cache import (
    cached_rows,
    read_embeddings,
    read_graphs,
    read_values,
    write_graphs,
    write_values,
)
from anisoscreen.campaign.finetune import (
    FinetuneConfig,
    finetune_model,
    labels_from_validations,
    replay_sample,
    training_entries,
)
from anisoscreen.campaign.guard import campaign_folder, check_name, save_campaign, step_lock
from anisoscreen.campaign.learner import (
    LogSpace,
    check_carry_siblings,
    check_learner,
    geometry_columns,
    pool_coordinates,
    posterior_values,
    residual_posterior,
    with_siblings,
)
from anisoscreen.campaign.residual import Posterior
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import (
    CampaignDoc,
    CampaignPick,
    CampaignRound,
    CandidateDoc,
    PredictionDoc,
    ValidationDoc,
    ValidationState,
    structure_hash,
    utcnow,
)
from anisoscreen.screening.objectives import check_objective, needs_ionic, tensor_values
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["load_campaign", "spread_calibrated", "start_campaign", "step_campaign"]

Progress = Callable[[str], None]
logger = logging.getLogger(__name__)
_FINISHED = {ValidationState.COMPLETED.value, ValidationState.FLAGGED.value}


def load_campaign(name: str, settings: AnisoscreenSettings) -> CampaignDoc:
    """The stored campaign ``name``."""
    with ResultsStore(settings) as results:
        return _load(name, results)


def _load(name: str, results: ResultsStore) -> CampaignDoc:
    docs = results.query(CampaignDoc, {"name": check_name(name)})
    if not docs:
        raise AnisoscreenError(f"no campaign {name!r} in {results.location}")
    return docs[0]


def _save(doc: CampaignDoc, results: ResultsStore) -> None:
    save_campaign(doc, results)


def _pool(doc: CampaignDoc, results: ResultsStore) -> list[CandidateDoc]:
    criteria = {"source": doc.source} if doc.source else {}
    pool = sorted(results.query(CandidateDoc, criteria), key=lambda c: c.material_id)
    if not pool:
        raise AnisoscreenError(f"campaign {doc.name}: no stored candidates (source {doc.source})")
    return pool


def _values_file(settings: AnisoscreenSettings, doc: CampaignDoc, model: str) -> Path:
    key = hashlib.sha256(model.encode()).hexdigest()[:16]
    return campaign_folder(settings, doc.name) / f"values-{key}.npz"


def _graphs_file(settings: AnisoscreenSettings, doc: CampaignDoc) -> Path:
    """The campaign's pool graphs (every model version of the campaign shares them)."""
    return campaign_folder(settings, doc.name) / "graphs.npz"


def _member_values(
    doc: CampaignDoc,
    pool: list[CandidateDoc],
    settings: AnisoscreenSettings,
    results: ResultsStore,
    count: Callable[[int, int | None], None] | None = None,
) -> tuple[list[str], np.ndarray, str, bool]:
    """Member objective values of the pool under the current model (cached per version).

    One pass of :meth:`~anisoscreen.model.inference.Predictor.predict_with_members`, the
    call behind ``predict``, writes the pool's PredictionDocs of that model version and
    gives the member tensors the values come from. Returns the predicted material ids, the
    values ``(members, ids)``, the model's stored name and whether the members' spread carries
    the model's calibration for the objective (:func:`spread_calibrated`). ``count(done,
    total)`` follows the structures predicted. A campaign that needs the embeddings
    (:func:`_needs_embeddings`) caches them from the same pass (:func:`_pool_embeddings`).
    The pool's graphs are built in the first pass and kept in the campaign folder
    (:func:`_graphs_file`): the next versions' passes build none.
    """
    from anisoscreen.model.inference import PredictionFailure, Predictor
    from anisoscreen.structures_io import StructureRecord

    path = _values_file(settings, doc, doc.current_model)
    embed = _needs_embeddings(doc)
    cached = read_values(path)
    if cached is not None and (not embed or read_embeddings(path) is not None):
        return cached
    predictor = Predictor.load(
        doc.current_model, settings.data_dir, device="auto", ionic_model=doc.ionic_model
    )
    graphs_path = _graphs_file(settings, doc)
    graphs = predictor.graph_cache = read_graphs(graphs_path)
    records = [
        StructureRecord(c.material_id, c.structure, c.source, fields={"band_gap": c.band_gap})
        for c in pool
    ]
    total, done = len(records), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if count is not None:
            count(done, total)

    gaps = {c.material_id: c.band_gap for c in pool}
    ids, docs, columns, embedded = [], [], [], []
    passed = predictor.predict_with_members(records, progress=advance, embeddings=embed)
    for prediction, members in passed:
        if isinstance(prediction, PredictionFailure) or members is None:
            continue
        ids.append(prediction.material_id)
        docs.append(prediction)
        if members.embedding is not None:
            embedded.append(members.embedding.mean(axis=0))
        electronic, ionic = members.electronic, members.ionic
        if ionic is not None:  # the static tensor's members: every electronic + every ionic one
            electronic = np.repeat(electronic, len(ionic), axis=0)
            ionic = np.tile(ionic, (len(members.electronic), 1, 1))
        columns.append(
            tensor_values(electronic, doc.objective, ionic, gaps[prediction.material_id])
        )
    values = np.stack(columns, axis=1) if columns else np.zeros((len(predictor.model.networks), 0))
    # the members' deviations from their mean carry the model's calibrated spread of this
    # objective (the predictor's, as stored in each document), so UCB, Thompson and
    # exploration all use the calibrated sigma; another objective keeps the members' own
    # spread, and says so, rather than borrowing another quantity's factor
    calibrated = spread_calibrated(predictor.model.metadata, doc.objective)
    if not calibrated:
        logger.warning(
            "campaign %s: the %s spread of %s is uncalibrated (no spread calibration for it)",
            doc.name,
            doc.objective,
            predictor.model.name,
        )
    elif values.shape[0] > 1 and values.shape[1]:
        centre = values.mean(axis=0)
        raw = values.std(axis=0, ddof=1)
        field = _CALIBRATED_SPREADS[doc.objective]
        target = np.array([getattr(d, field) or 0.0 for d in docs])
        factor = np.divide(target, raw, out=np.ones_like(raw), where=(raw > 0) & (target > 0))
        values = centre + factor * (values - centre)
    results.upsert(docs)
    if predictor.graphs_built:
        write_graphs(graphs_path, graphs)
    embeddings = None
    if embed:
        embeddings = np.stack(embedded) if embedded else np.zeros((0, 0))
    write_values(path, ids, values, predictor.model.name, calibrated, embeddings)
    return ids, values, predictor.model.name, calibrated


def _needs_embeddings(doc: CampaignDoc) -> bool:
    """Whether the campaign's learner or diversity works in the embedding space."""
    return doc.learner == "gp" or doc.diversity == "embedding"


def _pool_embeddings(doc: CampaignDoc, settings: AnisoscreenSettings) -> np.ndarray:
    """The member-mean embeddings cached by :func:`_member_values` (current model)."""
    embeddings = read_embeddings(_values_file(settings, doc, doc.current_model))
    if embeddings is None:
        raise AnisoscreenError(f"campaign {doc.name}: the pool's embeddings are not cached")
    return embeddings


_CALIBRATED_SPREADS = {"ar": "anisotropy_ratio_std", "eps-poly": "eps_poly_std"}
"""The document field holding each objective's calibrated spread (same quantity, same members);
the model's ``spread_calibration`` holds it under the field's name without ``_std``."""


def spread_calibrated(metadata: dict[str, Any], objective: str) -> bool:
    """Whether a model (its ``metadata``) calibrates the ensemble spread of ``objective``.

    Training calibrates a_r and eps_poly of eps_inf (``ar``, ``eps-poly``); any other
    objective (``birefringence``, ``fom``, the static-tensor ones) has an uncalibrated spread.
    """
    field = _CALIBRATED_SPREADS.get(objective)
    stored = metadata.get("spread_calibration") or {}
    return field is not None and field.removesuffix("_std") in stored


def start_campaign(
    doc: CampaignDoc,
    settings: AnisoscreenSettings,
    count: Callable[[int, int | None], None] | None = None,
) -> int:
    """Store a new campaign and predict its pool; returns the number of predicted candidates.

    ``count(done, total)`` follows the pool's prediction (see :func:`_member_values`).
    """
    check_name(doc.name)
    check_objective(doc.objective, doc.ionic_model)  # one line when the model set lacks one
    make_strategy(doc.strategy, doc.kappa)  # a bad name fails before anything is stored
    check_learner(doc.learner)
    check_carry_siblings(doc.carry_siblings, doc.learner, doc.objective)
    if doc.diversity not in ("group", "embedding"):
        raise AnisoscreenError(f"unknown diversity {doc.diversity!r}; use group or embedding")
    with ResultsStore(settings) as results:
        if results.query(CampaignDoc, {"name": doc.name}):
            raise AnisoscreenError(f"campaign {doc.name!r} exists; use `campaign step`")
        pool = _pool(doc, results)
        ids, *_ = _member_values(doc, pool, settings, results, count)
        save_campaign(doc, results, new=True)
    return len(ids)


def _select(
    doc: CampaignDoc, settings: AnisoscreenSettings, results: ResultsStore
) -> CampaignRound | None:
    remaining = doc.budget - doc.n_picked
    if remaining <= 0:
        return None
    pool = _pool(doc, results)
    ids, values, model_name, calibrated = _member_values(doc, pool, settings, results)
    by_id = {c.material_id: c for c in pool}
    picked = doc.picked_ids
    available = np.array([i not in picked for i in ids])
    strategy = make_strategy(doc.strategy, doc.kappa)
    structures = [by_id[i].structure for i in ids]
    hashes = [by_id[i].structure_hash or structure_hash(by_id[i].structure) for i in ids]
    folder = campaign_folder(settings, doc.name)

    def rows(name: str, function: Callable[[list[Structure]], Any]) -> np.ndarray:
        """``function`` of the pool's structures, kept in the campaign folder by hash."""
        return cached_rows(
            folder / f"{name}.npz",
            hashes,
            lambda at: np.asarray(function([structures[i] for i in at])),
        )

    groups: list[str] | None
    if doc.group_by == "prototype":  # a symmetry analysis each: once per structure
        groups = [str(g) for g in rows("prototypes", lambda s: group_labels(s, "prototype"))]
    else:
        groups = group_labels(structures, doc.group_by)
    guard = DiversityGuard(groups, doc.max_per_group)
    logged = LogSpace(doc.objective)
    scale, coords = None, None
    if _needs_embeddings(doc):
        base = logged.forward(values.mean(axis=0))
        extra = rows("geometry", geometry_columns) if doc.gp_geometry else None
        coords = pool_coordinates(_pool_embeddings(doc, settings), base, extra)
    if doc.diversity == "embedding" and coords is not None:
        guard = EmbeddingDiversity.from_pool(coords, 0.1, guard.groups, doc.max_per_group)
    carried: list[str] = []
    if doc.learner == "gp" and coords is not None:
        posterior, scale = _gp_posterior(doc, ids, values, coords, logged)
        if doc.carry_siblings:
            cache = folder / "siblings.npz"
            posterior, known = _carried(doc, ids, posterior, cache, structures, hashes)
            available[known] = False  # the laminate law gives them: no DFT spent on them
            carried = [ids[i] for i in known]
        values = posterior_values(posterior, (doc.seed, len(doc.rounds), 7))
    rng = np.random.default_rng([doc.seed, len(doc.rounds)])
    indices = strategy.select(values, available, min(doc.batch_size, remaining), rng, guard)
    if not indices:
        return None
    if doc.learner == "gp":
        values = logged.inverse(values)  # the picks record objective values
    mean = values.mean(axis=0)
    spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(ids))
    picks = [
        CampaignPick(
            material_id=ids[i],
            formula_pretty=by_id[ids[i]].formula_pretty,
            predicted=float(mean[i]),
            spread=float(spread[i]),
        )
        for i in indices
    ]
    return CampaignRound(
        index=len(doc.rounds),
        model=model_name,
        picks=picks,
        spread_calibrated=calibrated,
        sigma_scale=scale,
        carried=carried,
    )


def _carried(
    doc: CampaignDoc,
    ids: list[str],
    posterior: Posterior,
    cache: Path,
    structures: list[Structure],
    hashes: list[str],
) -> tuple[Posterior, np.ndarray]:
    """The posterior with the campaign's DFT labels carried to their siblings in the pool.

    Also returns the indices carried to (:func:`~anisoscreen.campaign.learner.with_siblings`).
    The pool's :func:`~anisoscreen.campaign.siblings.sibling_table` is kept in ``cache``,
    keyed by the pool's structure hashes together (its groups span the whole pool).
    """
    from anisoscreen.campaign.siblings import sibling_table

    index = {m: k for k, m in enumerate(ids)}
    labels = _revealed(doc, index, "observed_tensor")
    if not labels:
        return posterior, np.zeros(0, dtype=np.int64)
    pool_key = hashlib.sha256("|".join(hashes).encode()).hexdigest()
    table = cached_rows(cache, [pool_key], lambda _: sibling_table(structures)[None])
    return with_siblings(
        posterior,
        table[0],
        [index[m] for m in labels],
        [np.asarray(t, dtype=float) for t in labels.values()],
        doc.objective,
    )


def _revealed(doc: CampaignDoc, index: dict[str, int], field: str) -> dict[str, Any]:
    """``field`` (``observed`` or ``observed_tensor``) of every pick in the pool that has it."""
    return {
        p.material_id: getattr(p, field)
        for r in doc.rounds
        for p in r.picks
        if getattr(p, field) is not None and p.material_id in index
    }


def _gp_posterior(
    doc: CampaignDoc, ids: list[str], values: np.ndarray, coords: np.ndarray, logged: LogSpace
) -> tuple[Posterior, float | None]:
    """The pool's posterior after every label of the campaign so far, and the sigma scale.

    Before the first label: the ensemble's mean and (calibrated) spread of the (log)
    objective. After: :func:`~anisoscreen.campaign.learner.residual_posterior` on the labels.
    """
    members = logged.forward(values)
    base = logged.forward(values.mean(axis=0))
    index = {m: k for k, m in enumerate(ids)}
    labels = _revealed(doc, index, "observed")
    if not labels:
        spread = members.std(axis=0, ddof=1) if len(members) > 1 else np.full(len(base), 0.1)
        return Posterior(base, np.maximum(spread, 1e-3)), None
    labelled = np.array([index[m] for m in labels])
    observed = logged.forward(np.array(list(labels.values()), dtype=float))
    return residual_posterior(base, coords, labelled, observed)


def _went_through(doc: CampaignDoc, pick: CampaignPick, jc: Any, results: ResultsStore) -> bool:
    """Whether a ``prepared`` pick was submitted (or run here) before an interruption."""
    if doc.local:
        stored = results.keys(ValidationDoc, "job_uuid", {"material_id": pick.material_id})
        return bool(pick.job_uuids) and set(pick.job_uuids) <= stored
    return pick.flow_uuid is not None and bool(jc.get_flows_info(flow_ids=[pick.flow_uuid]))


def _submit(
    doc: CampaignDoc,
    current: CampaignRound,
    settings: AnisoscreenSettings,
    results: ResultsStore,
    say: Progress,
) -> None:
    """Record each pick's flow, then submit it; resumes ``prepared`` picks without resubmitting."""
    from contextlib import nullcontext

    from anisoscreen.campaign.local_run import run_local_validation
    from anisoscreen.hpc.config import job_controller, resolve_project_name
    from anisoscreen.hpc.submit import record_jobs, submit_validation_flow
    from anisoscreen.validation.makers import dfpt_validation_maker

    maker = dfpt_validation_maker()
    candidates = {
        c.material_id: c
        for c in results.query(
            CandidateDoc, {"material_id": {"$in": [p.material_id for p in current.picks]}}
        )
    }
    predictions = {
        p.material_id: p
        for p in results.query(
            PredictionDoc,
            {
                "material_id": {"$in": [p.material_id for p in current.picks]},
                "model": current.model,
            },
        )
    }
    with nullcontext(None) if doc.local else job_controller(doc.project) as jc:
        project = None if doc.local else resolve_project_name(jc, doc.project)
        worker = "local" if doc.local else (doc.worker or "vasp")
        for pick in current.picks:
            if pick.state == "prepared" and _went_through(doc, pick, jc, results):
                pick.state = "submitted"  # it went through before an interruption
                _save(doc, results)
                continue
            if pick.state not in ("selected", "prepared"):
                continue
            candidate = candidates[pick.material_id]
            flow = maker.make(
                candidate.structure,
                material_id=pick.material_id,
                prediction=predictions.get(pick.material_id),
            )
            records = record_jobs(flow)
            pick.flow_uuid = flow.uuid
            pick.job_uuids = [job.function_kwargs["job_uuid"] for job in records]
            pick.state = "prepared"
            _save(doc, results)  # recorded before it is submitted
            if doc.local:
                folder = campaign_folder(settings, doc.name) / "local" / flow.uuid
                failures = run_local_validation(flow, records, candidate, settings, results, folder)
                if failures:
                    say(f"{pick.material_id} failed locally: {failures[0]}")
            else:
                submit_validation_flow(flow, candidate, results, worker, project)
            pick.state = "submitted"
            _save(doc, results)
            say(f"submitted {pick.material_id} (flow {flow.uuid})")


def _collect(
    doc: CampaignDoc, current: CampaignRound, settings: AnisoscreenSettings, results: ResultsStore
) -> int:
    """Match stored ValidationDocs to the picks; returns how many are still pending."""
    if not doc.local:
        from anisoscreen.hpc.queue import collect

        collect(settings, doc.project)
    pending = 0
    for pick in current.picks:
        if pick.state in ("completed", "failed"):
            continue
        docs = [
            d
            for d in results.query(ValidationDoc, {"material_id": pick.material_id})
            if d.job_uuid in pick.job_uuids and d.calc_type == "dfpt"
        ]
        finished = [d for d in docs if d.state.value in _FINISHED]
        failed = [d for d in docs if d.state == ValidationState.FAILED]
        if finished:
            best = finished[0]
            pick.state = "completed" if best.is_valid else "failed"
            pick.error = "; ".join(best.flags) or None
            if best.is_valid and best.epsilon_electronic is not None:
                pick.observed = _observed(doc, best, results)
                pick.observed_tensor = np.asarray(best.epsilon_electronic, float).tolist()
        elif failed:
            pick.state, pick.error = "failed", failed[0].error
        else:
            pending += 1
    return pending


def _observed(doc: CampaignDoc, best: ValidationDoc, results: ResultsStore) -> float | None:
    """The campaign's objective of a DFT result (``None`` when it lacks a needed part)."""
    ionic = None if best.epsilon_ionic is None else np.asarray(best.epsilon_ionic)
    if ionic is None and needs_ionic(doc.objective):
        return None
    gap = None
    if doc.objective == "fom":
        found = results.query(CandidateDoc, {"material_id": best.material_id})
        gap = found[0].band_gap if found else None
    return float(tensor_values(np.asarray(best.epsilon_electronic), doc.objective, ionic, gap))


def _train(
    doc: CampaignDoc, current: CampaignRound, settings: AnisoscreenSettings, results: ResultsStore,
    say: Progress,
) -> str | None:  # fmt: skip
    """Fine-tune the current model on every valid label of the campaign (or keep it)."""
    from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model

    if doc.learner == "gp":
        labelled = sum(p.observed is not None for r in doc.rounds for p in r.picks)
        say(f"gp learner: the model is kept; the next selection refits on {labelled} label(s)")
        return None
    if not doc.finetune:
        return None
    picked = sorted(doc.picked_ids)
    validations = results.query(ValidationDoc, {"material_id": {"$in": picked}})
    structures = {
        c.material_id: c.structure
        for c in results.query(CandidateDoc, {"material_id": {"$in": picked}})
    }
    labels = labels_from_validations(validations, structures)
    if not labels:
        say("no valid DFT labels yet: the model is kept")
        return None
    name = f"campaign-{doc.name}-r{current.index + 1}"
    folder = settings.data_dir / "models" / name
    if not (folder / MODEL_FILENAME).is_file():
        model = load_model(doc.current_model, settings.data_dir)
        config = FinetuneConfig(**{**doc.finetune, "seed": doc.seed * 100 + current.index})
        replay = replay_sample(
            training_entries(model.metadata, settings.shared),
            config.replay,
            config.seed,
            set(picked),
        )
        finetune_model(model, labels, replay, config, folder, name, f"r{current.index + 1}", say)
    say(f"fine-tuned {name} on {len(labels)} DFT labels")
    return name


def step_campaign(
    name: str,
    settings: AnisoscreenSettings,
    wait: float = 0.0,
    poll: float = 10.0,
    progress: Progress | None = None,
) -> str:
    """Advance campaign ``name`` as far as it can go; returns a one-line outcome.

    Parameters
    ----------
    name
        The campaign.
    settings
        Stores, data folder, shared data.
    wait
        Seconds to wait for pending validations before returning (0: return at once).
    poll
        Seconds between collection attempts while waiting.
    progress
        Called with one line per event.
    """
    say = progress or (lambda line: None)
    load_campaign(name, settings)  # an unknown name fails before any folder or lock is made
    with step_lock(settings, name), ResultsStore(settings) as results:
        doc = _load(name, results)  # read again under the lock
        current = doc.rounds[-1] if doc.rounds and doc.rounds[-1].stage != "done" else None
        if current is None:
            current = _select(doc, settings, results)
            if current is None:
                return f"campaign {name}: budget spent ({doc.n_picked}/{doc.budget})"
            doc.rounds.append(current)
            _save(doc, results)
            say(f"round {current.index}: picked {', '.join(p.material_id for p in current.picks)}")
            if not current.spread_calibrated:
                say(
                    f"round {current.index}: the {doc.objective} spread of {current.model} is "
                    "uncalibrated (the model has no spread calibration for this objective)"
                )
        if current.stage == "selected":
            _submit(doc, current, settings, results, say)
            current.stage = "submitted"
            _save(doc, results)
        if current.stage == "submitted":
            deadline = time.monotonic() + wait
            pending = _collect(doc, current, settings, results)
            while pending and time.monotonic() < deadline:
                time.sleep(poll)
                pending = _collect(doc, current, settings, results)
            _save(doc, results)
            if pending:
                return f"round {current.index}: waiting for {pending} validation(s)"
            current.stage = "collected"
            _save(doc, results)
        if current.stage == "collected":
            current.new_model = _train(doc, current, settings, results, say)
            current.stage = "trained"
            _save(doc, results)
        if current.stage == "trained":
            if current.new_model:
                doc.current_model = current.new_model
                pool = _pool(doc, results)
                _member_values(doc, pool, settings, results)
            current.stage, current.finished_at = "done", utcnow()
            _save(doc, results)
    found = [p.observed for p in current.picks if p.observed is not None]
    best = f", best {doc.objective} {max(found):.3f}" if found else ""
    return (
        f"round {current.index} done: {len(found)}/{len(current.picks)} labelled{best}; "
        f"model {doc.current_model}"
    )
