"""Existing DFT results as :class:`~anisoscreen.schemas.ValidationDoc`s, with their provenance.

Three kinds of source are read:

a folder of VASP DFPT outputs
    every ``vasprun.xml[.gz]`` below it (also ``<name>_vasprun.xml[.gz]`` next to
    ``<name>_OUTCAR[.gz]``), parsed by atomate2's own ``get_vasp_task_document``;
a JSON(.gz) export of Materials Project dielectric documents
    mp-api ``DielectricDoc``s (``material_id``, ``electronic``, ``ionic``, ``total``...);
the shared MP DFPT set
    records of ``shared/data/mp_dielectric_tensors.json.gz`` (``eps_electronic``,
    ``eps_ionic``).

An imported record never pretends it ran here: ``imported_from`` names the source,
``source_task_id`` the calculation in it, ``job_uuid`` is ``import:<source>:<id>`` (so a
re-import replaces, never duplicates) and ``input_settings`` holds only what the source
says. A material in a model's training split is listed in ``in_training_split`` with that
model's name; accuracy figures leave such records out by default.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.candidates.json_cache import read_json
from anisoscreen.errors import AnisoscreenError, AnisoscreenWarning, SourceError
from anisoscreen.schemas import ValidationDoc, ValidationState

__all__ = [
    "MP_SET_SOURCE",
    "bundled_validations",
    "import_validations",
    "mark_training",
    "read_json_records",
    "training_split_ids",
    "validations_from_mp_docs",
    "validations_from_mp_set",
    "validations_from_vasp_folder",
]

MP_SET_SOURCE = "Materials Project DFPT (shared data set)"
"""``imported_from`` of records of the shared MP DFPT set."""
MP_DOCS_SOURCE = "Materials Project dielectric documents"
"""``imported_from`` of records of an MP dielectric-document export."""

Progress = Callable[[int, int], None]


def read_json_records(path: str | Path) -> list[dict[str, Any]]:
    """A JSON(.gz) list of objects (or ``{"data": [...]}``, mp-api's export form)."""
    path = Path(path)
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path} is not readable JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise SourceError(f"{path} is not a JSON list of documents")
    return data


def _tensor_doc(
    *,
    material_id: str,
    formula: str,
    electronic: Any,
    ionic: Any,
    source: str,
    task_id: str,
    input_settings: dict[str, Any],
) -> ValidationDoc:
    """A DFPT record from tensors, flagged (not dropped) when a tensor cannot be trusted."""
    flags: list[str] = []
    eps = ion = None
    try:
        eps = tmath.validate_dielectric_tensor(electronic)
    except (tmath.TensorValidationError, TypeError, ValueError) as exc:
        flags.append(f"epsilon_electronic: {exc}")
    if ionic is not None:
        try:
            ion = tmath.validate_dielectric_tensor(ionic, min_eigenvalue=None)
        except (tmath.TensorValidationError, TypeError, ValueError) as exc:
            flags.append(f"epsilon_ionic: {exc}")
    summary = tmath.summarize(eps) if eps is not None else None
    return ValidationDoc(
        material_id=material_id,
        formula_pretty=formula,
        job_uuid=f"import:{source}:{task_id}",
        calc_type="dfpt",
        state=ValidationState.FLAGGED if flags else ValidationState.COMPLETED,
        flags=flags,
        epsilon_electronic=None if eps is None else eps.tolist(),
        epsilon_ionic=None if ion is None else ion.tolist(),
        epsilon_total=None if eps is None or ion is None else (eps + ion).tolist(),
        eigenvalues=None if summary is None else summary.eigenvalues.tolist(),
        eps_poly=None if summary is None else summary.eps_poly,
        anisotropy_ratio=None if summary is None else summary.anisotropy_ratio,
        principal_axes=None if summary is None else np.linalg.eigh(summary.tensor)[1].T.tolist(),
        input_settings=input_settings,
        imported_from=source,
        source_task_id=task_id,
    )


@dataclass(frozen=True)
class _TensorFields:
    """Where a kind of DFPT record keeps its tensors and provenance."""

    electronic: str
    ionic: str
    formula: tuple[str, ...]
    task_id: str | None
    """Field of the source's calculation id (``None``: the material id)."""
    provenance: tuple[str, str]
    """(key in ``input_settings``, field of the record) of the source's own reference."""
    kind: str
    """What the records are, for the error when the electronic tensor is missing."""


_MP_SET_FIELDS = _TensorFields(
    electronic="eps_electronic",
    ionic="eps_ionic",
    formula=("formula", "formula_pretty"),
    task_id=None,
    provenance=("reference", "source"),
    kind="the shared MP DFPT set",
)
_MP_DOCS_FIELDS = _TensorFields(
    electronic="electronic",
    ionic="ionic",
    formula=("formula_pretty",),
    task_id="task_id",
    provenance=("last_updated", "last_updated"),
    kind="a DielectricDoc",
)


def _validations_from_records(
    records: Iterable[dict[str, Any]],
    ids: set[str] | None,
    fields: _TensorFields,
    source: str,
) -> Iterator[ValidationDoc]:
    """DFPT records whose tensors and provenance sit under ``fields`` as validations."""
    for record in records:
        mid = str(record.get("material_id", ""))
        if not mid or (ids is not None and mid not in ids):
            continue
        if fields.electronic not in record:
            raise SourceError(
                f"record {mid} has no {fields.electronic!r} tensor: not {fields.kind}"
            )
        setting, reference = fields.provenance
        yield _tensor_doc(
            material_id=mid,
            formula=str(next((record[k] for k in fields.formula if record.get(k)), "")),
            electronic=record[fields.electronic],
            ionic=record.get(fields.ionic),
            source=source,
            task_id=str((record.get(fields.task_id) if fields.task_id else None) or mid),
            input_settings={"functional": "PBE", setting: str(record.get(reference, ""))},
        )


def validations_from_mp_set(
    records: Iterable[dict[str, Any]], ids: set[str] | None = None
) -> Iterator[ValidationDoc]:
    """Records of the shared MP DFPT set (``eps_electronic``, ``eps_ionic``) as validations."""
    return _validations_from_records(records, ids, _MP_SET_FIELDS, MP_SET_SOURCE)


def validations_from_mp_docs(
    records: Iterable[dict[str, Any]], ids: set[str] | None = None
) -> Iterator[ValidationDoc]:
    """mp-api ``DielectricDoc``s (``electronic``, ``ionic`` 3x3) as validations."""
    return _validations_from_records(records, ids, _MP_DOCS_FIELDS, MP_DOCS_SOURCE)


def _vasp_runs(folder: Path) -> list[tuple[Path, Path | None, str]]:
    """(vasprun, OUTCAR or None, name) of every VASP run below ``folder``."""
    runs = []
    for vasprun in sorted(folder.rglob("*vasprun.xml*")):
        name = vasprun.name.split("vasprun.xml")[0]
        outcars = sorted(vasprun.parent.glob(f"{name}OUTCAR*"))
        label = str(vasprun.parent.relative_to(folder) / name.rstrip("_")).strip("./") or "."
        runs.append((vasprun, outcars[0] if outcars else None, label))
    return runs


def _task_document(vasprun: Path, outcar: Path | None) -> Any:
    """atomate2's TaskDoc of one run, staged in a folder under VASP's own file names."""
    from atomate2.vasp.jobs.base import get_vasp_task_document
    from pymatgen.io.vasp import Poscar, Vasprun

    gz = ".gz" if vasprun.suffix == ".gz" else ""
    with tempfile.TemporaryDirectory() as stage:
        run = Path(stage)
        shutil.copy(vasprun, run / f"vasprun.xml{gz}")
        if outcar is not None:
            shutil.copy(outcar, run / f"OUTCAR{'.gz' if outcar.suffix == '.gz' else ''}")
        contcar = sorted(vasprun.parent.glob("CONTCAR*"))
        if contcar and vasprun.name.startswith("vasprun"):
            shutil.copy(contcar[0], run / contcar[0].name)
        else:
            final = Vasprun(
                str(vasprun), parse_potcar_file=False, parse_dos=False, parse_eigen=False
            ).final_structure
            Poscar(final).write_file(run / "CONTCAR")
        return get_vasp_task_document(run)


def validations_from_vasp_folder(
    folder: str | Path, material_ids: dict[str, str] | None = None
) -> Iterator[ValidationDoc]:
    """VASP DFPT (``LEPSILON``) or ``LOPTICS`` runs below ``folder``, parsed by atomate2.

    ``material_ids`` maps a run's label (its folder, or file prefix) to a material id; a run
    without one gets ``run:<label>``.
    """
    from anisoscreen.validation.parse import validation_doc_from_task

    folder = Path(folder)
    runs = _vasp_runs(folder)
    if not runs:
        raise SourceError(f"no vasprun.xml below {folder}")
    source = f"VASP outputs in {folder.name}"
    parsed = 0
    for vasprun, outcar, label in runs:
        if outcar is None:
            warnings.warn(
                f"{vasprun}: skipped, no OUTCAR next to it", AnisoscreenWarning, stacklevel=2
            )
            continue
        try:
            task = _task_document(vasprun, outcar)
        except Exception as exc:  # an unreadable run is reported, the others imported
            warnings.warn(
                f"{vasprun}: skipped, atomate2 could not parse it: {exc}",
                AnisoscreenWarning,
                stacklevel=2,
            )
            continue
        parsed += 1
        output = task.calcs_reversed[0].output if task.calcs_reversed else None
        has_optics = getattr(output, "frequency_dependent_dielectric", None) is not None and (
            getattr(output, "epsilon_static", None) is None
        )
        calc = "optics" if has_optics else "dfpt"
        doc = validation_doc_from_task(
            task,
            material_id=(material_ids or {}).get(label, f"run:{label}"),
            job_uuid=f"import:{source}:{label}",
            calc_type=calc,
        )
        yield doc.model_copy(
            update={
                "imported_from": source,
                "source_task_id": label,
                "dir_name": str(vasprun.parent),
            }
        )
    if not parsed:
        raise SourceError(f"no VASP run below {folder} could be parsed (see the warnings)")


def bundled_validations(ids: set[str] | None = None) -> list[ValidationDoc]:
    """The MP DFPT results of the bundled demo pool's known dielectrics (shipped data).

    Each keeps the training-split mark recorded when the pool was built
    (``workflows/build_bundled_pool.py``).
    """
    from importlib.resources import files

    with files("anisoscreen.data").joinpath("bundled_dfpt.json.gz").open("rb") as raw:
        records = json.loads(gzip.decompress(raw.read()))
    marks = {r["material_id"]: list(r.get("in_training_split") or []) for r in records}
    return [
        doc.model_copy(update={"in_training_split": marks.get(doc.material_id, [])})
        for doc in validations_from_mp_set(records, ids)
    ]


def training_split_ids(metrics_or_model: str | Path, shared: Path) -> set[str]:
    """The material ids of a model's training split (empty when it cannot be known).

    ``metrics_or_model`` is a model folder or its ``metrics.json``: the split is rebuilt from
    the recorded data file, cleaning and ``split_seed``, as training built it.
    """
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split

    path = Path(metrics_or_model)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        return set()
    metadata = json.loads(path.read_text(encoding="utf-8"))
    data = Path(shared) / "data" / str(metadata.get("data_file", ""))
    if not data.is_file() or "split_seed" not in metadata:
        return set()
    # only ids and the split are needed here: no band-gap matching (seconds of symmetry analysis)
    entries, _ = clean_entries(load_entries(data, match_gaps=False))
    entries = entries[: metadata.get("n_entries") or len(entries)]
    train = random_split(len(entries), metadata["split_seed"])["train"]
    return {entries[i].material_id for i in train}


def mark_training(
    docs: Iterable[ValidationDoc], training: dict[str, set[str]]
) -> list[ValidationDoc]:
    """Each record with ``in_training_split`` naming the models that trained on it."""
    marked = []
    for doc in docs:
        models = sorted(name for name, ids in training.items() if doc.material_id in ids)
        marked.append(doc.model_copy(update={"in_training_split": models}) if models else doc)
    return marked


def import_validations(
    source: str | Path,
    kind: str = "auto",
    ids: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[ValidationDoc]:
    """Read ``source`` (a VASP folder, an MP docs export or the MP DFPT set) as validations.

    ``kind`` is ``auto`` (by content), ``vasp``, ``mp-docs`` or ``mp-set``; ``ids`` keeps
    only those materials; ``progress(done, total)`` is called as records are read.
    """
    path = Path(source)
    if not path.exists():
        raise SourceError(f"validation source {path} not found")
    wanted = set(ids) if ids else None
    if path.is_dir() or kind == "vasp":
        if not path.is_dir():
            raise AnisoscreenError(f"--kind vasp needs a folder, and {path} is a file")
        runs = list(validations_from_vasp_folder(path))
        if progress:
            progress(len(runs), len(runs))
        return [d for d in runs if wanted is None or d.material_id in wanted]
    records = read_json_records(path)
    if kind == "auto":
        first = records[0] if records else {}
        kind = "mp-set" if "eps_electronic" in first else "mp-docs"
    reader = {"mp-set": validations_from_mp_set, "mp-docs": validations_from_mp_docs}.get(kind)
    if reader is None:
        raise AnisoscreenError(f"unknown source kind {kind!r} (auto, vasp, mp-docs, mp-set)")
    docs: list[ValidationDoc] = []
    total = len(records)
    step = max(total // 20, 1)
    for i, record in enumerate(records, 1):
        docs.extend(reader([record], wanted))
        if progress and (i % step == 0 or i == total):
            progress(i, total)
    return docs
