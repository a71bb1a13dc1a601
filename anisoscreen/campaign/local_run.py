"""Validations of a ``--local`` campaign, run in this process by the screening's runner.

:func:`~anisoscreen.screening.flow_runner.run_flow_locally` stops at the first failing job,
with its cause; the record job (which writes the ValidationDoc) is then never run. So that
the campaign does not wait forever for a result that will not come, every record job without
a ValidationDoc after the run is stored as ``failed`` with that cause (e.g. no VASP
executable, no POTCARs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anisoscreen.schemas import CandidateDoc, ValidationDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

__all__ = ["run_local_validation"]

_MAX_REASON = 300


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
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.hpc.submit import submitted_validation_doc
    from anisoscreen.screening.flow_runner import run_flow_locally
    from anisoscreen.store import build_job_store
    from anisoscreen.validation.makers import collect_from_job_store

    job_store = build_job_store(settings)
    work_dir.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    try:
        run_flow_locally(flow, job_store, root_dir=work_dir)
    except AnisoscreenError as exc:  # a job failed (its cause), or the manager itself
        reasons.append(str(exc).removesuffix(" (rerun with --debug for the traceback)"))
    except Exception as exc:  # the manager itself failed (store, folders)
        reasons.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    collect_from_job_store(job_store, results, {"uuid": {"$in": [job.uuid for job in records]}})
    reason = "; ".join(reasons)[:_MAX_REASON] or (
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
    return reasons
