"""jobflow-remote project configuration for anisoscreen.

:func:`project_config` / :func:`write_project_config` write a project with a GPU worker for
inference and a CPU worker for VASP, whose JobStore is anisoscreen's own store (so results and
job outputs live in the same backend). The project is chosen like jobflow-remote does: by name,
else ``$JFREMOTE_PROJECT``, else the only project in ``$JFREMOTE_PROJECTS_FOLDER`` (default
``~/.jfremote``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from anisoscreen.errors import AnisoscreenError
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store import build_job_store, mongo_store

__all__ = [
    "CPU_WORKER",
    "FAILED_STATES",
    "GPU_WORKER",
    "HPCError",
    "init_queue",
    "job_controller",
    "project_config",
    "resolve_project_name",
    "resolve_worker",
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
    """Anisoscreen's jobflow ``JobStore`` (with the ``data`` store) as a serialised dict."""
    return build_job_store(settings or get_settings()).as_dict()


def queue_store_spec(uri: str, database: str = "anisoscreen_queue") -> dict[str, Any]:
    """A jobflow-remote queue store on MongoDB (``mongodb://`` or ``mongodb+srv://``)."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise HPCError(f"the queue needs a MongoDB URI (mongodb://...), not {uri!r}")
    store = mongo_store(uri, "jobs", database)
    return {
        "@module": type(store).__module__,
        "@class": type(store).__name__,
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
                f"the queue database of project {resolve_project_name(jc, project)} is not "
                "initialised: run `jf admin reset` once (or anisoscreen.hpc.config.init_queue)"
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


def resolve_project_name(jc: Any, project: str | None) -> str | None:
    """The name of the job controller's project, else the requested one."""
    return getattr(getattr(jc, "project", None), "name", None) or project


def resolve_worker(jc: Any, worker: str | None) -> str:
    """The requested worker (checked), else the ``vasp`` worker, else the project's first."""
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
