"""Learning from DFT: labelled entries from ValidationDocs, and warm-start fine-tuning.

Every member of an ensemble is fine-tuned (a few epochs, small learning rate) on the new
labels plus a replay sample of the model's own training set, so that it learns the new data
without forgetting the old. The result is saved as a new model version whose metadata and
model card list the labels it saw (material id, job uuid, inputs) and the replay it used.
Training from scratch stays possible (``warm_start=False``).

The members train side by side on CPU threads (as many as torch's thread count), each with
one intra-op thread (:func:`_train_members`): a member's small kernels split over two
intra-op threads spent most of their time joining them, and on a loaded machine, where the
second thread waits for a core, one epoch of one member took 56 CPU s instead of 1.5 s. A
member's numbers do not depend on the thread or the number of workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.model.checkpoint import MODEL_FILENAME, LoadedModel, save_model
from anisoscreen.model.nn.graph import CrystalGraph, collate
from anisoscreen.model.nn.network import AnisoNet
from anisoscreen.model.runtime import tune_allocator
from anisoscreen.model.training.dataset import (
    DielectricEntry,
    clean_entries,
    load_entries,
    random_split,
)
from anisoscreen.model.training.train import TrainConfig, prepare_graphs, training_loss
from anisoscreen.schemas import ValidationDoc

__all__ = [
    "FinetuneConfig",
    "LabelledEntry",
    "finetune_model",
    "labels_from_validations",
    "replay_sample",
    "training_entries",
]


@dataclass
class LabelledEntry:
    """A training example learnt during a campaign, with where its label came from.

    Parameters
    ----------
    entry
        Structure and DFT eps_inf.
    provenance
        ``source`` (``"validation"`` or ``"oracle"``) and, for validations, the job and flow
        uuids, the calculation type and the input settings actually run.
    """

    entry: DielectricEntry
    provenance: dict[str, Any] = field(default_factory=dict)

    def card_row(self) -> dict[str, Any]:
        """What the model card records about this label."""
        return {"material_id": self.entry.material_id, **self.provenance}


def labels_from_validations(
    validations: Sequence[ValidationDoc], structures: dict[str, Structure]
) -> list[LabelledEntry]:
    """Valid DFPT ValidationDocs -> labelled entries (invalid or structure-less ones skipped).

    Parameters
    ----------
    validations
        Validation records; only completed, unflagged DFPT ones with eps_inf are used.
    structures
        The validated structure of each material id (from the candidates).
    """
    labels = []
    for doc in validations:
        if not doc.is_valid or doc.calc_type != "dfpt" or doc.epsilon_electronic is None:
            continue
        structure = structures.get(doc.material_id)
        if structure is None:
            continue
        entry = DielectricEntry(
            material_id=doc.material_id,
            formula=doc.formula_pretty or structure.composition.reduced_formula,
            structure=structure,
            eps_electronic=np.asarray(doc.epsilon_electronic, dtype=float),
        )
        provenance = {
            "source": "validation",
            "job_uuid": doc.job_uuid,
            "flow_uuid": doc.flow_uuid,
            "calc_type": doc.calc_type,
            "input_settings": doc.input_settings,
        }
        labels.append(LabelledEntry(entry, provenance))
    return labels


_TRAINING_SPLITS: dict[tuple[Any, ...], list[DielectricEntry]] = {}
"""The last :func:`training_entries` result, by data file (path, size, mtime) and split."""


def training_entries(metadata: dict[str, Any], shared: Path) -> list[DielectricEntry]:
    """The training split a model was trained on (data file, cleaning, split from metadata).

    Empty when the data file is not in ``shared/data`` or the metadata does not say. Read
    once per process and data file: every round of a campaign (and every fine-tuned version,
    whose metadata names the same file and split) replays from the same split.
    """
    path = Path(shared) / "data" / str(metadata.get("data_file", ""))
    if not path.is_file() or "split_seed" not in metadata:
        return []
    stat = path.stat()
    key = (
        str(path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        metadata.get("n_entries"),
        metadata["split_seed"],
    )
    if key not in _TRAINING_SPLITS:
        entries, _ = clean_entries(load_entries(path))
        entries = entries[: metadata.get("n_entries") or len(entries)]
        split = random_split(len(entries), metadata["split_seed"])["train"]
        _TRAINING_SPLITS.clear()  # one data set at a time
        _TRAINING_SPLITS[key] = [entries[i] for i in split]
    return list(_TRAINING_SPLITS[key])


def replay_sample(
    entries: Sequence[DielectricEntry], size: int, seed: int, exclude: set[str] | None = None
) -> list[DielectricEntry]:
    """A seeded sample of ``size`` entries, none of whose ids is in ``exclude``."""
    exclude = exclude or set()
    pool = [e for e in entries if e.material_id not in exclude]
    order = np.random.default_rng(seed).permutation(len(pool))[: max(size, 0)]
    return [pool[i] for i in sorted(order)]


@dataclass
class FinetuneConfig:
    """Fine-tuning settings.

    Parameters
    ----------
    epochs
        Passes over new labels plus replay, per member.
    replay
        Old training entries replayed alongside the new labels (0: labels only).
    lr
        AdamW learning rate (a fraction of the training rate: the weights start trained).
    weight_decay
        AdamW weight decay.
    batch_size
        Structures per optimisation step.
    seed
        Seeds the replay sample and batch order.
    warm_start
        Start from the current weights (``False``: re-initialise every member and train
        from scratch on the same data, for ``epochs`` epochs).
    label_repeats
        Times each new label is seen per epoch (weights the few new labels up against the
        replay; 1 = once).
    readout_only
        Train only the read-out (the output convolution); the embedding layers stay frozen.
    """

    epochs: int = 3
    replay: int = 200
    lr: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 12
    seed: int = 0
    warm_start: bool = True
    label_repeats: int = 1
    readout_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _train_member(
    network: AnisoNet,
    graphs: list[CrystalGraph],
    targets: np.ndarray,
    config: FinetuneConfig,
    loss_config: TrainConfig,
    member: int,
) -> list[float]:
    """Fine-tune one network in place; returns the mean loss of each epoch."""
    if config.readout_only:
        for name, parameter in network.named_parameters():
            parameter.requires_grad_(name.startswith("output."))
    optimizer = torch.optim.AdamW(
        [p for p in network.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    history = []
    network.train()
    for epoch in range(config.epochs):
        order = np.random.default_rng([config.seed, member, epoch]).permutation(len(graphs))
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch = collate([graphs[i] for i in idx])
            target = torch.as_tensor(targets[idx], dtype=torch.float32)
            loss = training_loss(network(batch), target, loss_config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(idx)
        history.append(running / max(len(order), 1))
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    return history


def _train_members(
    networks: list[AnisoNet],
    graphs: list[CrystalGraph],
    targets: np.ndarray,
    config: FinetuneConfig,
    loss_config: TrainConfig,
    progress: Callable[[str], None] | None = None,
) -> list[list[float]]:
    """Fine-tune every network in place, side by side; returns each one's epoch losses.

    ``min(members, torch.get_num_threads())`` worker threads, each member on one intra-op
    thread, so the result is the same for any number of cores; the caller's thread setting
    is restored.
    """
    workers = max(1, min(len(networks), torch.get_num_threads()))

    def train(member: int) -> list[float]:
        torch.set_num_threads(1)  # per thread (the caller's is restored below)
        history = _train_member(networks[member], graphs, targets, config, loss_config, member)
        if progress is not None:
            progress(f"member {member}: loss {history[0]:.4f} -> {history[-1]:.4f}")
        return history

    threads = torch.get_num_threads()
    try:
        if workers == 1:
            return [train(member) for member in range(len(networks))]
        with ThreadPoolExecutor(workers, thread_name_prefix="anisoscreen-finetune") as pool:
            return list(pool.map(train, range(len(networks))))
    finally:
        torch.set_num_threads(threads)


def finetune_model(
    model: LoadedModel,
    labels: Sequence[LabelledEntry],
    replay: Sequence[DielectricEntry],
    config: FinetuneConfig,
    output_dir: str | Path,
    name: str,
    version: str,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fine-tune every member of ``model`` and save the result as model ``name``.

    Parameters
    ----------
    model
        The current model version (left unchanged).
    labels
        New DFT labels (all of them are seen in every epoch).
    replay
        Entries of the old training set replayed alongside.
    config
        Fine-tuning settings.
    output_dir
        Folder receiving ``model.pt`` and ``MODEL_CARD.md``.
    name, version
        Name and version of the new model.
    progress
        Called with one line per finished member.

    Returns
    -------
    Path
        The new ``model.pt``.
    """
    if not labels:
        raise ValueError("fine-tuning needs at least one new label")
    tune_allocator()
    started = time.perf_counter()
    repeats = max(int(config.label_repeats), 1)
    entries = [label.entry for label in labels] * repeats + list(replay)
    graphs = prepare_graphs(entries, model.config.cutoff, model.config.atom_features)
    targets = np.stack([e.irreps for e in entries])
    loss_config = TrainConfig(**model.metadata.get("train_config", {}))
    elements = sorted(
        set(model.config.elements) | {int(z) for g in graphs for z in g.atomic_numbers}
    )
    new_config = replace(model.config, elements=elements)
    networks = []
    for member, original in enumerate(model.networks):
        torch.manual_seed(config.seed * 1000 + member)  # initialised here, in member order
        network = AnisoNet(new_config)
        if config.warm_start:
            network.load_state_dict(original.state_dict())
        networks.append(network)
    histories = _train_members(networks, graphs, targets, config, loss_config, progress)
    states = [network.state_dict() for network in networks]
    parent = model.metadata.get("finetune", {})
    seen = [*parent.get("labels", []), *(label.card_row() for label in labels)]
    # a label seen again in a later round is listed once, with its latest provenance
    unique = list({row["material_id"]: row for row in seen}.values())
    metadata = {
        **model.metadata,
        "finetune": {
            "parent": {"name": model.name, "version": model.version, "checksum": model.checksum},
            "base": parent.get("base") or {"name": model.name, "version": model.version},
            "labels": unique,
            "replay_material_ids": sorted(e.material_id for e in replay),
            "config": config.to_dict(),
            "loss_history": histories,
            "seconds": round(time.perf_counter() - started, 1),
            "finetuned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    output_dir = Path(output_dir)
    path = save_model(output_dir / MODEL_FILENAME, new_config, states, name, version, metadata)
    _write_card(output_dir / "MODEL_CARD.md", name, version, metadata)
    return path


def _write_card(path: Path, name: str, version: str, metadata: dict[str, Any]) -> None:
    tune = metadata["finetune"]
    rows = "\n".join(
        f"| {row['material_id']} | {row.get('source', '')} | {row.get('job_uuid') or ''} |"
        for row in tune["labels"]
    )
    text = f"""# {name} {version}

Fine-tuned (warm start: {tune["config"]["warm_start"]}) from {tune["parent"]["name"]}
{tune["parent"]["version"]} (sha256 `{tune["parent"]["checksum"][:16]}...`); base model
{tune["base"]["name"]} {tune["base"]["version"]}, trained on `{metadata.get("data_file")}`
(split seed {metadata.get("split_seed")}).

## Data seen in fine-tuning
- {len(tune["labels"])} DFT labels (below), every epoch;
- {len(tune["replay_material_ids"])} replayed entries of the base training split;
- settings: `{json.dumps(tune["config"])}`; {tune["seconds"]} s.

| material_id | source | job uuid |
| --- | --- | --- |
{rows}
"""
    path.write_text(text)
