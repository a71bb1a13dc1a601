"""HPC dispatch through jobflow-remote: project config, submission, status, collection.

jobflow-remote keeps a *queue* database (job states, on MongoDB) and runs a *Runner* that
uploads jobs to workers, submits them to SLURM and downloads their outputs into the
*JobStore*. anisoscreen adds:

* :func:`project_config` / :func:`write_project_config` — a project with a GPU worker for
  inference and a CPU worker for VASP, whose JobStore is anisoscreen's own store (so results
  and job outputs live in the same backend);
* :func:`submit_validations` — validation flows for stored candidates (by id, or the top-k by
  predicted a_r), never twice for the same candidate: one already validated (a
  ``ValidationDoc`` that is completed, flagged or submitted) or already in the queue (a job
  with its ``material_id`` in the metadata, in any state) is skipped with the reason;
* :func:`submit_screening` — any flow (e.g. the screening flow) to a chosen worker;
* :func:`queue_status` — job counts per state and the failed jobs with their reason;
* :func:`collect` — finished ``ValidationDoc`` outputs (and failures) into the results store;
* :func:`rerun_failed` — put failed jobs back in the queue, in one call.

The project is chosen like jobflow-remote does: by name, else ``$JFREMOTE_PROJECT``, else
the only project in ``$JFREMOTE_PROJECTS_FOLDER`` (default ``~/.jfremote``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CandidateDoc, PredictionDoc, ValidationDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store import ResultsStore, build_job_store

if TYPE_CHECKING:
    from jobflow import Flow

__all__ = [
    "CPU_WORKER",
    "GPU_WORKER",
    "CollectReport",
    "HPCError",
    "StatusReport",
    "SubmitReport",
    "collect",
    "init_queue",
    "job_controller",
    "project_config",
    "queue_status",
    "rerun_failed",
    "select_candidates",
    "submit_screening",
    "submit_validations",
    "write_project_config",
]

GPU_WORKER = "gpu"
"""Worker name for model inference (SLURM ``gres: gpu:1``)."""
CPU_WORKER = "vasp"
"""Worker name for VASP (CPU nodes)."""

DEFAULT_GPU_RESOURCES: dict[str, Any] = {
    "nodes": 1,
    "ntasks": 1,
    "cpus_per_task": 8,
    "gres": "gpu:1",
    "time": "02:00:00",
}
DEFAULT_CPU_RESOURCES: dict[str, Any] = {
    "nodes": 1,
    "ntasks": 64,
    "ntasks_per_node": 64,
    "time": "24:00:00",
}
DEFAULT_VASP_PRE_RUN = "module load vasp\nexport ATOMATE2_VASP_CMD='srun vasp_std'"
DEFAULT_GPU_PRE_RUN = "module load cuda"

FAILED_STATES = ("FAILED", "REMOTE_ERROR")
"""jobflow-remote states of a job that will not finish without help."""


class HPCError(AnisoscreenError):
    """jobflow-remote is not configured, or a request to it cannot be carried out."""


# -- project configuration --------------------------------------------------------------
def job_store_spec(settings: AnisoscreenSettings | None = None) -> dict[str, Any]:
    """anisoscreen's jobflow ``JobStore`` (with the ``data`` store) as a serialised dict."""
    return build_job_store(settings or get_settings()).as_dict()


def queue_store_spec(uri: str, database: str = "anisoscreen_queue") -> dict[str, Any]:
    """A jobflow-remote queue store on MongoDB (``mongodb://`` or ``mongodb+srv://``)."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise HPCError(f"the queue needs a MongoDB URI (mongodb://...), not {uri!r}")
    import inspect

    from maggma.stores import MongoStore

    # maggma >= 0.77 merged MongoURIStore (now deprecated) into MongoStore(uri=...)
    uri_in_mongostore = "uri" in inspect.signature(MongoStore.__init__).parameters
    return {
        "@module": "maggma.stores.mongolike",
        "@class": "MongoStore" if uri_in_mongostore else "MongoURIStore",
        "uri": uri,
        "database": database,
        "collection_name": "jobs",
    }


def _worker(
    work_dir: Path,
    resources: dict[str, Any],
    pre_run: str | None,
    scheduler: str,
    host: str | None,
    user: str | None,
    execution_cmd: str | None,
) -> dict[str, Any]:
    worker: dict[str, Any] = {
        "type": "remote" if host else "local",
        "scheduler_type": scheduler,
        "work_dir": str(work_dir),
        "resources": dict(resources),
    }
    if host:
        worker["host"] = host
        if user:
            worker["user"] = user
    if pre_run:
        worker["pre_run"] = pre_run
    if execution_cmd:
        worker["execution_cmd"] = execution_cmd
    return worker


def project_config(
    name: str = "anisoscreen",
    settings: AnisoscreenSettings | None = None,
    *,
    queue_uri: str = "mongodb://localhost:27017",
    queue_database: str = "anisoscreen_queue",
    queue_store: dict[str, Any] | None = None,
    work_dir: str | Path = "~/anisoscreen_runs",
    scheduler: str = "slurm",
    host: str | None = None,
    user: str | None = None,
    gpu_resources: dict[str, Any] | None = None,
    cpu_resources: dict[str, Any] | None = None,
    gpu_pre_run: str | None = DEFAULT_GPU_PRE_RUN,
    vasp_pre_run: str | None = DEFAULT_VASP_PRE_RUN,
    execution_cmd: str | None = None,
    runner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A jobflow-remote project (as a dict) with a GPU and a CPU (VASP) worker.

    Parameters
    ----------
    name
        Project name (the file is ``<projects folder>/<name>.yaml``).
    settings
        anisoscreen settings; their store becomes the project's JobStore.
    queue_uri, queue_database
        MongoDB holding jobflow-remote's queue (ignored when ``queue_store`` is given).
    queue_store
        A serialised maggma ``MongoStore`` for the queue, instead of ``queue_uri``.
    work_dir
        Folder on the cluster under which each worker runs its jobs (``gpu/``, ``vasp/``).
    scheduler
        qtoolkit scheduler: ``slurm`` (default), ``pbs``, ``sge`` or ``shell``.
    host, user
        SSH host and user of the cluster; ``None`` for a Runner on the cluster itself.
    gpu_resources, cpu_resources
        SLURM resources (qtoolkit keys: ``nodes``, ``ntasks``, ``ntasks_per_node``,
        ``cpus_per_task``, ``time``, ``partition``, ``account``, ``qos``, ``gres``...); given,
        they replace the defaults (:data:`DEFAULT_GPU_RESOURCES`, :data:`DEFAULT_CPU_RESOURCES`).
    gpu_pre_run, vasp_pre_run
        Shell lines run before each job (``module load``; ``ATOMATE2_VASP_CMD``).
    execution_cmd
        Replaces ``jf -fe execution run {}`` on both workers (e.g. inside a container).
    runner
        jobflow-remote ``RunnerOptions`` (polling delays...).
    """
    settings = settings or get_settings()
    if queue_store is None and queue_database == settings.database:
        raise HPCError(
            f"the queue database must differ from the results database {settings.database!r}: "
            "both would use a 'jobs' collection"
        )
    root = Path(work_dir).expanduser()
    if not root.is_absolute():
        raise HPCError(f"work_dir must be an absolute path, not {work_dir!r}")
    workers = {
        GPU_WORKER: _worker(
            root / GPU_WORKER,
            DEFAULT_GPU_RESOURCES if gpu_resources is None else gpu_resources,
            gpu_pre_run,
            scheduler,
            host,
            user,
            execution_cmd,
        ),
        CPU_WORKER: _worker(
            root / CPU_WORKER,
            DEFAULT_CPU_RESOURCES if cpu_resources is None else cpu_resources,
            vasp_pre_run,
            scheduler,
            host,
            user,
            execution_cmd,
        ),
    }
    config: dict[str, Any] = {
        "name": name,
        "workers": workers,
        "queue": {"store": queue_store or queue_store_spec(queue_uri, queue_database)},
        "jobstore": job_store_spec(settings),
    }
    if runner:
        config["runner"] = dict(runner)
    return config


def validate_project_config(config: dict[str, Any]) -> Any:
    """Parse a project dict with jobflow-remote (raises :class:`HPCError` when invalid)."""
    from jobflow_remote.config.base import Project

    try:
        return Project.model_validate(config)
    except Exception as exc:  # pydantic ValidationError, store errors
        raise HPCError(f"invalid jobflow-remote project: {exc}") from exc


def projects_folder() -> Path:
    """jobflow-remote's projects folder (``$JFREMOTE_PROJECTS_FOLDER``, ``~/.jfremote``)."""
    from jobflow_remote import SETTINGS

    return Path(SETTINGS.projects_folder).expanduser()


def write_project_config(
    path: str | Path | None = None, *, overwrite: bool = False, **kwargs: Any
) -> Path:
    """Write a filled-in project file (see :func:`project_config` for ``kwargs``).

    The file goes to ``path``, else to ``<projects folder>/<name>.yaml``; it is checked with
    jobflow-remote's own parser first. An existing file is kept unless ``overwrite``.
    """
    config = project_config(**kwargs)
    validate_project_config(config)
    target = Path(path).expanduser() if path else projects_folder() / f"{config['name']}.yaml"
    if target.exists() and not overwrite:
        raise HPCError(f"{target} exists; pass overwrite=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# jobflow-remote project '{config['name']}' written by anisoscreen.\n"
        "# Workers: 'gpu' (model inference) and 'vasp' (DFT validation). The jobstore is\n"
        "# anisoscreen's store. Check resources and pre_run, then: jf project check -e\n"
    )
    target.write_text(header + yaml.safe_dump(config, sort_keys=False))
    target.chmod(0o600)  # it may hold database passwords
    return target


# -- connection -------------------------------------------------------------------------
@contextlib.contextmanager
def job_controller(project: str | None = None) -> Iterator[Any]:
    """A connected jobflow-remote ``JobController`` for ``project`` (closed afterwards)."""
    from jobflow_remote import JobController
    from jobflow_remote.config.base import ConfigError

    try:
        jc = JobController.from_project_name(project)
    except ConfigError as exc:
        raise HPCError(
            f"jobflow-remote project {project or '(default)'} is not usable: {exc}. "
            "Write one with `anisoscreen hpc-config`."
        ) from exc
    try:
        if jc.auxiliary.find_one({"next_id": {"$exists": True}}) is None:
            raise HPCError(
                f"the queue database of project {_project_name(jc, project)} is not "
                "initialised: run `jf admin reset` once (or anisoscreen.hpc.submit.init_queue)"
            )
        yield jc
    finally:
        jc.close()


def init_queue(project: str | None = None) -> bool:
    """Initialise an *empty* queue database (counters and indexes, as ``jf admin reset``).

    Returns ``False`` and changes nothing when the queue already holds flows.
    """
    from jobflow_remote import JobController

    jc = JobController.from_project_name(project)
    try:
        if jc.flows.count_documents({}) or jc.auxiliary.find_one({"next_id": {"$exists": True}}):
            return False
        return bool(jc.reset(max_limit=1))
    finally:
        jc.close()


def _project_name(jc: Any, project: str | None) -> str | None:
    return getattr(getattr(jc, "project", None), "name", None) or project


def _default_worker(jc: Any, worker: str | None) -> str:
    workers = list(getattr(jc.project, "workers", {}) or {})
    if worker:
        if workers and worker not in workers:
            raise HPCError(f"worker {worker!r} is not in the project; known: {workers}")
        return worker
    if CPU_WORKER in workers:
        return CPU_WORKER
    if not workers:
        raise HPCError("the jobflow-remote project has no workers")
    return workers[0]


# -- selection and submission ----------------------------------------------------------
def select_candidates(
    results: ResultsStore,
    *,
    ids: Iterable[str] | None = None,
    top_k: int | None = None,
    ar_min: float | None = None,
    model: str | None = None,
) -> tuple[list[tuple[CandidateDoc, PredictionDoc | None]], list[tuple[str, str]]]:
    """Stored candidates to validate, with their prediction, and those that cannot be.

    With ``ids``, exactly those candidates (``ar_min`` / ``top_k`` still apply to those with
    a prediction). Otherwise the predictions with a_r >= ``ar_min``, highest a_r first, one
    per material, the first ``top_k``. ``model`` restricts the predictions to one model.

    Returns
    -------
    tuple
        ``([(candidate, prediction), ...], [(material_id, reason), ...])``.
    """
    criteria: dict[str, Any] = {}
    if model:
        criteria["model"] = model
    skipped: list[tuple[str, str]] = []
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        criteria["material_id"] = {"$in": wanted}
    if ar_min is not None:
        criteria["anisotropy_ratio"] = {"$gte": ar_min}
    predictions = results.query(PredictionDoc, criteria, sort={"anisotropy_ratio": -1})
    best: dict[str, PredictionDoc] = {}
    for prediction in predictions:
        best.setdefault(prediction.material_id, prediction)
    order = wanted if ids is not None else list(best)
    if ids is not None and ar_min is not None:
        for mid in [m for m in order if m not in best]:
            skipped.append((mid, f"no prediction with a_r >= {ar_min:g}"))
        order = [m for m in order if m in best]
    if top_k is not None:
        order = order[:top_k]
    candidates = {
        c.material_id: c for c in results.query(CandidateDoc, {"material_id": {"$in": order}})
    }
    selected = []
    for mid in order:
        if mid not in candidates:
            skipped.append((mid, "no stored candidate (structure) with this id"))
            continue
        selected.append((candidates[mid], best.get(mid)))
    return selected, skipped


@dataclass
class SubmitReport:
    """What :func:`submit_validations` / :func:`submit_screening` did."""

    project: str | None
    worker: str | None
    submitted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _known_validation(results: ResultsStore, material_id: str, calc_type: str) -> str | None:
    docs = results.query(
        ValidationDoc,
        {
            "material_id": material_id,
            "calc_type": calc_type,
            "state": {
                "$in": [
                    ValidationState.COMPLETED.value,
                    ValidationState.FLAGGED.value,
                    ValidationState.SUBMITTED.value,
                ]
            },
        },
    )
    if not docs:
        return None
    states = sorted({d.state.value for d in docs})
    if states == [ValidationState.SUBMITTED.value]:
        return f"{calc_type} already in flight (a submitted validation is recorded)"
    return f"{calc_type} already validated ({', '.join(states)})"


def _queued(jc: Any, material_id: str, calc_type: str) -> str | None:
    from anisoscreen.validation.makers import META_CALC, META_MATERIAL

    infos = jc.get_jobs_info(metadata={META_MATERIAL: material_id, META_CALC: calc_type})
    if not infos:
        return None
    states = sorted({str(i.state.value) for i in infos})
    hint = "; use `anisoscreen rerun`" if set(states) & set(FAILED_STATES) else ""
    return f"{calc_type} already in the queue (jobs {', '.join(states)}){hint}"


def _record_jobs(flow: Flow) -> list[Any]:
    from anisoscreen.validation.makers import RECORD_JOB_NAME

    return [j for j, _ in flow.iterflow() if j.name.startswith(RECORD_JOB_NAME)]


def submit_validations(
    settings: AnisoscreenSettings | None = None,
    *,
    project: str | None = None,
    worker: str | None = None,
    ids: Iterable[str] | None = None,
    top_k: int | None = None,
    ar_min: float | None = None,
    model: str | None = None,
    optics: bool = False,
    maker: Any = None,
    resources: dict[str, Any] | None = None,
    exec_config: str | None = None,
    dry_run: bool = False,
) -> SubmitReport:
    """Submit one validation flow per selected candidate to a jobflow-remote worker.

    A calculation (``dfpt``, ``optics``) already validated or queued for a candidate is not
    submitted again; with ``optics``, a candidate validated by DFPT only gets the optics part.

    Parameters
    ----------
    settings
        Where the candidates, predictions and validations are stored.
    project, worker
        jobflow-remote project and worker (default: the ``vasp`` worker, else the first).
    ids, top_k, ar_min, model
        Candidate selection, see :func:`select_candidates`. At least one is required.
    optics
        Add the optics (LOPTICS) calculation to the DFPT one.
    maker
        A :class:`~anisoscreen.validation.makers.ValidationMaker` replacing the default.
    resources, exec_config
        Passed to ``jobflow_remote.submit_flow`` (override the worker's defaults).
    dry_run
        Only report what would be submitted.

    Returns
    -------
    SubmitReport
        The submitted flows (material id, flow uuid, db ids) and the skipped candidates.
    """
    from jobflow_remote import submit_flow

    from anisoscreen.validation.makers import MPOpticsMaker, ValidationMaker

    if ids is None and top_k is None and ar_min is None:
        raise HPCError("choose candidates with ids, top_k or ar_min")
    settings = settings or get_settings()
    if maker is None:
        maker = ValidationMaker(optics_maker=MPOpticsMaker() if optics else None)
    calc_types = (["dfpt"] if maker.dielectric_maker is not None else []) + (
        ["optics"] if maker.optics_maker is not None else []
    )
    with ResultsStore(settings) as results, job_controller(project) as jc:
        project_name = _project_name(jc, project)
        worker = _default_worker(jc, worker)
        report = SubmitReport(project=project_name, worker=worker)
        selected, report.skipped = select_candidates(
            results, ids=ids, top_k=top_k, ar_min=ar_min, model=model
        )
        for candidate, prediction in selected:
            mid = candidate.material_id
            reasons = {
                c: _known_validation(results, mid, c) or _queued(jc, mid, c) for c in calc_types
            }
            done = [r for r in reasons.values() if r]
            if done:
                report.skipped.append((mid, "; ".join(done)))
            if len(done) == len(calc_types):
                continue
            flow_maker = dataclasses.replace(
                maker,
                dielectric_maker=None if reasons.get("dfpt") else maker.dielectric_maker,
                optics_maker=None if reasons.get("optics") else maker.optics_maker,
            )
            flow = flow_maker.make(candidate.structure, material_id=mid, prediction=prediction)
            entry: dict[str, Any] = {
                "material_id": mid,
                "flow_uuid": flow.uuid,
                "db_ids": [],
                "calc_types": [c for c in calc_types if not reasons[c]],
            }
            if not dry_run:
                entry["db_ids"] = submit_flow(
                    flow,
                    worker=worker,
                    project=project_name,
                    resources=resources,
                    exec_config=exec_config,
                )
                results.upsert(
                    _submitted_doc(job, candidate, flow.uuid, worker, project_name)
                    for job in _record_jobs(flow)
                )
            report.submitted.append(entry)
    return report


def _submitted_doc(
    record_job: Any, candidate: CandidateDoc, flow_uuid: str, worker: str, project: str | None
) -> ValidationDoc:
    kw = record_job.function_kwargs
    return ValidationDoc(
        material_id=candidate.material_id,
        formula_pretty=candidate.formula_pretty,
        job_uuid=kw["job_uuid"],
        flow_uuid=flow_uuid,
        calc_type=kw["calc_type"],
        state=ValidationState.SUBMITTED,
        input_settings={"requested": kw.get("input_settings") or {}},
        prediction_model=kw.get("prediction_model"),
        predicted_anisotropy_ratio=kw.get("predicted_anisotropy_ratio"),
        predicted_dielectric_tensor=kw.get("predicted_dielectric_tensor"),
        worker=worker,
        project=project,
    )


def submit_screening(
    flow: Flow,
    *,
    project: str | None = None,
    worker: str | None = None,
    resources: dict[str, Any] | None = None,
    exec_config: str | None = None,
) -> SubmitReport:
    """Submit any flow (e.g. the screening flow, to the ``gpu`` worker).

    Its jobs are tagged with ``anisoscreen_role = "screening"`` so that ``status`` counts them.
    """
    from jobflow_remote import submit_flow

    from anisoscreen.validation.makers import META_ROLE

    flow.update_metadata({META_ROLE: "screening"})

    with job_controller(project) as jc:
        project_name = _project_name(jc, project)
        if worker is None and GPU_WORKER in (jc.project.workers or {}):
            worker = GPU_WORKER
        worker = _default_worker(jc, worker)
    db_ids = submit_flow(
        flow, worker=worker, project=project_name, resources=resources, exec_config=exec_config
    )
    report = SubmitReport(project=project_name, worker=worker)
    report.submitted.append({"material_id": None, "flow_uuid": flow.uuid, "db_ids": db_ids})
    return report


# -- status, collection, rerun ----------------------------------------------------------
def _reason(info: Any) -> str:
    """The last meaningful line of a job's error (remote errors first)."""
    text = (getattr(info.remote, "error", None) or info.error or "").strip()
    if not text:
        return f"{info.state.value} (no error message)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


@dataclass
class FailedJob:
    """A job that needs attention."""

    db_id: str
    uuid: str
    name: str
    state: str
    material_id: str | None
    reason: str
    error: str | None = None


@dataclass
class StatusReport:
    """Job counts per state and the failed jobs of a project."""

    project: str | None
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[FailedJob] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _failed_job(info: Any) -> FailedJob:
    from anisoscreen.validation.makers import META_MATERIAL

    return FailedJob(
        db_id=str(info.db_id),
        uuid=info.uuid,
        name=info.name,
        state=info.state.value,
        material_id=(info.metadata or {}).get(META_MATERIAL),
        reason=_reason(info),
        error=getattr(info.remote, "error", None) or info.error,
    )


def queue_status(project: str | None = None, anisoscreen_only: bool = False) -> StatusReport:
    """Counts per job state and the failed jobs (with their reason) of a project."""
    from anisoscreen.validation.makers import META_ROLE

    query = {f"job.metadata.{META_ROLE}": {"$exists": True}} if anisoscreen_only else None
    with job_controller(project) as jc:
        infos = jc.get_jobs_info(custom_query=query)
        report = StatusReport(project=_project_name(jc, project))
    report.counts = dict(sorted(Counter(i.state.value for i in infos).items()))
    report.failed = [_failed_job(i) for i in infos if i.state.value in FAILED_STATES]
    return report


@dataclass
class CollectReport:
    """What :func:`collect` wrote to the results store."""

    collected: list[ValidationDoc] = field(default_factory=list)
    failed: list[ValidationDoc] = field(default_factory=list)
    pending: int = 0


def collect(
    settings: AnisoscreenSettings | None = None, project: str | None = None
) -> CollectReport:
    """Copy finished validations from the JobStore into the results store.

    Completed record jobs give their ``ValidationDoc`` (completed or flagged); failed VASP or
    record jobs turn the matching submitted records into ``FAILED`` ones with the reason.
    Running again is harmless: every write is an upsert on (``material_id``, ``job_uuid``).
    """
    from anisoscreen.validation.makers import META_CALC, META_MATERIAL, META_ROLE

    settings = settings or get_settings()
    report = CollectReport()
    with ResultsStore(settings) as results, job_controller(project) as jc:
        project_name = _project_name(jc, project)
        records = jc.get_jobs_info(metadata={META_ROLE: "record"})
        for info in records:
            if info.state.value != "COMPLETED":
                if info.state.value not in FAILED_STATES:
                    report.pending += 1
                continue
            output = jc.get_job_output(job_id=info.uuid, job_index=info.index)
            doc = _to_validation_doc(output)
            doc = doc.model_copy(
                update={"worker": doc.worker or info.worker, "project": doc.project or project_name}
            )
            report.collected.append(doc)
        failed = jc.get_jobs_info(
            custom_query={
                f"job.metadata.{META_ROLE}": {"$exists": True},
                "state": {"$in": list(FAILED_STATES)},
            },
        )
        for info in failed:
            meta = info.metadata or {}
            mid, calc = meta.get(META_MATERIAL), meta.get(META_CALC, "dfpt")
            if mid is None:
                continue
            reason = _reason(info)
            waiting = results.query(
                ValidationDoc,
                {
                    "material_id": mid,
                    "calc_type": calc,
                    "state": {
                        "$in": [ValidationState.SUBMITTED.value, ValidationState.FAILED.value]
                    },
                },
            )
            docs = waiting or [
                ValidationDoc(
                    material_id=mid,
                    formula_pretty="",
                    job_uuid=info.uuid,
                    calc_type=calc,
                    project=project_name,
                )
            ]
            for doc in docs:
                report.failed.append(
                    doc.model_copy(
                        update={
                            "state": ValidationState.FAILED,
                            "error": reason,
                            "worker": doc.worker or info.worker,
                        }
                    )
                )
        results.upsert(report.collected)
        results.upsert(report.failed)
    return report


def _to_validation_doc(output: Any) -> ValidationDoc:
    if isinstance(output, ValidationDoc):
        return output
    if isinstance(output, dict):
        return ValidationDoc.from_store({k: v for k, v in output.items() if not k.startswith("@")})
    raise HPCError(f"a validation record job returned {type(output).__name__}, not a ValidationDoc")


def rerun_failed(
    settings: AnisoscreenSettings | None = None,
    project: str | None = None,
    db_ids: Iterable[str] | None = None,
) -> list[str]:
    """Put failed jobs (all of them, or the given ``db_ids``) back in the queue.

    ``FAILED`` jobs are rerun (their files removed), ``REMOTE_ERROR`` ones retried; their
    validation records go back to ``SUBMITTED``. Returns the db ids handled.
    """
    from anisoscreen.validation.makers import META_CALC, META_MATERIAL

    settings = settings or get_settings()
    wanted = {str(i) for i in db_ids} if db_ids is not None else None
    done: list[str] = []
    with ResultsStore(settings) as results, job_controller(project) as jc:
        infos = jc.get_jobs_info(states=[_state(s) for s in FAILED_STATES])
        if wanted is not None:
            missing = wanted - {str(i.db_id) for i in infos}
            if missing:
                raise HPCError(f"no failed job with db id {', '.join(sorted(missing))}")
            infos = [i for i in infos if str(i.db_id) in wanted]
        for info in infos:
            if info.state.value == "REMOTE_ERROR":
                jc.retry_job(db_id=str(info.db_id))
            else:
                jc.rerun_job(db_id=str(info.db_id), force=False)
            done.append(str(info.db_id))
            meta = info.metadata or {}
            mid = meta.get(META_MATERIAL)
            if mid is None:
                continue
            docs = results.query(
                ValidationDoc,
                {
                    "material_id": mid,
                    "calc_type": meta.get(META_CALC, "dfpt"),
                    "state": ValidationState.FAILED.value,
                },
            )
            results.upsert(
                d.model_copy(update={"state": ValidationState.SUBMITTED, "error": None})
                for d in docs
            )
    return done


def _state(name: str) -> Any:
    from jobflow_remote.jobs.state import JobState

    return JobState(name)
