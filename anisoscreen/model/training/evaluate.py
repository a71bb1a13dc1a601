"""Test-set metrics: MAE of eps_poly, of a_r and of the tensor components, per crystal system.

``tensor_mae`` is DTNet's MAE_ten (Mao, Li & Tan 2024, eq. 3): the mean absolute error over
the six unique components (xx, yy, zz, yz, xz, xy); ``component_mae`` averages all nine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from anisoscreen import tensor as tmath
from anisoscreen.model.nn.graph import CrystalGraph, collate
from anisoscreen.model.training.error_slices import (
    by_band_gap,
    calibration,
    error_block,
    error_slices,
    has_anisotropy_ratio,
    tensor_mae,
)

if TYPE_CHECKING:
    from anisoscreen.model.training.dataset import DielectricEntry

__all__ = [
    "PredictionCount",
    "apply_posthoc_laminate",
    "crystal_systems",
    "evaluate_model",
    "evaluate_model_set",
    "metrics",
    "predict_irreps",
    "predict_with_embeddings",
    "tensor_mae",
]


Report = Callable[[int, int | None], None]
"""``report(done, total)``: ``done`` structures of ``total`` are predicted."""


class PredictionCount:
    """Counts the structures an evaluation predicts, for a ``report(done, total)`` callback.

    ``expect(n)`` adds ``n`` predictions to the total (a pass over ``n`` structures);
    ``advance(n)`` counts ``n`` done and reports. One count can span several evaluations
    (a model set's electronic and ionic models).
    """

    def __init__(self, report: Report | None = None) -> None:
        self.report, self.done, self.total = report, 0, 0

    def expect(self, n: int) -> None:
        self.total += n
        if self.report is not None:
            self.report(self.done, self.total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.report is not None:
            self.report(self.done, self.total)


@torch.inference_mode()
def predict_irreps(
    networks: Sequence[torch.nn.Module],
    graphs: Sequence[CrystalGraph],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Irreps predictions of every network, shape (n_networks, n_graphs, 6).

    ``advance(n)`` is called after each batch with the number of structures it predicted.
    """
    out = np.zeros((len(networks), len(graphs), 6))
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size]).to(device)
        geometry = networks[0].geometry(batch)  # type: ignore[operator]
        for k, net in enumerate(networks):
            out[k, start : start + batch.num_graphs] = net(batch, geometry).double().cpu().numpy()
        if advance is not None:
            advance(batch.num_graphs)
    return out


@torch.inference_mode()
def predict_with_embeddings(
    networks: Sequence[torch.nn.Module],
    graphs: Sequence[CrystalGraph],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Irreps and structure embeddings of every network from one pass.

    Returns
    -------
    (np.ndarray, np.ndarray)
        Irreps ``(n_networks, n_graphs, 6)`` (as :func:`predict_irreps`) and embeddings
        ``(n_networks, n_graphs, embedding_dim)`` (``AnisoNet.forward_with_embedding``).
    """
    width = int(networks[0].embedding_dim)  # type: ignore[arg-type]
    irreps = np.zeros((len(networks), len(graphs), 6))
    embeddings = np.zeros((len(networks), len(graphs), width))
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size]).to(device)
        geometry = networks[0].geometry(batch)  # type: ignore[operator]
        stop = start + batch.num_graphs
        for k, net in enumerate(networks):
            out, embedded = net.forward_with_embedding(batch, geometry)  # type: ignore[operator]
            irreps[k, start:stop] = out.double().cpu().numpy()
            embeddings[k, start:stop] = embedded.double().cpu().numpy()
    return irreps, embeddings


def crystal_systems(structures: Sequence[Any], symprec: float = 0.1) -> list[str]:
    """Crystal system of each structure (pymatgen's SpacegroupAnalyzer)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    systems: list[str] = []
    for structure in structures:
        try:
            systems.append(SpacegroupAnalyzer(structure, symprec=symprec).get_crystal_system())
        except Exception:  # spglib failure on a pathological cell
            systems.append("unknown")
    return systems


def metrics(
    predicted: np.ndarray,
    reference: np.ndarray,
    systems: Sequence[str] | None = None,
    target: str = "electronic",
) -> dict[str, Any]:
    """MAEs between predicted and reference 3x3 tensors (shape (n, 3, 3)) of ``target``.

    Returns overall ``eps_poly_mae``, ``anisotropy_ratio_mae`` (``None`` for the ionic
    target, whose tensors can have a zero eigenvalue), ``component_mae``, ``tensor_mae``
    (see :func:`~anisoscreen.model.training.error_slices.error_block`) and, when ``systems``
    is given, the same per crystal system under ``per_crystal_system``.
    """
    anisotropy = has_anisotropy_ratio(target)
    result: dict[str, Any] = error_block(predicted, reference, anisotropy)
    if systems is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, system in enumerate(systems):
            groups[system].append(i)
        result["per_crystal_system"] = {
            system: error_block(predicted[idx], reference[idx], anisotropy)
            for system, idx in sorted(groups.items())
        }
    return result


def apply_posthoc_laminate(per_member: np.ndarray, structures: Sequence[Any]) -> np.ndarray:
    """A sum/V model's tensors re-mixed with each structure's vacuum (the post-hoc baseline).

    Reads each prediction as the dense susceptibility ``eps - I`` and mixes it with the
    structure's geometric depolarisation (:func:`anisoscreen.geometry.laminate_mix`): in
    the plane nothing changes, along a layer normal the parallel mix becomes a series mix.
    ``per_member`` has shape (members, n, 3, 3).
    """
    from anisoscreen.geometry import depolarisation_tensor, laminate_mix

    depolarisation = np.stack([depolarisation_tensor(s) for s in structures])
    return laminate_mix(per_member - np.eye(3), depolarisation[None])


@dataclass(frozen=True)
class _MemberTensors:
    """The members' tensors (members, n, 3, 3) of a list of graphs, one call a pass.

    Holds what every pass of an evaluation shares: the members, the device, whether the
    post-hoc laminate re-mix applies and the count, which each pass advances (its total
    already expects them).
    """

    networks: Sequence[torch.nn.Module]
    device: torch.device | str
    posthoc_laminate: bool
    count: PredictionCount

    def __call__(self, graphs: list[CrystalGraph], structures: Sequence[Any]) -> np.ndarray:
        irreps = predict_irreps(self.networks, graphs, self.device, advance=self.count.advance)
        per_member = tmath.irreps_to_tensor(irreps)
        if self.posthoc_laminate:
            return apply_posthoc_laminate(per_member, structures)
        return per_member


def _without_gaps(graphs: list[CrystalGraph]) -> list[CrystalGraph]:
    from dataclasses import replace

    return [replace(g, band_gap=float("nan")) for g in graphs]


def evaluate_model(
    model: str,
    data_path: str | Path,
    data_dir: Path | None = None,
    subset: str = "test",
    split_seed: int | None = None,
    device: str = "auto",
    members: Sequence[int] | None = None,
    dimensionality: Callable[[Any], int | None] | None = None,
    exfoliated: bool = True,
    posthoc_laminate: bool = False,
    progress: Report | PredictionCount | None = None,
    cleaned: Sequence[DielectricEntry] | None = None,
    systems: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of a model on one split of a dielectric data set.

    The split is rebuilt from the model's recorded ``split_seed`` (overridable), with the same
    cleaning as training, so ``subset="test"`` evaluates structures the model never saw.
    ``members`` evaluates the mean of those ensemble members only (0-based; default: all).
    The result's ``slices`` (:func:`~anisoscreen.model.training.error_slices.error_slices`) add
    the vacuum-separated layers, the high-eps tail, the ensemble calibration and, with a
    ``dimensionality`` function (structure -> 0-3), errors per dimensionality.

    The reference is the tensor the model predicts (``config.target``: electronic, ionic or
    total); the test subset is the same for every target (see
    :func:`~anisoscreen.model.training.dataset.target_cleaning`).

    The slices also hold the errors per PBE band-gap bin (``by_band_gap``; for a model that
    takes the gap, also ``by_band_gap_without_gap``, the same structures with their gaps
    hidden) and, for an electronic model with ``exfoliated``, the *exfoliated slice*: the
    subset's layered entries pulled apart and labelled by the laminate law
    (:mod:`~anisoscreen.model.training.exfoliated`). ``posthoc_laminate`` applies
    :func:`apply_posthoc_laminate` to every prediction (the baseline for sum/V models).

    ``progress(done, total)`` follows the structures predicted (every pass: the subset and
    its gap-free copy, counted from the start; the exfoliated copies, added to the total once
    they are made), or give a
    :class:`PredictionCount` to count on across evaluations.

    ``cleaned`` are ``data_path``'s cleaned entries (``clean_entries(load_entries(data_path))``)
    where the caller has read them already; by default they are read here. ``systems`` are
    the subset's crystal systems where the caller has them (another model of the same split);
    by default they are found here.

    Returns
    -------
    dict
        ``model``, ``target``, ``members``, ``subset``, ``split_seed``, ``metrics``,
        ``slices`` and ``crystal_systems`` (JSON-ready) and the arrays ``predicted`` and
        ``reference`` (n, 3, 3) for plots (the CLI draws them) and ``member_predicted``
        (members, n, 3, 3), each member's tensors (:data:`ARRAY_KEYS`; :func:`summary` drops
        them).
    """
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.model.atom_features import data_set_cache
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
    from anisoscreen.model.training.train import (
        attach_physics_priors,
        prepare_graphs,
        resolve_device,
    )

    count = progress if isinstance(progress, PredictionCount) else PredictionCount(progress)
    dev = resolve_device(device)
    loaded = load_model(model, data_dir, device=dev)
    networks = loaded.networks
    if members is not None:
        unknown = [k for k in members if not 0 <= k < len(networks)]
        if unknown or not members:
            raise AnisoscreenError(
                f"members {list(members)} not in this {len(networks)}-member model"
            )
        networks = [networks[k] for k in members]
    seed = split_seed if split_seed is not None else loaded.metadata.get("split_seed", 42)
    entries = list(cleaned) if cleaned is not None else clean_entries(load_entries(data_path))[0]
    # a model trained on the first n cleaned entries is evaluated on the split of those n
    entries = entries[: loaded.metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), seed)
    if subset not in split:
        raise AnisoscreenError(f"unknown subset {subset!r}; use train, validation or test")
    chosen = [entries[i] for i in split[subset]]
    features = loaded.config.atom_features
    feature_cache = data_set_cache(features, data_path) if features else None  # checksum once
    graphs = prepare_graphs(chosen, loaded.config.cutoff, features, feature_cache)
    structures = [e.structure for e in chosen]
    if loaded.config.physics_prior:  # the priors the model was trained with, for any split
        priors = loaded.metadata.get("train_config", {}).get("physics_priors")
        if not priors:
            raise AnisoscreenError("this hybrid model records no physics_priors file")
        attach_physics_priors(graphs, structures, priors)
    # the subset, and again with the gaps hidden for a model that takes them
    count.expect(len(graphs) * (2 if loaded.config.gap_input else 1))
    member_tensors = _MemberTensors(networks, dev, posthoc_laminate, count)
    per_member = member_tensors(graphs, structures)
    predicted = per_member.mean(axis=0)
    reference = np.stack([e.tensor(loaded.config.target) for e in chosen])
    dimensionalities = [dimensionality(s) for s in structures] if dimensionality else None
    scales = loaded.metadata.get("spread_calibration")
    vacuum = np.array([g.has_vacuum for g in graphs])
    anisotropy = has_anisotropy_ratio(loaded.config.target)
    slices = error_slices(
        per_member, reference, structures, dimensionalities, scales, vacuum, anisotropy
    )
    gaps = [e.band_gap for e in chosen]
    slices["by_band_gap"] = by_band_gap(predicted, reference, gaps, anisotropy)
    if loaded.config.gap_input:
        gap_free = member_tensors(_without_gaps(graphs), structures)
        slices["without_gap"] = error_block(gap_free.mean(axis=0), reference)
        slices["by_band_gap_without_gap"] = by_band_gap(gap_free.mean(axis=0), reference, gaps)
    if exfoliated and loaded.config.target == "electronic" and subset != "train":
        slices["exfoliated"] = _exfoliated_slice(
            loaded, member_tensors, entries, split[subset].tolist(), scales, feature_cache
        )
    if systems is None or len(systems) != len(structures):
        systems = crystal_systems(structures)
    result = {
        "model": f"{loaded.name} {loaded.version}",
        "target": loaded.config.target,
        "members": list(members) if members is not None else list(range(len(networks))),
        "subset": subset,
        "split_seed": seed,
        "metrics": metrics(predicted, reference, systems, loaded.config.target),
        "slices": slices,
        "crystal_systems": list(systems),
        "predicted": predicted,
        "reference": reference,
        "member_predicted": per_member,
    }
    return result


ARRAY_KEYS = ("predicted", "reference", "member_predicted")
"""The keys of an :func:`evaluate_model` result that hold arrays, not JSON."""


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """An :func:`evaluate_model` result without its arrays (:data:`ARRAY_KEYS`): JSON-ready."""
    return {k: v for k, v in result.items() if k not in ARRAY_KEYS}


def _exfoliated_slice(
    loaded: Any,
    member_tensors: _MemberTensors,
    entries: Sequence[Any],
    indices: Sequence[int],
    scales: dict[str, dict[str, float]] | None,
    feature_cache: Path | None,
) -> dict[str, Any]:
    """Errors and calibration on the exfoliated copies of the layered entries of a split."""
    from anisoscreen.model.training.exfoliated import (
        EXFOLIATION_DELTAS,
        exfoliated_copies,
        exfoliated_graphs,
    )

    deltas = loaded.metadata.get("train_config", {}).get("exfoliation_deltas") or (
        EXFOLIATION_DELTAS
    )
    copies = [c for group in exfoliated_copies(entries, indices, deltas).values() for c in group]
    if not copies:
        return {"n": 0}
    structures = [c.structure for c in copies]
    graphs = exfoliated_graphs(
        copies, entries, loaded.config.cutoff, loaded.config.atom_features, feature_cache
    )
    member_tensors.count.expect(len(graphs))
    per_member = member_tensors(graphs, structures)
    reference = np.stack([c.eps_electronic for c in copies])
    return {
        **error_block(per_member.mean(axis=0), reference),
        "entries": len({c.parent for c in copies}),
        "deltas": list(deltas),
        "calibration": calibration(
            per_member,
            reference,
            scales,
            np.array([g.has_vacuum for g in graphs]),
        ),
    }


def evaluate_model_set(
    electronic: str,
    ionic: str,
    data_path: str | Path,
    data_dir: Path | None = None,
    subset: str = "test",
    device: str = "auto",
    progress: Report | None = None,
    cleaned: Sequence[DielectricEntry] | None = None,
) -> dict[str, Any]:
    """Metrics of a model set for eps_inf, eps0 and the static eps_total = eps_inf + eps0.

    Both models must have been trained on the same entries and split (they share the test
    structures); the total is the sum of the two ensemble means, compared with DFPT's
    eps_total. ``progress(done, total)`` counts the structures both models predict.
    ``cleaned``: the data set's entries after :func:`clean_entries`, if already loaded.

    Returns
    -------
    dict
        ``{"electronic": ..., "ionic": ..., "total": ...}`` results of :func:`evaluate_model`
        shape (the total's ``model`` names both; its ``indices`` are the split's entries in
        ``cleaned``, in the order of the predictions, and ``crystal_systems`` theirs).
    """
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split

    count = PredictionCount(progress)
    # read once: both evaluations and the total's reference tensors use the same entries
    entries = list(cleaned) if cleaned is not None else clean_entries(load_entries(data_path))[0]
    results: dict[str, dict[str, Any]] = {}
    systems = None  # found once: both models are evaluated on the same split
    for name, path in (("electronic", electronic), ("ionic", ionic)):
        results[name] = evaluate_model(
            path,
            data_path,
            data_dir,
            subset,
            device=device,
            progress=count,
            cleaned=entries,
            systems=systems,
        )
        systems = results[name]["crystal_systems"]
    if results["electronic"]["target"] != "electronic" or results["ionic"]["target"] != "ionic":
        raise AnisoscreenError("a model set needs an electronic and an ionic model")
    if results["electronic"]["reference"].shape != results["ionic"]["reference"].shape or (
        results["electronic"]["split_seed"] != results["ionic"]["split_seed"]
    ):
        raise AnisoscreenError("the two models were not trained on the same split")
    seed = results["electronic"]["split_seed"]
    n = len(results["electronic"]["reference"])
    chosen_all = random_split(len(entries), seed)[subset]
    predicted = results["electronic"]["predicted"] + results["ionic"]["predicted"]
    if len(chosen_all) != n:  # trained on the first n_entries only: rebuild that split
        from anisoscreen.model.checkpoint import load_model

        n_entries = load_model(electronic, data_dir).metadata.get("n_entries") or len(entries)
        chosen_all = random_split(n_entries, seed)[subset]
    chosen = [entries[i] for i in chosen_all]
    reference = np.stack([e.tensor("total") for e in chosen])
    systems = results["electronic"]["crystal_systems"]  # the chosen structures', as checked
    results["total"] = {
        "model": f"{results['electronic']['model']} + {results['ionic']['model']}",
        "target": "total",
        "subset": subset,
        "split_seed": seed,
        "metrics": metrics(predicted, reference, systems, "total"),
        "indices": [int(i) for i in chosen_all],
        "crystal_systems": systems,
        "predicted": predicted,
        "reference": reference,
    }
    return results
