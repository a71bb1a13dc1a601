"""DFT validation Makers: atomate2 DFPT / optics with Materials-Project-compatible inputs.

:class:`ValidationMaker` builds, for one candidate, a flow of

1. :class:`MPDielectricMaker` — atomate2's ``DielectricMaker`` (``LEPSILON``) with
   :class:`~anisoscreen.validation.sets.MPDielectricSetGenerator` (PBE, 520 eV, 200 k/Å⁻³,
   ``EDIFF = 1e-5``);
2. optionally :class:`MPOpticsMaker` — atomate2's ``OpticsMaker`` (static, then ``LOPTICS``
   non-SCF on a uniform mesh) with MP inputs;
3. one :func:`validation_record` job per VASP result, turning its ``TaskDoc`` into a
   :class:`~anisoscreen.schemas.ValidationDoc` (flagged when untrustworthy).

The ValidationDocs are job outputs in the jobflow ``JobStore``; ``anisoscreen collect``
(:func:`anisoscreen.hpc.queue.collect`) or :func:`collect_from_job_store` copy them into the results
store. Every job carries metadata (:data:`META_MATERIAL`, :data:`META_ROLE`,
:data:`META_CALC`) so that queued and finished validations can be found again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atomate2.vasp.flows.core import OpticsMaker
from atomate2.vasp.jobs.base import BaseVaspMaker
from atomate2.vasp.jobs.core import DielectricMaker, NonSCFMaker, StaticMaker
from jobflow import Flow, Maker, job

from anisoscreen.schemas import ValidationDoc, structure_id
from anisoscreen.validation.metadata import META_CALC, META_MATERIAL, META_ROLE, RECORD_JOB_NAME
from anisoscreen.validation.parse import validation_doc_from_task
from anisoscreen.validation.sets import (
    MPDielectricSetGenerator,
    MPOpticsSetGenerator,
    MPOpticsStaticSetGenerator,
    describe_input_set,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from anisoscreen.schemas import PredictionDoc

__all__ = [
    "MPDielectricMaker",
    "MPOpticsMaker",
    "ValidationMaker",
    "collect_from_job_store",
    "dfpt_validation_maker",
    "validation_record",
]


@dataclass
class MPDielectricMaker(DielectricMaker):
    """atomate2 ``DielectricMaker`` with Materials-Project-compatible DFPT inputs.

    Parameters
    ----------
    name
        The job name.
    input_set_generator
        Input set; by default :class:`MPDielectricSetGenerator` (PBE, 520 eV, 200 k/Å⁻³,
        ``EDIFF = 1e-5``). Override fields or ``user_incar_settings`` to change anything.
    stop_children_kwargs
        Passed to atomate2's ``should_stop_children``. ``handle_unsuccessful=False`` lets an
        unconverged run finish so that :func:`validation_record` can flag it.
    """

    name: str = "mp dielectric"
    input_set_generator: Any = field(default_factory=MPDielectricSetGenerator)
    stop_children_kwargs: dict = field(default_factory=lambda: {"handle_unsuccessful": False})


@dataclass
class MPOpticsMaker(OpticsMaker):
    """atomate2 ``OpticsMaker`` (static + ``LOPTICS`` non-SCF, uniform mesh) with MP inputs.

    Parameters
    ----------
    name
        Name of the flow.
    static_maker
        The self-consistent static run (PBE, 520 eV); its CHGCAR seeds the optics run.
    band_structure_maker
        The ``LOPTICS`` non-SCF run; an unconverged run is let through to be flagged.
    """

    name: str = "mp static and optics"
    static_maker: BaseVaspMaker = field(
        default_factory=lambda: StaticMaker(
            name="mp optics static",
            input_set_generator=MPOpticsStaticSetGenerator(),  # type: ignore[arg-type]
        )
    )
    band_structure_maker: BaseVaspMaker = field(
        default_factory=lambda: NonSCFMaker(
            name="mp optics",
            input_set_generator=MPOpticsSetGenerator(),  # type: ignore[arg-type]
            stop_children_kwargs={"handle_unsuccessful": False},
        )
    )


@job(name=RECORD_JOB_NAME)
def validation_record(task_doc: Any, **kwargs: Any) -> ValidationDoc:
    """Jobflow job: :func:`~anisoscreen.validation.parse.validation_doc_from_task`."""
    return validation_doc_from_task(task_doc, **kwargs)


def _prediction_fields(prediction: PredictionDoc | dict | None) -> dict[str, Any]:
    if prediction is None:
        return {}
    get = prediction.get if isinstance(prediction, dict) else lambda k: getattr(prediction, k)
    return {
        "prediction_model": get("model"),
        "predicted_anisotropy_ratio": get("anisotropy_ratio"),
        "predicted_dielectric_tensor": get("dielectric_tensor"),
    }


@dataclass
class ValidationMaker(Maker):
    """DFT validation of one candidate: DFPT ε∞ and, optionally, the optical spectra.

    Parameters
    ----------
    name
        Name of the flow (the material id is appended).
    dielectric_maker
        Maker of the DFPT job, ``None`` to skip it.
    optics_maker
        Maker of the optics flow (e.g. :class:`MPOpticsMaker`), ``None`` (default) to skip.
    symmetry_tol
        Largest relative asymmetry accepted in a DFT tensor.
    min_eigenvalue
        Smallest eigenvalue accepted in ε∞.
    """

    name: str = "anisoscreen validation"
    dielectric_maker: BaseVaspMaker | None = field(default_factory=MPDielectricMaker)
    optics_maker: Maker | None = None
    symmetry_tol: float = 1e-3
    min_eigenvalue: float = 1.0

    def make(
        self,
        structure: Structure,
        material_id: str | None = None,
        prediction: PredictionDoc | dict | None = None,
    ) -> Flow:
        """Build the validation flow (nothing runs here).

        Parameters
        ----------
        structure
            The candidate's structure (ideally relaxed with the same functional).
        material_id
            The candidate's id; a structure hash when omitted.
        prediction
            The prediction being validated; its a_r and tensor are copied into the records.

        Returns
        -------
        Flow
            VASP job(s) and record job(s); the flow output is the list of ValidationDocs.
        """
        material_id = material_id or structure_id(structure)
        formula = structure.composition.reduced_formula
        common = {
            "material_id": material_id,
            "formula_pretty": formula,
            "symmetry_tol": self.symmetry_tol,
            "min_eigenvalue": self.min_eigenvalue,
            **_prediction_fields(prediction),
        }
        jobs: list = []
        records = []
        if self.dielectric_maker is not None:
            dfpt = self.dielectric_maker.make(structure)  # type: ignore[misc]  # a @job method
            dfpt.update_metadata({META_MATERIAL: material_id, META_ROLE: "vasp", META_CALC: "dfpt"})
            record = validation_record(
                dfpt.output,
                job_uuid=dfpt.uuid,
                calc_type="dfpt",
                input_settings=describe_input_set(self.dielectric_maker.input_set_generator),
                **common,
            )
            record.name = f"{RECORD_JOB_NAME} dfpt"
            record.update_metadata(
                {META_MATERIAL: material_id, META_ROLE: "record", META_CALC: "dfpt"}
            )
            jobs += [dfpt, record]
            records.append(record)
        if self.optics_maker is not None:
            optics_flow = self.optics_maker.make(structure)
            optics_flow.update_metadata({META_MATERIAL: material_id, META_CALC: "optics"})
            optics_flow.update_metadata({META_ROLE: "vasp"})
            last = optics_flow.jobs[-1]  # type: ignore[union-attr]  # the optics maker makes a Flow
            generator = getattr(
                getattr(self.optics_maker, "band_structure_maker", None),
                "input_set_generator",
                None,
            )
            record = validation_record(
                optics_flow.output,
                job_uuid=last.uuid,
                calc_type="optics",
                input_settings=describe_input_set(generator) if generator is not None else {},
                **common,
            )
            record.name = f"{RECORD_JOB_NAME} optics"
            record.update_metadata(
                {META_MATERIAL: material_id, META_ROLE: "record", META_CALC: "optics"}
            )
            jobs += [optics_flow, record]
            records.append(record)
        if not records:
            raise ValueError("ValidationMaker needs a dielectric_maker or an optics_maker")
        flow = Flow(jobs, output=[r.output for r in records], name=f"{self.name} {material_id}")
        # the flow uuid is known now: record it in every ValidationDoc
        for record in records:
            record.function_kwargs["flow_uuid"] = flow.uuid
        return flow


def dfpt_validation_maker(optics: bool = False) -> ValidationMaker:
    """The default validation: MP-compatible DFPT, plus the optics (LOPTICS) flow with ``optics``.

    The one place that composes it: the screening flow's validation stage
    (:meth:`~anisoscreen.screening.flows.ScreeningMaker.from_settings`),
    :func:`~anisoscreen.hpc.submit.submit_validations` and the campaign rounds call it.
    """
    return ValidationMaker(optics_maker=MPOpticsMaker() if optics else None)


def collect_from_job_store(job_store: Any, results: Any, criteria: dict | None = None) -> int:
    """Copy every ValidationDoc in a jobflow ``JobStore`` into a results store.

    For runs without jobflow-remote (``run_locally``); with jobflow-remote use
    :func:`anisoscreen.hpc.queue.collect`. Returns the number of documents upserted.
    """
    query = {"name": {"$regex": f"^{RECORD_JOB_NAME}"}, **(criteria or {})}
    docs = []
    with _Connected(job_store):
        for record in job_store.query(criteria=query, properties=["output"]):
            output = record.get("output")
            if output is None:
                continue
            docs.append(ValidationDoc.from_job_output(output))
    return results.upsert(docs)


class _Connected:
    def __init__(self, store: Any) -> None:
        self.store = store

    def __enter__(self) -> Any:
        self.store.connect()
        return self.store

    def __exit__(self, *exc: object) -> None:
        pass
