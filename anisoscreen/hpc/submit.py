"""Submission of validation and screening flows to jobflow-remote workers.

:func:`submit_validations` sends validation flows for stored candidates (chosen by
:func:`anisoscreen.validation.select.select_candidates`), never twice for the same candidate:
one already validated (a ``ValidationDoc`` that is completed, flagged or submitted) or already
in the queue (a job with its ``material_id`` in the metadata, in any state) is skipped with the
reason. :func:`submit_screening` sends any flow (e.g. the screening flow) to a chosen worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anisoscreen.hpc.config import (
    FAILED_STATES,
    GPU_WORKER,
    HPCError,
    job_controller,
    resolve_project_name,
    resolve_worker,
)
from anisoscreen.schemas import CandidateDoc, ValidationDoc, ValidationState
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store import ResultsStore
from anisoscreen.validation.select import select_candidates

if TYPE_CHECKING:
    from jobflow import Flow

__all__ = [
    "SubmitReport",
    "record_jobs",
    "submit_screening",
    "submit_validation_flow",
    "submit_validations",
    "submitted_validation_doc",
]


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
    from anisoscreen.validation.metadata import META_CALC, META_MATERIAL

    infos = jc.get_jobs_info(metadata={META_MATERIAL: material_id, META_CALC: calc_type})
    if not infos:
        return None
    states = sorted({str(i.state.value) for i in infos})
    hint = "; use `anisoscreen rerun`" if set(states) & set(FAILED_STATES) else ""
    return f"{calc_type} already in the queue (jobs {', '.join(states)}){hint}"


def record_jobs(flow: Flow) -> list[Any]:
    """The validation flow's record jobs (one per calculation), which carry its metadata."""
    from anisoscreen.validation.metadata import RECORD_JOB_NAME

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
    from anisoscreen.validation.makers import dfpt_validation_maker

    if ids is None and top_k is None and ar_min is None:
        raise HPCError("choose candidates with ids, top_k or ar_min")
    settings = settings or get_settings()
    if maker is None:
        maker = dfpt_validation_maker(optics)
    calc_types = (["dfpt"] if maker.dielectric_maker is not None else []) + (
        ["optics"] if maker.optics_maker is not None else []
    )
    with ResultsStore(settings) as results, job_controller(project) as jc:
        project_name = resolve_project_name(jc, project)
        worker = resolve_worker(jc, worker)
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
                entry["db_ids"] = submit_validation_flow(
                    flow, candidate, results, worker, project_name, resources, exec_config
                )
            report.submitted.append(entry)
    return report


def submit_validation_flow(
    flow: Flow,
    candidate: CandidateDoc,
    results: ResultsStore,
    worker: str,
    project: str | None,
    resources: dict[str, Any] | None = None,
    exec_config: str | None = None,
) -> Any:
    """Submit one validation flow and store its ``submitted`` ValidationDocs.

    The one submission path of ``submit`` and of campaigns; returns jobflow-remote's db ids.
    """
    from jobflow_remote import submit_flow

    db_ids = submit_flow(
        flow, worker=worker, project=project, resources=resources, exec_config=exec_config
    )
    results.upsert(
        submitted_validation_doc(job, candidate, flow.uuid, worker, project)
        for job in record_jobs(flow)
    )
    return db_ids


def submitted_validation_doc(
    record_job: Any, candidate: CandidateDoc, flow_uuid: str, worker: str, project: str | None
) -> ValidationDoc:
    """The ``submitted`` ValidationDoc stored for one record job when its flow is submitted."""
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

    from anisoscreen.validation.metadata import META_ROLE

    flow.update_metadata({META_ROLE: "screening"})

    with job_controller(project) as jc:
        project_name = resolve_project_name(jc, project)
        if worker is None and GPU_WORKER in (jc.project.workers or {}):
            worker = GPU_WORKER
        worker = resolve_worker(jc, worker)
    db_ids = submit_flow(
        flow, worker=worker, project=project_name, resources=resources, exec_config=exec_config
    )
    report = SubmitReport(project=project_name, worker=worker)
    report.submitted.append({"material_id": None, "flow_uuid": flow.uuid, "db_ids": db_ids})
    return report
