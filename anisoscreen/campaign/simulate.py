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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.campaign.acquisition import DiversityGuard, group_labels, make_strategy
from anisoscreen.campaign.finetune import (
    FinetuneConfig,
    LabelledEntry,
    finetune_model,
    replay_sample,
    training_entries,
)
from anisoscreen.campaign.oracle import oracle_tensor, read_oracle_records
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import LoadedModel, load_model
from anisoscreen.model.runtime import tune_allocator
from anisoscreen.model.training.dataset import (
    DielectricEntry,
    clean_entries,
    load_entries,
    random_split,
)
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.train import prepare_graphs
from anisoscreen.screening.objectives import needs_ionic, tensor_values
from anisoscreen.settings import DEFAULT_MODEL

__all__ = [
    "OracleEntry",
    "SimulationConfig",
    "build_oracle",
    "load_oracle",
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


@dataclass
class _Pool:
    entries: list[OracleEntry]
    graphs: list[Any]
    truth: np.ndarray
    groups: list[str] | None
    dropped: list[str]


def _pool(oracle: Sequence[OracleEntry], model: LoadedModel, config: SimulationConfig) -> _Pool:
    known = set(model.config.elements)
    kept, dropped = [], []
    for entry in oracle:
        if not entry.structure.is_ordered or (
            known and any(el.Z not in known for el in entry.structure.composition.elements)
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
    return _Pool(kept, graphs, truth, groups, dropped)


def simulate(
    oracle: Sequence[OracleEntry],
    config: SimulationConfig,
    shared: Path,
    data_dir: Path | None = None,
    work_dir: Path | None = None,
    pool_predictions: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one simulated campaign and return its report (JSON-ready).

    Parameters
    ----------
    oracle
        The labelled pool.
    config
        Strategy, rounds, batch size, objective, model and fine-tuning.
    shared
        Shared data folder (the replay sample is read from the model's training data there).
    data_dir
        Where named models are looked up.
    work_dir
        Where fine-tuned versions are written (a temporary folder, deleted, when ``None``).
    pool_predictions
        Member values of the starting model on the pool (reused across runs to save time).
    progress
        Called with one line per event.
    """
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="anisoscreen-sim-") as tmp:
            return simulate(oracle, config, shared, data_dir, Path(tmp), pool_predictions, progress)
    tune_allocator()
    say = progress or (lambda line: None)
    started = time.perf_counter()
    if needs_ionic(config.objective):
        raise AnisoscreenError(
            f"objective {config.objective!r} needs the ionic tensor; an oracle holds eps_inf only"
        )
    strategy = make_strategy(config.strategy, config.kappa)
    rng = np.random.default_rng(config.seed)
    model = load_model(config.model, data_dir)
    say(f"building the graphs of {len(oracle)} oracle structures")
    pool = _pool(oracle, model, config)
    n = len(pool.entries)
    top_k = min(config.top_k, n)
    hits_set = set(np.argsort(-pool.truth, kind="stable")[:top_k].tolist())
    guard = DiversityGuard(pool.groups, config.max_per_group)
    labelled = np.zeros(n, dtype=bool)
    train_entries: list[Any] | None = None
    rounds: list[dict[str, Any]] = []
    values = pool_predictions
    cumulative = 0
    for index in range(config.rounds):
        round_start = time.perf_counter()
        if values is None:
            say(f"round {index}: predicting {n} structures with {len(model.networks)} member(s)")
            irreps = predict_irreps(model.networks, pool.graphs)
            values = tensor_values(tmath.irreps_to_tensor(irreps), config.objective)
        rest = ~labelled
        mae = float(np.abs(values.mean(axis=0)[rest] - pool.truth[rest]).mean())
        picks = strategy.select(values, rest, config.batch_size, rng, guard)
        if not picks:
            break
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
        }
        last = index == config.rounds - 1
        if not last and config.finetune is not None and strategy.uses_model:
            if train_entries is None:
                train_entries = training_entries(model.metadata, shared)
            tune = FinetuneConfig(**{**asdict(config.finetune), "seed": config.seed * 100 + index})
            replay = replay_sample(
                train_entries, tune.replay, tune.seed, {e.material_id for e in pool.entries}
            )
            labels = [
                LabelledEntry(
                    DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor),
                    {"source": "oracle"},
                )
                for e in (pool.entries[i] for i in np.flatnonzero(labelled))
            ]
            name = f"sim-{config.strategy}-s{config.seed}-r{index + 1}"
            path = finetune_model(
                model, labels, replay, tune, work_dir / name, name, f"r{index + 1}"
            )
            model = load_model(path)
            values = None
        record["seconds"] = round(time.perf_counter() - round_start, 1)
        rounds.append(record)
        say(
            f"round {index}: {hits} hits ({cumulative} total), best {record['best']:.3f}, "
            f"MAE on unlabelled {mae:.3f}, {record['seconds']} s"
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
        "seconds": round(time.perf_counter() - started, 1),
    }
