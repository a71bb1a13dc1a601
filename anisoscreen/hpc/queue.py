"""The jobflow-remote queue: job counts and failures, collection of results, reruns.

:func:`queue_status` gives job counts per state and the failed jobs with their reason;
:func:`collect` copies finished ``ValidationDoc`` outputs (and failures) into the results
store; :func:`rerun_failed` puts failed jobs back in the queue, in one call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anisoscreen.hpc.config import FAILED_STATES, HPCError, job_controller, resolve_project_name
from anisoscreen.schemas import ValidationDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store import ResultsStore

__all__ = ["CollectReport", "FailedJob", "StatusReport", "collect", "queue_status", "rerun_failed"]


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
    from anisoscreen.validation.metadata import META_MATERIAL

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
    from anisoscreen.validation.metadata import META_ROLE

    query = {f"job.metadata.{META_ROLE}": {"$exists": True}} if anisoscreen_only else None
    with job_controller(project) as jc:
        infos = jc.get_jobs_info(custom_query=query)
        report = StatusReport(project=resolve_project_name(jc, project))
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
    from anisoscreen.validation.metadata import META_CALC, META_MATERIAL, META_ROLE

    settings = settings or get_settings()
    report = CollectReport()
    with ResultsStore(settings) as results, job_controller(project) as jc:
        project_name = resolve_project_name(jc, project)
        records = jc.get_jobs_info(metadata={META_ROLE: "record"})
        for info in records:
            if info.state.value != "COMPLETED":
                if info.state.value not in FAILED_STATES:
                    report.pending += 1
                continue
            output = jc.get_job_output(job_id=info.uuid, job_index=info.index)
            try:
                doc = ValidationDoc.from_job_output(output)
            except TypeError as exc:
                raise HPCError(f"a validation record job returned {exc}") from exc
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


def rerun_failed(
    settings: AnisoscreenSettings | None = None,
    project: str | None = None,
    db_ids: Iterable[str] | None = None,
) -> list[str]:
    """Put failed jobs (all of them, or the given ``db_ids``) back in the queue.

    ``FAILED`` jobs are rerun (their files removed), ``REMOTE_ERROR`` ones retried; their
    validation records go back to ``SUBMITTED``. Returns the db ids handled.
    """
    from anisoscreen.validation.metadata import META_CALC, META_MATERIAL

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
