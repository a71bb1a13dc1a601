"""Offline campaigns against an oracle: the loop of a real campaign with the labels hidden.

An oracle file is a JSON list of ``{material_id, structure, dielectric_tensor}`` (the shared
MP DFPT set's ``eps_electronic`` is accepted too: :mod:`anisoscreen.campaign.oracle`). The
simulation predicts the whole pool with the current model, lets the strategy pick a batch
among the unlabelled candidates, reveals only the picked labels, fine-tunes the ensemble on
every label revealed so far (plus a replay sample of the model's training split) and
repeats. Each round reports the picks, the hits (picks in the pool's true top-k of the
objective), the best value found so far and the model's error on the unlabelled rest.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.campaign.acquisition import (
    DiversityGuard,
    EmbeddingDiversity,
    group_labels,
    make_strategy,
)
from anisoscreen.campaign.finetune import (
    FinetuneConfig,
    LabelledEntry,
    finetune_model,
    replay_sample,
    training_entries,
)
from anisoscreen.campaign.learner import (
    LEARNERS,
    LogSpace,
    check_carry_siblings,
    check_learner,
    geometry_columns,
    pool_coordinates,
    posterior_values,
    residual_posterior,
    with_siblings,
)
from anisoscreen.campaign.oracle import oracle_tensor, read_oracle_records
from anisoscreen.campaign.residual import Posterior, coverage, loo_scale
from anisoscreen.campaign.siblings import sibling_table
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import LoadedModel, load_model
from anisoscreen.model.runtime import tune_allocator
from anisoscreen.model.training.dataset import (
    DielectricEntry,
    clean_entries,
    load_entries,
    random_split,
)
from anisoscreen.model.training.evaluate import predict_with_embeddings
from anisoscreen.model.training.exfoliated import EXFOLIATION_DELTAS, exfoliated_copies
from anisoscreen.model.training.regimes import regime_indices
from anisoscreen.model.training.train import prepare_graphs
from anisoscreen.screening.objectives import needs_ionic, tensor_values
from anisoscreen.settings import DEFAULT_MODEL

__all__ = [
    "LEARNERS",
    "OracleEntry",
    "PreparedPool",
    "SimulationConfig",
    "build_oracle",
    "build_regime_oracle",
    "load_oracle",
    "prepare_pool",
    "simulate",
    "write_oracle",
]


@dataclass
class OracleEntry:
    """One labelled material of the pool."""

    material_id: str
    structure: Structure
    dielectric_tensor: np.ndarray


def load_oracle(path: str | Path) -> list[OracleEntry]:
    """Read an oracle JSON(.gz) list (see :mod:`anisoscreen.campaign.oracle` for its shape)."""
    return [
        OracleEntry(
            material_id=str(r["material_id"]),
            structure=Structure.from_dict(r["structure"]),
            dielectric_tensor=tmath.symmetrize(np.asarray(oracle_tensor(r), float)),
        )
        for r in read_oracle_records(path)
    ]


def build_oracle(
    data_path: str | Path,
    split_seed: int = 42,
    subsets: Sequence[str] = ("validation", "test"),
) -> list[OracleEntry]:
    """The oracle pool of a data set: the given splits of the cleaned, seeded split.

    With the defaults these are the structures the shipped model never trained on.
    """
    entries, _ = clean_entries(load_entries(data_path))
    split = random_split(len(entries), split_seed)
    indices = sorted(int(i) for key in subsets for i in split[key])
    return [
        OracleEntry(e.material_id, e.structure, e.eps_electronic)
        for e in (entries[i] for i in indices)
    ]


def build_regime_oracle(
    data_path: str | Path,
    regime: str,
    indices: Sequence[int] | None = None,
    deltas: Sequence[float] = EXFOLIATION_DELTAS,
) -> list[OracleEntry]:
    """The out-of-distribution pool of a regime: its entries of the cleaned data set, all splits.

    ``layered`` also gets the exfoliated copies of its stacks (gaps opened by ``deltas``,
    labelled by the laminate law; ids ``<parent>-exf<delta>``). ``indices``: the regime's
    entries when already known (:func:`~anisoscreen.model.training.regimes.regime_indices`).
    """
    entries, _ = clean_entries(load_entries(data_path))
    if indices is None:
        indices = regime_indices(entries, regime).tolist()
    pool = [
        OracleEntry(entries[i].material_id, entries[i].structure, entries[i].eps_electronic)
        for i in indices
    ]
    if regime == "layered":
        for parent, copies in exfoliated_copies(entries, indices, deltas).items():
            pool.extend(
                OracleEntry(
                    f"{entries[parent].material_id}-exf{c.delta:g}", c.structure, c.eps_electronic
                )
                for c in copies
            )
    return pool


def write_oracle(entries: Sequence[OracleEntry], path: str | Path) -> Path:
    """Write an oracle file (gzipped when the name ends in ``.gz``)."""
    path = Path(path)
    records = [
        {
            "material_id": e.material_id,
            "structure": e.structure.as_dict(),
            "dielectric_tensor": tmath.as_list(e.dielectric_tensor),
        }
        for e in entries
    ]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        json.dump(records, handle)
    return path


@dataclass
class SimulationConfig:
    """Settings of one simulated campaign.

    Parameters
    ----------
    strategy
        Acquisition strategy name (greedy, ucb, exploration, random, thompson).
    rounds, batch_size
        Number of rounds and picks per round.
    seed
        Seeds random and Thompson picks and the fine-tuning.
    top_k
        A hit is a pick in the pool's true top ``top_k`` of the objective.
    objective
        ``"ar"``, ``"eps-poly"`` or ``"birefringence"`` (the oracle holds eps_inf only).
    kappa
        UCB exploration weight.
    group_by, max_per_group
        Diversity guard (see :func:`~anisoscreen.campaign.acquisition.group_labels`).
    model
        Starting model (name or path).
    finetune
        Fine-tuning settings; ``None`` keeps the starting model for every round.
    learner
        How the revealed labels are learnt: ``"finetune"`` (the ensemble is fine-tuned with
        ``finetune`` after each round and the strategies see its member values) or ``"gp"``
        (the networks stay frozen; a :class:`~anisoscreen.campaign.residual.ResidualGP` on
        their embeddings predicts the residual of the log objective, its sigma recalibrated
        on the labels' leave-one-out errors, and the strategies see posterior samples).
    diversity
        ``"group"``: the ``group_by`` guard only; ``"embedding"``: also a minimum distance
        between a batch's picks in the embedding space
        (:class:`~anisoscreen.campaign.acquisition.EmbeddingDiversity`).
    diversity_quantile
        The embedding radius as a quantile of the pool's pairwise distances.
    recalibrate
        ``finetune`` learner: scale the ensemble's spread each round so the picks made so far
        have unit RMS z-score, and let the strategies see posterior samples (``False``: they
        see the members, unscaled). The ``gp`` learner always recalibrates.
    gp_offset
        ``gp`` learner: a constant prior mean (the labels' shrunk mean residual) in place of
        zero (:class:`~anisoscreen.campaign.residual.ResidualGP` ``fit_offset``).
    gp_geometry
        Add the vacuum geometry (:func:`~anisoscreen.campaign.learner.geometry_columns`) to
        the coordinates of the GP and of the embedding diversity.
    unseen_elements
        Keep pool structures with elements the model never trained on (their element
        embedding is the untrained one): an out-of-distribution chemical family.
    carry_siblings
        ``gp`` learner: carry each label by the laminate law to the other paddings of the
        same layer stack in the pool (:mod:`~anisoscreen.campaign.siblings`), combined with
        the GP's posterior (:func:`~anisoscreen.campaign.learner.with_siblings`).
        Electronic objectives only.
    """

    strategy: str = "ucb"
    rounds: int = 3
    batch_size: int = 10
    seed: int = 0
    top_k: int = 10
    objective: str = "ar"
    kappa: float = 1.5
    group_by: str = "prototype"
    max_per_group: int = 3
    model: str = DEFAULT_MODEL
    finetune: FinetuneConfig | None = field(default_factory=FinetuneConfig)
    learner: str = "finetune"
    diversity: str = "group"
    diversity_quantile: float = 0.1
    recalibrate: bool = False
    gp_offset: bool = False
    gp_geometry: bool = False
    unseen_elements: bool = False
    carry_siblings: bool = False


@dataclass
class PreparedPool:
    """The predictable part of an oracle: entries, graphs, true objective and group labels."""

    entries: list[OracleEntry]
    graphs: list[Any]
    truth: np.ndarray
    groups: list[str] | None
    dropped: list[str]
    geometry: np.ndarray | None = None
    siblings: np.ndarray | None = None

    def sibling_table(self) -> np.ndarray:
        """:func:`~anisoscreen.campaign.siblings.sibling_table` of the entries (computed once)."""
        if self.siblings is None:
            self.siblings = sibling_table([e.structure for e in self.entries])
        return self.siblings


def prepare_pool(
    oracle: Sequence[OracleEntry], model: LoadedModel, config: SimulationConfig
) -> PreparedPool:
    """The oracle entries ``model`` can predict, with graphs, objective values and groups.

    Reusable across campaigns of one model, objective and ``group_by`` (pass it to
    :func:`simulate` as ``prepared``).
    """
    known = set(model.config.elements)
    kept, dropped = [], []
    for entry in oracle:
        if not entry.structure.is_ordered or (
            known
            and not config.unseen_elements
            and any(el.Z not in known for el in entry.structure.composition.elements)
        ):
            dropped.append(entry.material_id)
        else:
            kept.append(entry)
    if len(kept) < config.batch_size:
        raise AnisoscreenError(f"only {len(kept)} oracle entries can be predicted by the model")
    as_entries = [
        DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor) for e in kept
    ]
    graphs = prepare_graphs(as_entries, model.config.cutoff, model.config.atom_features)
    truth = tensor_values(np.stack([e.dielectric_tensor for e in kept]), config.objective)
    groups = group_labels([e.structure for e in kept], config.group_by)
    geometry = geometry_columns([e.structure for e in kept]) if config.gp_geometry else None
    return PreparedPool(kept, graphs, truth, groups, dropped, geometry)


def simulate(
    oracle: Sequence[OracleEntry],
    config: SimulationConfig,
    shared: Path,
    data_dir: Path | None = None,
    work_dir: Path | None = None,
    pool_predictions: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    pool_embeddings: np.ndarray | None = None,
    evaluate_final: bool = False,
    prepared: PreparedPool | None = None,
    mae_subsets: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """Run one simulated campaign and return its report (JSON-ready).

    Parameters
    ----------
    oracle
        The labelled pool.
    config
        Strategy, rounds, batch size, objective, model, learner and fine-tuning.
    shared
        Shared data folder (the replay sample is read from the model's training data there).
    data_dir
        Where named models are looked up.
    work_dir
        Where fine-tuned versions are written (a temporary folder, deleted, when ``None``).
    pool_predictions, pool_embeddings
        Member values and member embeddings of the starting model on the pool (reused across
        runs to save time; the embeddings are needed by the ``gp`` learner and the
        ``embedding`` diversity, and computed in the same pass when not given).
    progress
        Called with one line per event.
    evaluate_final
        Also learn the last round's labels and report the MAE on the unlabelled rest after
        them (``final_mae_unlabelled``).
    prepared
        :func:`prepare_pool` of this oracle, model and config (built when ``None``).
    mae_subsets
        Named sets of material ids: every round (and the final evaluation) also reports the
        MAE on the unlabelled members of each (``mae_unlabelled_subsets``), e.g. a pool's
        data-set entries without the copies made from them.

    Every round reports the picks, hits, best value found, the MAE of the current model on
    the unlabelled candidates, and the calibration of the sigma the picks were made with:
    ``coverage_2sigma``, the share of the picks whose (then hidden) log objective lies within
    ``mean +- 2 sigma``, and the ``sigma_scale`` applied.
    """
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="anisoscreen-sim-") as tmp:
            return simulate(
                oracle, config, shared, data_dir, Path(tmp), pool_predictions, progress,
                pool_embeddings, evaluate_final, prepared, mae_subsets,
            )  # fmt: skip
    tune_allocator()
    say = progress or (lambda line: None)
    started = time.perf_counter()
    if needs_ionic(config.objective):
        raise AnisoscreenError(
            f"objective {config.objective!r} needs the ionic tensor; an oracle holds eps_inf only"
        )
    check_learner(config.learner)
    if config.diversity not in ("group", "embedding"):
        raise AnisoscreenError(f"unknown diversity {config.diversity!r}; use group or embedding")
    check_carry_siblings(config.carry_siblings, config.learner, config.objective)
    strategy = make_strategy(config.strategy, config.kappa)
    rng = np.random.default_rng(config.seed)
    model = load_model(config.model, data_dir)
    say(f"building the graphs of {len(oracle)} oracle structures")
    pool = prepared or prepare_pool(oracle, model, config)
    if config.gp_geometry and pool.geometry is None:
        pool.geometry = geometry_columns([e.structure for e in pool.entries])
    n = len(pool.entries)
    top_k = min(config.top_k, n)
    hits_set = set(np.argsort(-pool.truth, kind="stable")[:top_k].tolist())
    labelled = np.zeros(n, dtype=bool)
    needs_embeddings = config.learner == "gp" or config.diversity == "embedding"
    logged = LogSpace(config.objective)
    truth_log = logged.forward(pool.truth)
    state = _LearnerState(pool_predictions, pool_embeddings)
    rounds: list[dict[str, Any]] = []
    cumulative = 0
    pick_log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (picks, mean, raw sigma)
    final_mae = None
    final_subset_mae: dict[str, float] = {}
    ids = np.array([e.material_id for e in pool.entries])
    subsets = {
        name: np.isin(ids, np.array(sorted(members), dtype=str))
        for name, members in (mae_subsets or {}).items()
    }
    for index in range(config.rounds + int(evaluate_final)):
        round_start = time.perf_counter()
        final = index == config.rounds
        if state.values is None or (needs_embeddings and state.embeddings is None):
            say(f"round {index}: predicting {n} structures with {len(model.networks)} member(s)")
            irreps, embeddings = predict_with_embeddings(model.networks, pool.graphs)
            state.values = tensor_values(tmath.irreps_to_tensor(irreps), config.objective)
            state.embeddings = embeddings
        posterior, scale, coords = _posterior(
            state, labelled, truth_log, logged, config, pick_log, pool.geometry
        )
        rest = ~labelled
        pickable = rest.copy()
        known = np.zeros(0, dtype=np.int64)
        if config.carry_siblings and labelled.any():
            idx = np.flatnonzero(labelled).tolist()
            tensors = [pool.entries[i].dielectric_tensor for i in idx]
            posterior, known = with_siblings(
                posterior, pool.sibling_table(), idx, tensors, config.objective
            )
            pickable[known] = False  # the laminate law gives them: no DFT spent on them
        point = logged.inverse(posterior.mean)
        mae = float(np.abs(point[rest] - pool.truth[rest]).mean())
        subset_mae = {
            name: float(np.abs(point - pool.truth)[rest & inside].mean())
            for name, inside in subsets.items()
            if (rest & inside).any()
        }
        if final:
            final_mae, final_subset_mae = mae, subset_mae
            break
        if config.learner == "finetune" and (scale is None or not config.recalibrate):
            values = state.values  # the ensemble's members, as before
        else:
            values = posterior_values(posterior, (config.seed, index, 7))
        guard: DiversityGuard = DiversityGuard(pool.groups, config.max_per_group)
        if config.diversity == "embedding" and coords is not None:
            guard = EmbeddingDiversity.from_pool(
                coords, config.diversity_quantile, pool.groups, config.max_per_group
            )
        picks = strategy.select(values, pickable, config.batch_size, rng, guard)
        if not picks:
            break
        chosen = np.asarray(picks)
        pick_log.append((chosen, posterior.mean[chosen], posterior.sigma[chosen] / (scale or 1.0)))
        labelled[picks] = True
        hits = sum(1 for i in picks if i in hits_set)
        cumulative += hits
        record = {
            "round": index,
            "model": f"{model.name} {model.version}",
            "picked": [pool.entries[i].material_id for i in picks],
            "hits": hits,
            "cumulative_hits": cumulative,
            "best": float(pool.truth[labelled].max()),
            "batch_mean": float(pool.truth[picks].mean()),
            "mae_unlabelled": mae,
            "mae_unlabelled_subsets": subset_mae,
            "coverage_2sigma": coverage(
                truth_log[chosen], posterior.mean[chosen], posterior.sigma[chosen]
            ),
            "sigma_scale": scale,
            "carried": [pool.entries[i].material_id for i in known],
        }
        last = index == config.rounds - 1
        learn = (not last or evaluate_final) and config.learner == "finetune"
        if learn and config.finetune is not None and (strategy.uses_model or evaluate_final):
            model = _finetuned(model, pool, labelled, config, index, shared, work_dir, state)
        record["seconds"] = round(time.perf_counter() - round_start, 1)
        rounds.append(record)
        say(
            f"round {index}: {hits} hits ({cumulative} total), best {record['best']:.3f}, "
            f"MAE on unlabelled {mae:.3f}, coverage {record['coverage_2sigma']:.2f}, "
            f"{record['seconds']} s"
        )
    return {
        "strategy": config.strategy,
        "objective": config.objective,
        "seed": config.seed,
        "top_k": top_k,
        "pool_size": n,
        "dropped": pool.dropped,
        "config": {**asdict(config), "finetune": config.finetune and asdict(config.finetune)},
        "rounds": rounds,
        "total_hits": cumulative,
        "best": max((r["best"] for r in rounds), default=None),
        "best_possible": float(pool.truth.max()),
        "final_mae_unlabelled": final_mae,
        "final_mae_unlabelled_subsets": final_subset_mae,
        "seconds": round(time.perf_counter() - started, 1),
    }


@dataclass
class _LearnerState:
    """The current model's member values and member embeddings on the pool."""

    values: np.ndarray | None
    embeddings: np.ndarray | None
    train_entries: list[Any] | None = None


def _posterior(
    state: _LearnerState,
    labelled: np.ndarray,
    truth_log: np.ndarray,
    logged: LogSpace,
    config: SimulationConfig,
    pick_log: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    geometry: np.ndarray | None = None,
) -> tuple[Posterior, float | None, np.ndarray | None]:
    """The log-objective posterior of the pool, the sigma scale applied, and the coordinates.

    ``finetune``: the ensemble's mean and spread (of the log values); from the second round
    on the spread is scaled so that the RMS z-score of every pick made so far, under the
    prediction it was picked with, is one. ``gp``: the ensemble mean plus the residual GP's
    posterior on the labels so far, sigma scaled by the labels' leave-one-out z-scores
    (:func:`~anisoscreen.campaign.learner.residual_posterior`, as a real campaign).
    """
    assert state.values is not None
    values = np.atleast_2d(state.values)
    base = logged.forward(values.mean(axis=0))
    members = logged.forward(values)
    spread = members.std(axis=0, ddof=1) if len(members) > 1 else np.full(len(base), 0.1)
    spread = np.maximum(spread, 1e-3)
    coords = None
    if state.embeddings is not None:
        extra = geometry if config.gp_geometry else None
        coords = pool_coordinates(state.embeddings.mean(axis=0), base, extra)
    if config.learner == "finetune" or not labelled.any() or coords is None:
        scale = None
        if pick_log and (config.recalibrate or config.learner == "gp"):
            picks = np.concatenate([p for p, _, _ in pick_log])
            mean = np.concatenate([m for _, m, _ in pick_log])
            sigma = np.concatenate([s for _, _, s in pick_log])
            scale = loo_scale(truth_log[picks], mean, sigma, bounds=(0.25, 10.0))
        return Posterior(base, spread * (scale or 1.0)), scale, coords
    idx = np.flatnonzero(labelled)
    posterior, scale = residual_posterior(base, coords, idx, truth_log[idx], config.gp_offset)
    return posterior, scale, coords


def _finetuned(
    model: LoadedModel,
    pool: PreparedPool,
    labelled: np.ndarray,
    config: SimulationConfig,
    index: int,
    shared: Path,
    work_dir: Path,
    state: _LearnerState,
) -> LoadedModel:
    """The model fine-tuned on every label revealed so far (plus replay); resets ``state``."""
    assert config.finetune is not None
    tune = FinetuneConfig(**{**asdict(config.finetune), "seed": config.seed * 100 + index})
    if state.train_entries is None:
        state.train_entries = training_entries(model.metadata, shared)
    replay = replay_sample(
        state.train_entries, tune.replay, tune.seed, {e.material_id for e in pool.entries}
    )
    labels = [
        LabelledEntry(
            DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor),
            {"source": "oracle"},
        )
        for e in (pool.entries[i] for i in np.flatnonzero(labelled))
    ]
    name = f"sim-{config.strategy}-s{config.seed}-r{index + 1}"
    path = finetune_model(model, labels, replay, tune, work_dir / name, name, f"r{index + 1}")
    state.values = None
    state.embeddings = None
    return load_model(path)
