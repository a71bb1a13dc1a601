"""Batched inference: structures -> :class:`~anisoscreen.schemas.PredictionDoc`.

Inputs are streamed in chunks of ``batch_size`` so memory stays flat for any number of
structures. One bad input never stops the batch: it becomes a :class:`PredictionFailure`
with the reason (unreadable, disordered, isolated atom, element unseen in training).

A predictor holds a *model set*: the electronic model and, optionally, an ionic model. With
an ionic model every document also gets ``eps_ionic`` and ``eps_total = eps_inf + eps_ionic``
(the sum of the two ensemble means, exactly); the spread of the total is that of the sums
of every electronic member with every ionic member.

A caller that predicts the same structures again (a campaign re-predicting its pool with each
new model version) gives the predictor a :attr:`Predictor.graph_cache`: graphs are then looked
up by :func:`graph_key` (structure hash, band gap, cutoff, depolarisation) and built only once.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import LoadedModel, load_model
from anisoscreen.model.member_threads import MemberThreads
from anisoscreen.model.nn.graph import CrystalGraph, GraphError, collate, structure_to_graph
from anisoscreen.model.runtime import resolve_device, tune_allocator
from anisoscreen.model.spread_calibration import SpreadCalibration, spread_quantities
from anisoscreen.schemas import (
    PredictionDoc,
    TensorPrediction,
    lattice_parameters,
    optics_fields,
    structure_hash,
)
from anisoscreen.settings import DEFAULT_MODEL
from anisoscreen.structure_checks import check_structure
from anisoscreen.structures_io import StructureRecord

if TYPE_CHECKING:
    from anisoscreen.model.atom_features import Featurizer

logger = logging.getLogger(__name__)

__all__ = ["MemberTensors", "PredictionFailure", "Predictor", "graph_key", "predict_structures"]

_RECORD_FIELDS = ("energy_above_hull", "band_gap")


def graph_key(
    structure: Structure, band_gap: float | None, cutoff: float, depolarisation: bool
) -> str:
    """What a predictor's graph of ``structure`` depends on, as a cache key.

    The :func:`~anisoscreen.schemas.structure_hash`, the band gap the graph carries, the
    cutoff and whether the vacuum's depolarisation is built; the model's known elements are
    checked again on every use, so a key serves every version of a model.
    """
    gap = _finite_or_none(band_gap)
    return f"{structure_hash(structure)}|{gap!r}|{cutoff!r}|{int(depolarisation)}"


@dataclass
class PredictionFailure:
    """An input the model could not predict, and why."""

    material_id: str
    formula: str | None
    error: str
    source: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return {"material_id": self.material_id, "formula": self.formula, "error": self.error}


@dataclass(frozen=True)
class MemberTensors:
    """Every member's Cartesian tensors of one prediction.

    ``electronic`` has shape (members, 3, 3); ``ionic`` (ionic members, 3, 3) or ``None``
    without an ionic model; ``embedding`` (members, embedding width), the electronic members'
    structure embeddings (``AnisoNet.forward_with_embedding``), where asked for.
    """

    electronic: np.ndarray
    ionic: np.ndarray | None = None
    embedding: np.ndarray | None = None


class Predictor:
    """A loaded model plus the device and batch size to run it with.

    Parameters
    ----------
    model
        A :class:`LoadedModel` (one network or an ensemble).
    device
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    batch_size
        Structures per forward pass.
    ionic
        Optional ionic model of the set (``config.target == "ionic"``), with the same graph
        cutoff and atom features as ``model``.
    """

    def __init__(
        self,
        model: LoadedModel,
        device: str = "auto",
        batch_size: int = 64,
        ionic: LoadedModel | None = None,
    ) -> None:
        tune_allocator()
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.batch_size = batch_size
        if model.config.target != "electronic":
            raise AnisoscreenError(
                f"{model.name} predicts the {model.config.target} tensor; the model set's "
                "first model must be electronic (set ionic_model for the ionic one)"
            )
        self.ionic = ionic.to(self.device) if ionic is not None else None
        if ionic is not None:
            if ionic.config.target != "ionic":
                raise AnisoscreenError(f"{ionic.name} is not an ionic model")
            mismatch = [
                key
                for key in ("cutoff", "atom_features")
                if getattr(ionic.config, key) != getattr(model.config, key)
            ]
            if mismatch:
                raise AnisoscreenError(
                    f"{ionic.name} and {model.name} differ in {', '.join(mismatch)}; a model "
                    "set shares one graph"
                )
        # the vacuum's depolarisation is built for the laminate read-out (the ionic model
        # shares the graph) and for a spread calibration that tells vacuum from dense crystals
        self._depolarisation = any(
            m is not None and m.config.readout == "psd_laminate_volume" for m in (model, ionic)
        ) or any(self.spread_calibration(q).by_regime for q in ("eps_poly", "anisotropy_ratio"))
        self._known = set(model.config.elements)
        if ionic is not None and ionic.config.elements:
            self._known &= set(ionic.config.elements)
        self.graph_cache: MutableMapping[str, CrystalGraph] | None = None
        """Graphs by :func:`graph_key`, looked up before building one and added to after."""
        self.graphs_built = 0
        """Graphs this predictor has built (not found in :attr:`graph_cache`)."""
        # members side by side on CPU threads (see anisoscreen.model.member_threads)
        self._members = MemberThreads()
        self._featurizer: Featurizer | None = None
        if model.config.atom_features:
            from anisoscreen.model.atom_features import featurizer_for

            self._featurizer = featurizer_for(model.config.atom_features, device=self.device)

    @classmethod
    def load(
        cls,
        name_or_path: str,
        data_dir=None,
        device: str = "auto",
        batch_size: int = 64,
        ionic_model: str | None = None,
    ):
        """Load a model (and optionally the ionic model of the set) by name or path."""
        dev = resolve_device(device)
        ionic = load_model(ionic_model, data_dir, device=dev) if ionic_model else None
        return cls(
            load_model(name_or_path, data_dir, device=dev),
            device=str(dev),
            batch_size=batch_size,
            ionic=ionic,
        )

    # -- checks -------------------------------------------------------------------------
    def graph_or_error(
        self, structure: Structure, band_gap: float | None = None
    ) -> CrystalGraph | str:
        """The structure's graph, or a one-line reason why the model cannot take it.

        ``band_gap`` (eV, where known) travels with the graph for models that take it.
        """
        problems = check_structure(structure)  # once: the checks cost O(atoms^2)
        errors = [p.message for p in problems if p.severity == "error"]
        if errors:
            return "; ".join(errors)
        for p in problems:  # warnings (a slab or wire in a box) are predicted
            logger.warning("%s: %s", structure.composition.reduced_formula, p.message)
        if not structure.is_ordered:
            return "disordered or partially occupied structure; the model needs ordered sites"
        unseen = self._unseen_elements(structure)
        if unseen:
            return unseen
        try:
            graph = structure_to_graph(
                structure,
                self.model.config.cutoff,
                band_gap=_finite_or_none(band_gap),
                depolarisation=self._depolarisation,
            )
        except GraphError as exc:
            return str(exc)
        except Exception as exc:  # one record never stops the batch
            return f"cannot build the graph: {type(exc).__name__}: {exc}"
        self.graphs_built += 1
        return graph

    def _unseen_elements(self, structure: Structure) -> str | None:
        """Why the model cannot take ``structure``'s elements, or ``None`` if it can."""
        if not self._known:
            return None
        unseen = sorted(
            {el.symbol for el in structure.composition.elements if el.Z not in self._known}
        )
        return f"element(s) not seen in training: {', '.join(unseen)}" if unseen else None

    def _cached_graph(
        self, structure: Structure, band_gap: float | None = None
    ) -> CrystalGraph | str:
        """:meth:`graph_or_error` through :attr:`graph_cache` (a cached graph passed the checks)."""
        cache = self.graph_cache
        if cache is None:
            return self.graph_or_error(structure, band_gap)
        key = graph_key(structure, band_gap, self.model.config.cutoff, self._depolarisation)
        cached = cache.get(key)
        if cached is not None:
            return self._unseen_elements(structure) or cached
        graph = self.graph_or_error(structure, band_gap)
        if not isinstance(graph, str):
            cache[key] = graph
        return graph

    def spread_calibration(self, quantity: str) -> SpreadCalibration:
        """The calibration of ``quantity``'s spread (``eps_poly``, ``anisotropy_ratio``).

        Fitted on the validation split when the model was made (its metadata's
        ``spread_calibration``, see :mod:`anisoscreen.model.spread_calibration`), so that
        +-2 sigma covers about 95 % of the errors; the raw spread for models without it.
        """
        stored = (self.model.metadata.get("spread_calibration") or {}).get(quantity)
        return SpreadCalibration() if stored is None else SpreadCalibration.from_dict(stored)

    # -- inference ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_graphs(
        self, graphs: list[CrystalGraph], model: LoadedModel | None = None
    ) -> np.ndarray:
        """Cartesian tensors from every member, shape (members, len(graphs), 3, 3)."""
        batch = collate(graphs).to(self.device)
        networks = (model or self.model).networks
        geometry = networks[0].geometry(batch)  # shared by the members (one config)
        irreps = torch.stack(
            self._members.map(lambda net: net(batch, geometry), networks, self.device)
        )
        return tmath.irreps_to_tensor(irreps.double().cpu().numpy())

    @torch.inference_mode()
    def predict_graphs_with_embeddings(
        self, graphs: list[CrystalGraph]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_graphs` and each member's structure embeddings, from one pass.

        Returns the tensors (members, len(graphs), 3, 3) and the embeddings (members,
        len(graphs), width) of ``AnisoNet.forward_with_embedding``.
        """
        batch = collate(graphs).to(self.device)
        networks = self.model.networks
        geometry = networks[0].geometry(batch)
        pairs = self._members.map(
            lambda net: net.forward_with_embedding(batch, geometry), networks, self.device
        )
        irreps = torch.stack([p[0] for p in pairs]).double().cpu().numpy()
        embeddings = torch.stack([p[1] for p in pairs]).double().cpu().numpy()
        return tmath.irreps_to_tensor(irreps), embeddings

    def _ionic_fields(
        self, record: StructureRecord, electronic: np.ndarray, ionic: np.ndarray
    ) -> dict:
        """eps_ionic, eps_total = eps_inf + eps_ionic and the FOM of one structure."""
        assert self.ionic is not None
        mean_total = tmath.symmetrize(electronic.mean(axis=0)) + tmath.symmetrize(
            ionic.mean(axis=0)
        )
        pairs = (electronic[:, None] + ionic[None, :]).reshape(-1, 3, 3)
        total = TensorPrediction.from_members(mean_total, pairs)
        gap = record.fields.get("band_gap")
        return {
            "eps_ionic": TensorPrediction.from_members(ionic.mean(axis=0), ionic),
            "eps_total": total,
            "ionic_model": self.ionic.name,
            "ionic_model_version": self.ionic.version,
            "ionic_model_checksum": self.ionic.checksum,
            "figure_of_merit": None if gap is None else float(gap) * total.eps_poly,
        }

    def _document(
        self,
        record: StructureRecord,
        tensors: np.ndarray,
        ionic: np.ndarray | None = None,
        vacuum: bool = False,
    ) -> PredictionDoc:
        mean = tensors.mean(axis=0)
        extra: dict[str, object] = {}
        if len(tensors) > 1:
            spreads = spread_quantities(tensors[:, None])
            calibrated = {
                name: float(self.spread_calibration(name).apply(q["sigma"], vacuum)[0])
                for name, q in spreads.items()
            }
            raw_poly = float(spreads["eps_poly"]["sigma"][0])
            # the tensor's spread widens as eps_poly's does
            poly_scale = calibrated["eps_poly"] / raw_poly if raw_poly > 0 else 1.0
            extra = {
                "dielectric_tensor_std": (tensors.std(axis=0, ddof=1) * poly_scale).tolist(),
                "eps_poly_std": calibrated["eps_poly"],
                "anisotropy_ratio_std": calibrated["anisotropy_ratio"],
            }
            dn = np.asarray(tmath.birefringence(tensors))
            if np.all(np.isfinite(dn)):
                extra["birefringence_std"] = float(dn.std(ddof=1))
        if self.model.config.gap_input:
            extra["band_gap_used"] = _finite_or_none(record.fields.get("band_gap")) is not None
        structure = record.structure
        if structure is None:
            raise ValueError(f"{record.material_id}: no structure to describe")
        fields = {
            k: record.fields.get(k) for k in _RECORD_FIELDS if record.fields.get(k) is not None
        }
        fields.update(optics_fields(mean, structure.lattice.matrix))
        fields["lattice_parameters"] = lattice_parameters(structure)
        return PredictionDoc.from_tensor(
            mean,
            material_id=record.material_id,
            formula_pretty=structure.composition.reduced_formula,
            model=self.model.name,
            model_version=self.model.version,
            model_checksum=self.model.checksum,
            n_models=len(tensors),
            elements=sorted(el.symbol for el in structure.composition.elements),
            nsites=len(structure),
            **fields,
            **extra,
            **(self._ionic_fields(record, tensors, ionic) if ionic is not None else {}),
        )

    def _add_atom_features(self, graphs: list[CrystalGraph], results: list) -> list[CrystalGraph]:
        """Attach pretrained atom features; a structure that fails becomes a failure in place."""
        positions = [i for i, item in enumerate(results) if not isinstance(item, PredictionFailure)]
        # a potential with the model's cutoff reuses the model's graphs (one neighbour search)
        structures = [results[i].structure for i in positions]
        featurizer = self._featurizer
        if featurizer is None:
            raise ValueError("this model takes no atom features")
        if getattr(featurizer, "cutoff", None) == self.model.config.cutoff:
            features = featurizer.featurize_each(structures, graphs)
        else:
            features = featurizer.featurize_each(structures)
        kept = []
        for graph, position, value in zip(graphs, positions, features, strict=True):
            if isinstance(value, str):
                record = results[position]
                results[position] = PredictionFailure(
                    record.material_id, record.formula, value, record.source
                )
            else:
                graph.atom_features = value
                kept.append(graph)
        return kept

    def predict(
        self,
        records: Iterable[StructureRecord],
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[PredictionDoc | PredictionFailure]:
        """Predict every record, in input order, streaming ``batch_size`` at a time."""
        for result, _ in self.predict_with_members(records, progress):
            yield result

    def predict_with_members(
        self,
        records: Iterable[StructureRecord],
        progress: Callable[[int], None] | None = None,
        embeddings: bool = False,
    ) -> Iterator[tuple[PredictionDoc | PredictionFailure, MemberTensors | None]]:
        """Like :meth:`predict`, with each prediction's member tensors from the same pass.

        Yields ``(doc, members)`` in input order; ``members`` is ``None`` for a
        :class:`PredictionFailure`. With ``embeddings`` the members also carry their
        structure embeddings (same pass, same tensors).
        """
        iterator = iter(records)
        # the next chunk's graphs are built on a second thread while this chunk runs through
        # the network: graph building is Python and numpy, the network mostly kernels that
        # release the interpreter lock, so the two overlap. Records are read here, in the
        # calling thread, where a file's parse time limit works (anisoscreen.time_limit).
        with ThreadPoolExecutor(1, thread_name_prefix="anisoscreen-graphs") as builder:
            chunk = list(itertools.islice(iterator, self.batch_size))
            pending = builder.submit(self._graphs_of, chunk)
            while chunk:
                graphs, results = pending.result()
                size = len(chunk)
                chunk = list(itertools.islice(iterator, self.batch_size))
                pending = builder.submit(self._graphs_of, chunk)
                yield from self._predict_chunk(graphs, results, embeddings)
                if progress is not None:
                    progress(size)

    def _graphs_of(
        self, chunk: list[StructureRecord]
    ) -> tuple[list[CrystalGraph], list[StructureRecord | PredictionFailure]]:
        """The graphs of ``chunk``, and the results in input order.

        ``results`` holds a :class:`PredictionFailure` for each record that has no graph and
        the record itself for each one that has.
        """
        graphs: list[CrystalGraph] = []
        results: list[StructureRecord | PredictionFailure] = []
        for record in chunk:
            if record.structure is None:
                results.append(
                    PredictionFailure(
                        record.material_id, None, record.error or "no structure", record.source
                    )
                )
                continue
            graph = self._cached_graph(record.structure, record.fields.get("band_gap"))
            if isinstance(graph, str):
                results.append(
                    PredictionFailure(record.material_id, record.formula, graph, record.source)
                )
            else:
                graphs.append(graph)
                results.append(record)
        return graphs, results

    def _predict_chunk(
        self,
        graphs: list[CrystalGraph],
        results: list[StructureRecord | PredictionFailure],
        with_embeddings: bool = False,
    ) -> Iterator[tuple[PredictionDoc | PredictionFailure, MemberTensors | None]]:
        """Documents (or failures) of one chunk, in input order, with the member tensors."""
        if self._featurizer is not None and graphs:
            graphs = self._add_atom_features(graphs, results)
        embedded: np.ndarray | None = None
        tensors: np.ndarray | None = None
        if graphs and with_embeddings:
            tensors, embedded = self.predict_graphs_with_embeddings(graphs)
        elif graphs:
            tensors = self.predict_graphs(graphs)
        ionic = (
            self.predict_graphs(graphs, self.ionic) if graphs and self.ionic is not None else None
        )
        k = 0
        for item in results:
            if isinstance(item, PredictionFailure):
                yield item, None
            else:
                assert tensors is not None
                members = MemberTensors(
                    tensors[:, k],
                    None if ionic is None else ionic[:, k],
                    None if embedded is None else embedded[:, k],
                )
                vacuum = graphs[k].has_vacuum
                yield self._document(item, members.electronic, members.ionic, vacuum), members
                k += 1


def _finite_or_none(value: object) -> float | None:
    """A finite float from ``value``, or ``None`` (missing, null, nan or not a number)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def predict_structures(
    structures: Iterable[Structure | StructureRecord | str | Path],
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    batch_size: int = 64,
    ionic_model: str | None = None,
) -> list[PredictionDoc | PredictionFailure]:
    """Python API: predict the dielectric tensors of structures with a named model or path.

    ``structures`` may hold structure files and folders, named by the same ids as
    ``predict`` and ``run-screen`` give them (:func:`anisoscreen.structures_io.file_ids`);
    a :class:`Structure` object gets its structure hash. With ``ionic_model`` the documents
    also hold ``eps_ionic`` and ``eps_total``.
    """
    from anisoscreen.structures_io import as_records

    records = as_records(structures)  # one id rule with `predict` and `run-screen`
    predictor = Predictor.load(model, device=device, batch_size=batch_size, ionic_model=ionic_model)
    return list(predictor.predict(records))
