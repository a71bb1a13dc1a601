"""Validations of a ``--local`` campaign, run in this process with jobflow's ``run_locally``.

``run_locally`` logs a failing job and carries on; its record job (which writes the
ValidationDoc) is then never run. So that the campaign does not wait forever for a result
that will not come, every record job without a ValidationDoc after the run is stored as
``failed`` with the reason taken from the log (e.g. no VASP executable, no POTCARs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anisoscreen.schemas import CandidateDoc, ValidationDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

__all__ = ["run_local_validation"]

_JOBFLOW_LOGGER = "jobflow.managers.local"
_MAX_REASON = 300


class _Failures(logging.Handler):
    """Collects ``<job> failed with exception: <last traceback line>`` from jobflow's log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        head, marker, trace = text.partition(" failed with exception:")
        if marker:
            lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
            self.reasons.append(f"{head}: {lines[-1] if lines else 'unknown error'}")


@contextmanager
def _captured_failures() -> Iterator[_Failures]:
    logger = logging.getLogger(_JOBFLOW_LOGGER)
    handler = _Failures()
    level, propagate, disabled = logger.level, logger.propagate, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the tracebacks are summarised in the ValidationDocs instead
    logger.disabled = False  # a logging.config.dictConfig elsewhere may have disabled it
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def run_local_validation(
    flow: Any,
    records: list[Any],
    candidate: CandidateDoc,
    settings: AnisoscreenSettings,
    results: ResultsStore,
    work_dir: Path,
) -> list[str]:
    """Run one validation flow here, store its ValidationDocs; returns the failure reasons.

    Parameters
    ----------
    flow
        The validation flow of one candidate.
    records
        Its record jobs (:func:`anisoscreen.hpc.submit.record_jobs`).
    candidate
        The candidate being validated.
    settings, results
        The stores (the JobStore is built from ``settings``).
    work_dir
        Folder under which each job runs in its own sub-folder.
    """
    from jobflow import run_locally

    from anisoscreen.hpc.submit import submitted_validation_doc
    from anisoscreen.store import build_job_store
    from anisoscreen.validation.makers import collect_from_job_store

    job_store = build_job_store(settings)
    work_dir.mkdir(parents=True, exist_ok=True)
    with _captured_failures() as failures:
        try:
            run_locally(
                flow,
                store=job_store,
                ensure_success=False,
                log=False,
                create_folders=True,
                root_dir=work_dir,
            )
        except Exception as exc:  # the manager itself failed (store, folders)
            failures.reasons.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    collect_from_job_store(job_store, results, {"uuid": {"$in": [job.uuid for job in records]}})
    reason = "; ".join(failures.reasons)[:_MAX_REASON] or (
        f"the local run stored no result (job folders under {work_dir})"
    )
    missing = []
    for job in records:
        job_uuid = job.function_kwargs["job_uuid"]
        if not results.query(
            ValidationDoc, {"material_id": candidate.material_id, "job_uuid": job_uuid}
        ):
            doc = submitted_validation_doc(job, candidate, flow.uuid, "local", None)
            missing.append(
                doc.model_copy(update={"state": ValidationState.FAILED, "error": reason})
            )
    results.upsert(missing)
    return failures.reasons
