"""Training: AdamW on the MSE of the ``0e+2e`` irreps, exponential LR decay, early stopping.

Every epoch writes a resumable checkpoint (model, optimiser, scheduler, history, best weights,
and the weight average with ``ema_decay``) atomically, so training can be split into chunks
(``time_limit``) and resumed with the same result as an uninterrupted run: the batch order of
epoch ``k`` depends only on ``(seed, k)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.model.checkpoint import atomic_torch_save
from anisoscreen.model.feature_sets import with_feature_channels
from anisoscreen.model.nn.graph import CrystalGraph, collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig
from anisoscreen.model.runtime import resolve_device, tune_allocator
from anisoscreen.model.training.dataset import DielectricEntry
from anisoscreen.tensor import irreps_to_tensor_torch

__all__ = [
    "TrainConfig",
    "TrainState",
    "born_loss",
    "born_targets",
    "fit",
    "prepare_graphs",
    "resolve_device",
    "target_stats",
    "training_loss",
]


@dataclass
class TrainConfig:
    """Optimisation settings.

    Parameters
    ----------
    lr
        AdamW learning rate (paper grid: 0.002-0.005).
    weight_decay
        AdamW weight decay.
    lr_decay
        Exponential learning-rate factor per epoch (paper: 0.98).
    batch_size
        Structures per optimisation step.
    max_epochs
        Upper bound on epochs.
    patience
        Stop after this many epochs without a better validation loss.
    seed
        Seeds weight initialisation and batch order.
    time_limit
        Stop (resumably) after this many seconds; ``None`` for no limit.
    loss
        ``"mse"``: mean squared error of the ``0e+2e`` irreps (v1). ``"mse_log_eig"``: that
        plus ``log_eig_weight`` times the mean squared error of the logarithms of the sorted
        eigenvalues, which weighs the in-plane/out-of-plane contrast that a_r ranks.
        ``"huber_log1p_eig"`` (for the heavy-tailed ionic and total tensors): the Huber loss
        (``huber_delta``) of the irreps, linear beyond ``delta`` so a few soft-mode tensors in
        the hundreds do not dominate, plus ``log_eig_weight`` times the mean squared error of
        ``log(1 + lambda)`` of the sorted eigenvalues (relative errors; ``1 +`` keeps the many
        near-zero ionic eigenvalues finite).
    log_eig_weight
        Weight of the log-eigenvalue term.
    huber_delta
        Where the Huber loss turns from quadratic to linear.
    gap_dropout
        Probability that a training structure's band gap is hidden in a step, so that a
        ``gap_input`` model also learns to predict without it (0 = never).
    exfoliation_deltas
        Gap openings (angstrom) of the exfoliation augmentation
        (:mod:`anisoscreen.model.training.exfoliated`; empty = off).
    exfoliated_per_epoch
        Exfoliated copies of each layered training entry drawn per epoch.
    born_weight
        Weight of the auxiliary Born-charge loss (:func:`born_loss`; 0 = off). Needs a model
        with the Born head and Born charges for (some of) the training structures; entries
        without them contribute nothing. Model selection (best epoch, early stopping) uses
        the loss that ``selection`` names.
    selection
        The validation loss that picks the best epoch and stops early: ``"target"`` (the
        tensor loss) or ``"born"`` (the Born-charge loss; needs ``born_weight > 0``), for a
        network trained for its Born charges (the tensor then only regularises the trunk).
    anneal_from
        The epoch that starts an annealing phase (``None``: none): training goes on from the
        best weights so far, the learning rate decays by ``anneal_decay`` per epoch, and the
        best epoch is chosen again among the annealing epochs only. A checkpoint trained
        ``anneal_from`` epochs without it resumes into the phase.
    anneal_decay
        Learning-rate factor per annealing epoch.
    ema_decay
        With a value (``None``: off), an exponential moving average of the weights, updated
        after every optimiser step with this decay, is what is validated, selected and
        saved as the best weights (as MACE and NequIP train); the optimiser steps the raw
        weights. The average sits in the checkpoint, so a resumed run keeps it.
    init_from
        A model (name or folder) whose weights start each member: member ``seed mod n``
        of its ``n``. Its configuration must be this one's, up to the hybrid's
        ``physics_prior``, whose extra weights keep their initialisation (a hybrid
        fine-tuned from the direct model it extends). A resumed member ignores it.
    physics_priors
        For a hybrid ionic model (``ModelConfig.physics_prior``): an ``.npz`` of physics
        eps0 tensors keyed by :func:`anisoscreen.schemas.structure_id`
        (:func:`attach_physics_priors`); evaluation reads the same file.
    """

    lr: float = 0.003
    weight_decay: float = 0.01
    lr_decay: float = 0.98
    batch_size: int = 12
    max_epochs: int = 300
    patience: int = 40
    seed: int = 0
    time_limit: float | None = None
    loss: Literal["mse", "mse_log_eig", "huber_log1p_eig"] = "mse"
    log_eig_weight: float = 10.0
    huber_delta: float = 1.0
    born_weight: float = 0.0
    selection: Literal["target", "born"] = "target"
    gap_dropout: float = 0.0
    exfoliation_deltas: tuple[float, ...] = ()
    exfoliated_per_epoch: int = 2
    anneal_from: int | None = None
    anneal_decay: float = 0.75
    ema_decay: float | None = None
    init_from: str | None = None
    physics_priors: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def with_overrides(cls, **values: Any) -> TrainConfig:
        """The defaults above with the given values (``None``: keep the default)."""
        return cls(**{k: v for k, v in values.items() if v is not None})


@dataclass
class TrainState:
    """What a training run has reached (also the content of its checkpoint)."""

    epoch: int = 0
    best_epoch: int = -1
    best_val_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    finished: bool = False
    train_seconds: float = 0.0


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "state", "best_weights")
"""What a training checkpoint holds (besides the configs)."""


def load_training_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``: tensors and plain data only.

    A file in the output folder is never unpickled as arbitrary Python objects, so a
    checkpoint planted or replaced by someone else cannot run code.

    Raises
    ------
    AnisoscreenError
        The file is not a training checkpoint written by anisoscreen.
    """
    from anisoscreen.errors import AnisoscreenError

    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError for foreign objects, others for garbage
        reason = " ".join(str(exc).split())[:160]
        raise AnisoscreenError(
            f"refusing to resume from {path}: not a training checkpoint of plain tensors and "
            f"data ({type(exc).__name__}: {reason}); move it away or use another --output-dir"
        ) from exc
    if not isinstance(saved, dict) or not all(key in saved for key in CHECKPOINT_KEYS):
        raise AnisoscreenError(
            f"refusing to resume from {path}: it lacks the keys of a training checkpoint "
            f"({', '.join(CHECKPOINT_KEYS)}); move it away or use another --output-dir"
        )
    return saved


def prepare_graphs(
    entries: Sequence[DielectricEntry],
    cutoff: float,
    atom_features: str | None = None,
    feature_cache: str | Path | None = None,
) -> list[CrystalGraph]:
    """Graphs of the training structures (isolated atoms allowed: they keep self-connection).

    Each graph carries its entry's band gap (``nan`` where unknown). With ``atom_features``,
    each graph also gets that pretrained feature set, computed once and kept in
    ``feature_cache`` (an ``.npz`` keyed by structure hash).
    """
    graphs = [
        structure_to_graph(e.structure, cutoff, allow_isolated=True, band_gap=e.band_gap)
        for e in entries
    ]
    if atom_features:
        attach_atom_features(graphs, [e.structure for e in entries], atom_features, feature_cache)
    return graphs


def attach_physics_priors(
    graphs: Sequence[CrystalGraph], structures: Sequence[Structure], priors: str | Path
) -> int:
    """Give each graph its structure's physics eps0 from ``priors``; returns how many had one.

    ``priors`` is an ``.npz`` of (3, 3) tensors keyed by
    :func:`anisoscreen.schemas.structure_id` (``studies/ionic_physics_study.py priors``
    writes one); a structure not in it keeps the ``nan`` prior (none).
    """
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.schemas import structure_id

    path = Path(priors)
    if not path.is_file():
        raise AnisoscreenError(f"physics priors {path} not found")
    with np.load(path, allow_pickle=False) as stored:
        found = 0
        for graph, structure in zip(graphs, structures, strict=True):
            key = structure_id(structure)
            if key in stored.files:
                graph.physics_prior = np.asarray(stored[key], dtype=float).reshape(3, 3)
                found += 1
    return found


def attach_atom_features(
    graphs: Sequence[CrystalGraph],
    structures: Sequence[Structure],
    atom_features: str,
    feature_cache: str | Path | None = None,
) -> None:
    """Give each graph the pretrained feature set ``atom_features`` of its structure.

    The features are read from or added to ``feature_cache`` (an ``.npz`` keyed by
    :func:`anisoscreen.schemas.structure_id`), so a data set is featurised once.
    """
    from anisoscreen.model.atom_features import cached_features
    from anisoscreen.schemas import structure_id

    keys = [structure_id(s) for s in structures]
    values = cached_features(structures, keys, atom_features, feature_cache)
    for graph, features in zip(graphs, values, strict=True):
        graph.atom_features = features


class TargetStats(TypedDict):
    """The :class:`ModelConfig` fields that :func:`target_stats` sets from the data."""

    target_shift: float
    target_scale: float
    avg_num_neighbors: float
    volume_per_atom: float


def target_stats(
    targets: np.ndarray,
    graphs: Sequence[CrystalGraph],
    readout: str = "mean",
    target: str = "electronic",
    outer_channels: int = 4,
) -> TargetStats:
    """Output shift/scale for ``readout``, the reference volume and the mean neighbour count.

    For ``mean`` the shift and scale standardise the ``0e+2e`` targets themselves. The
    volume-aware read-outs standardise what each atom contributes: ``(eps - I) / rho`` with
    ``rho = N v0 / V`` (``sum_volume``; no ``I`` for the ionic target), or the matrix
    logarithm of it (``psd_sum_volume``, whose atoms contribute ``exp(M_i)``). For
    ``psd_square_volume`` / ``psd_outer_volume`` the scale is the mean per-atom eps_poly over
    ``outer_channels``, so ``k`` unit-sized matrices or vectors per atom start near the data.
    """
    volume_per_atom = float(np.mean([g.volume / g.num_nodes for g in graphs]))
    values = np.array(targets, dtype=float)
    if readout != "mean":
        density = np.array([g.num_nodes * volume_per_atom / g.volume for g in graphs])
        identity = tmath.tensor_to_irreps(np.eye(3)) * float(target != "ionic")
        values = values - identity
        if readout == "psd_laminate_volume":
            # undo the vacuum mixing: chi = (I - Y D)^-1 Y for Y = eps - I
            mixed = tmath.irreps_to_tensor(values)
            depolarisation = np.stack([g.depolarisation for g in graphs])
            chi = np.linalg.solve(np.eye(3) - mixed @ depolarisation, mixed)
            values = tmath.tensor_to_irreps(0.5 * (chi + np.swapaxes(chi, 1, 2)))
        values = values / density[:, None]
        if readout in ("psd_outer_volume", "psd_square_volume"):
            per_atom_poly = np.trace(tmath.irreps_to_tensor(values), axis1=1, axis2=2) / 3.0
            return TargetStats(
                target_shift=0.0,
                target_scale=max(float(per_atom_poly.mean()) / outer_channels, 1e-6),
                avg_num_neighbors=float(np.mean([g.num_edges / g.num_nodes for g in graphs])),
                volume_per_atom=volume_per_atom,
            )
        if readout in ("psd_sum_volume", "psd_laminate_volume"):
            # log of the per-atom susceptibility, eigenvalues floored away from zero
            lam, vec = np.linalg.eigh(tmath.irreps_to_tensor(values))
            log_tensor = np.einsum("nij,nj,nkj->nik", vec, np.log(np.clip(lam, 1e-2, None)), vec)
            values = tmath.tensor_to_irreps(log_tensor)
    shift = float(values[:, 0].mean())
    centred = values.copy()
    centred[:, 0] -= shift
    return TargetStats(
        target_shift=shift,
        target_scale=float(np.sqrt(np.mean(centred**2))),
        avg_num_neighbors=float(np.mean([g.num_edges / g.num_nodes for g in graphs])),
        volume_per_atom=volume_per_atom,
    )


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def training_loss(
    predicted: torch.Tensor, target: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The loss of ``config`` between predicted and target ``0e+2e`` irreps, (B, 6) each."""
    loss = torch.nn.functional.mse_loss(predicted, target)
    if config.loss == "mse_log_eig":
        floor = 1e-3
        lam_pred = torch.linalg.eigvalsh(irreps_to_tensor_torch(predicted)).clamp(min=floor)
        lam_true = torch.linalg.eigvalsh(irreps_to_tensor_torch(target)).clamp(min=floor)
        log_error = torch.nn.functional.mse_loss(lam_pred.log(), lam_true.log())
        loss = loss + config.log_eig_weight * log_error
    elif config.loss == "huber_log1p_eig":
        loss = torch.nn.functional.huber_loss(predicted, target, delta=config.huber_delta)
        # eigenvalues of a non-PSD head may dip below zero: keep log1p finite there
        lam_pred = torch.linalg.eigvalsh(irreps_to_tensor_torch(predicted)).clamp(min=-0.9)
        lam_true = torch.linalg.eigvalsh(irreps_to_tensor_torch(target)).clamp(min=-0.9)
        log_error = torch.nn.functional.mse_loss(lam_pred.log1p(), lam_true.log1p())
        loss = loss + config.log_eig_weight * log_error
    return loss


BORN_HUBER_DELTA = 1.0
"""Where the Born loss (in units of the training set's RMS Born component) turns linear."""


def born_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Huber loss of the Born-charge components of the atoms in ``mask``.

    The nine components of ``(Z*_pred - Z*_DFPT) / scale`` (``scale``: the training set's
    RMS Born component, so the loss is dimensionless and of order one at the start) enter a
    Huber loss with ``delta = 1`` (quadratic for errors below one RMS charge, linear beyond,
    so the few entries with very large or ASR-violating DFPT charges do not dominate), averaged
    over the masked atoms. Atoms outside ``mask`` contribute no loss and no gradient; with no
    masked atom the loss is an exact zero that still belongs to the graph.

    Parameters
    ----------
    predicted, target
        (N, 3, 3) Born charges of the batch's atoms (``target`` arbitrary where unmasked).
    mask
        (N,) bool, the atoms whose structure has DFPT Born charges.
    scale
        Normalisation of the components.
    """
    if not bool(mask.any()):
        return predicted.sum() * 0.0
    error = (predicted[mask] - target[mask]) / scale
    return torch.nn.functional.huber_loss(error, torch.zeros_like(error), delta=BORN_HUBER_DELTA)


def born_targets(
    born: Sequence[np.ndarray | None], sizes: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom Born targets (N, 3, 3) and their mask (N,) for a batch of structures.

    ``born[k]`` holds the (n_k, 3, 3) charges of the ``k``-th structure or ``None``; its atoms
    get zeros and ``False`` in the mask.
    """
    blocks, flags = [], []
    for charges, size in zip(born, sizes, strict=True):
        present = charges is not None and len(charges) == size
        blocks.append(np.asarray(charges) if present else np.zeros((size, 3, 3)))
        flags.append(np.full(size, present))
    target = torch.as_tensor(np.concatenate(blocks), dtype=torch.float32, device=device)
    return target, torch.as_tensor(np.concatenate(flags), device=device)


@torch.no_grad()
def _born_loss(
    model: AnisoNet,
    graphs: Sequence[CrystalGraph],
    born: Sequence[np.ndarray | None],
    device: torch.device,
    batch_size: int = 64,
) -> float:
    """Mean Born loss per atom with Born charges over a data set (``nan`` if none has them)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(graphs), batch_size):
        chunk = graphs[start : start + batch_size]
        _, predicted = model.forward_with_born(collate(chunk).to(device))
        target, mask = born_targets(
            born[start : start + batch_size], [g.num_nodes for g in chunk], device
        )
        atoms = int(mask.sum())
        if atoms:
            total += float(born_loss(predicted, target, mask, model.config.born_scale)) * atoms
            count += atoms
    return total / count if count else math.nan


@torch.no_grad()
def _loss(
    model: AnisoNet,
    graphs: Sequence[CrystalGraph],
    targets: np.ndarray,
    device: torch.device,
    config: TrainConfig,
    batch_size: int = 64,
) -> float:
    """Mean training loss over a data set (batch-size weighted)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size]).to(device)
        pred = model(batch)
        target = torch.as_tensor(
            targets[start : start + batch_size], dtype=pred.dtype, device=device
        )
        total += float(training_loss(pred, target, config)) * len(target)
        count += len(target)
    return total / max(count, 1)


def _epoch_examples(
    graphs: list[CrystalGraph],
    targets: np.ndarray,
    augment: Sequence[tuple[list[CrystalGraph], np.ndarray]],
    config: TrainConfig,
    epoch: int,
) -> tuple[list[CrystalGraph], np.ndarray]:
    """The training examples of one epoch: all of ``graphs`` plus draws from ``augment``."""
    if not augment or config.exfoliated_per_epoch <= 0:
        return graphs, targets
    rng = np.random.default_rng([config.seed, epoch, 1])
    extra_graphs, extra_targets = [], []
    for group_graphs, group_targets in augment:
        count = min(config.exfoliated_per_epoch, len(group_graphs))
        for k in rng.choice(len(group_graphs), size=count, replace=False):
            extra_graphs.append(group_graphs[int(k)])
            extra_targets.append(group_targets[int(k)])
    if not extra_graphs:
        return graphs, targets
    return [*graphs, *extra_graphs], np.concatenate([targets, np.stack(extra_targets)])


def _start_annealing(
    model: torch.nn.Module,
    best_weights: dict[str, torch.Tensor],
    scheduler: torch.optim.lr_scheduler.ExponentialLR,
    state: TrainState,
    decay: float,
) -> None:
    """Enter the annealing phase (see :class:`TrainConfig`): best weights, faster decay."""
    model.load_state_dict(best_weights)
    scheduler.gamma = decay
    state.best_val_loss, state.best_epoch = math.inf, state.epoch - 1


class WeightAverage:
    """Exponential moving average of a network's floating-point weights (``TrainConfig.ema_decay``).

    :meth:`update` follows each optimiser step; :meth:`swapped_in` puts the average into the
    network for validation and gives the raw weights back afterwards.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model, self.decay = model, decay
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the network's current weights."""
        for key, value in self.model.state_dict().items():
            if value.is_floating_point():
                self.average[key].lerp_(value, 1.0 - self.decay)
            else:
                self.average[key].copy_(value)

    def reset(self) -> None:
        """Restart the average at the network's current weights."""
        self.average = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The average in the network inside the block, the raw weights after it."""
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.average)
        try:
            yield
        finally:
            self.model.load_state_dict(raw)


def start_from_model(model: AnisoNet, source: str, seed: int) -> None:
    """Load member ``seed mod n`` of model ``source`` into ``model`` (see ``init_from``)."""
    from dataclasses import asdict

    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.model.checkpoint import load_model

    loaded = load_model(source, device="cpu")
    theirs = asdict(loaded.networks[0].config)
    ours = asdict(model.config)
    differ = sorted(k for k in ours if k != "physics_prior" and ours[k] != theirs.get(k))
    if differ:
        raise AnisoscreenError(f"init_from {source}: its configuration differs in {differ}")
    member = loaded.networks[seed % len(loaded.networks)]
    missing, unexpected = model.load_state_dict(member.state_dict(), strict=False)
    extra = [k for k in missing if not k.startswith("prior_weight.")]
    if extra or unexpected:
        raise AnisoscreenError(f"init_from {source}: weights differ ({extra + unexpected})")


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train: tuple[list[CrystalGraph], np.ndarray],
    validation: tuple[list[CrystalGraph], np.ndarray],
    checkpoint: str | Path,
    device: str = "auto",
    progress: Callable[[dict[str, float]], None] | None = None,
    born: tuple[Sequence[np.ndarray | None], Sequence[np.ndarray | None]] | None = None,
    augment: Sequence[tuple[list[CrystalGraph], np.ndarray]] = (),
) -> tuple[AnisoNet, TrainState]:
    """Train one network, resuming from ``checkpoint`` if it exists.

    ``augment`` holds groups of extra training examples (the exfoliated copies of one
    layered entry each); every epoch adds ``train_config.exfoliated_per_epoch`` of each
    group, drawn from ``(seed, epoch)`` alone so a resumed run sees the same epochs.

    With ``train_config.born_weight > 0``, ``born`` holds the per-structure Born charges
    (or ``None``) of the training and validation structures, and the loss adds
    ``born_weight`` times :func:`born_loss` of the model's Born head; the epoch records then
    also hold ``train_born_loss`` and ``val_born_loss``.

    Returns
    -------
    (AnisoNet, TrainState)
        The network holding the **best** validation weights, and the training state.
    """
    tune_allocator()
    checkpoint = Path(checkpoint)
    dev = resolve_device(device)
    torch.manual_seed(train_config.seed)
    model = AnisoNet(with_feature_channels(model_config)).to(dev)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=train_config.lr_decay)
    state = TrainState()
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    if train_config.init_from and not checkpoint.is_file():
        start_from_model(model, train_config.init_from, train_config.seed)
        best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if checkpoint.is_file():
        saved = load_training_checkpoint(checkpoint, dev)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        saved_state = dict(saved["state"])
        saved_state.setdefault(
            "stopped_early",
            saved_state["epoch"] - saved_state["best_epoch"] > train_config.patience,
        )
        state = TrainState(**saved_state)
        best_weights = saved["best_weights"]
    average = WeightAverage(model, train_config.ema_decay) if train_config.ema_decay else None
    if average is not None and checkpoint.is_file() and "weight_average" in saved:
        average.average = saved["weight_average"]

    train_graphs, train_targets = train
    val_graphs, val_targets = validation
    use_born = train_config.born_weight > 0
    if use_born and (born is None or model.born_head is None):
        raise ValueError("born_weight > 0 needs a model with born_head and the Born charges")
    if use_born and augment:
        raise ValueError("the Born-charge loss and exfoliation augmentation do not combine")
    if train_config.selection == "born" and not use_born:
        raise ValueError("selection 'born' needs born_weight > 0")
    started = time.perf_counter()
    while not state.stopped_early and state.epoch < train_config.max_epochs:
        if train_config.time_limit and time.perf_counter() - started > train_config.time_limit:
            break
        if state.epoch == train_config.anneal_from:
            _start_annealing(model, best_weights, scheduler, state, train_config.anneal_decay)
            if average is not None:
                average.reset()
        epoch_start = time.perf_counter()
        model.train()
        running, seen, born_running, born_atoms = 0.0, 0, 0.0, 0
        epoch_graphs, epoch_targets = _epoch_examples(
            train_graphs, train_targets, augment, train_config, state.epoch
        )
        hidden_gaps = (
            np.random.default_rng([train_config.seed, state.epoch, 2]).random(len(epoch_graphs))
            < train_config.gap_dropout
        )
        for idx in _batches(
            len(epoch_graphs), train_config.batch_size, train_config.seed, state.epoch
        ):
            batch_graphs = [epoch_graphs[i] for i in idx]
            batch = collate(batch_graphs).to(dev)
            if batch.band_gap is not None and hidden_gaps[idx].any():
                batch.band_gap[torch.as_tensor(hidden_gaps[idx], device=dev)] = math.nan
            target = torch.as_tensor(epoch_targets[idx], dtype=torch.float32, device=dev)
            if use_born:
                assert born is not None
                predicted, born_predicted = model.forward_with_born(batch)
                born_target, born_mask = born_targets(
                    [born[0][i] for i in idx], [g.num_nodes for g in batch_graphs], dev
                )
                main = training_loss(predicted, target, train_config)
                auxiliary = born_loss(
                    born_predicted, born_target, born_mask, model.config.born_scale
                )
                loss = main + train_config.born_weight * auxiliary
                born_running += float(auxiliary.detach()) * int(born_mask.sum())
                born_atoms += int(born_mask.sum())
            else:
                main = loss = training_loss(model(batch), target, train_config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update()
            running += float(main.detach()) * len(idx)
            seen += len(idx)
        scheduler.step()
        with average.swapped_in() if average is not None else nullcontext():
            val_loss = _loss(model, val_graphs, val_targets, dev, train_config)
            val_born = _born_loss(model, val_graphs, born[1], dev) if use_born and born else None
            validated = {k: v.detach().clone() for k, v in model.state_dict().items()}
        epoch_seconds = time.perf_counter() - epoch_start
        state.train_seconds += epoch_seconds
        record = {
            "epoch": state.epoch,
            "train_loss": running / max(seen, 1),
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": epoch_seconds,
        }
        if use_born:
            assert born is not None
            record["train_born_loss"] = born_running / max(born_atoms, 1)
            record["val_born_loss"] = val_born
        state.history.append(record)
        selected = record["val_born_loss"] if train_config.selection == "born" else val_loss
        if selected < state.best_val_loss:
            state.best_val_loss, state.best_epoch = selected, state.epoch
            best_weights = validated
        state.epoch += 1
        state.stopped_early = state.epoch - state.best_epoch > train_config.patience
        state.finished = state.stopped_early or state.epoch >= train_config.max_epochs
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": asdict(state),
                "best_weights": best_weights,
                "model_config": model_config.to_dict(),
                "train_config": train_config.to_dict(),
                **({"weight_average": average.average} if average is not None else {}),
            },
            checkpoint,
        )
        if progress is not None:
            progress(record)
    # a checkpoint resumed with a different max_epochs is finished by the new bound
    state.finished = state.stopped_early or state.epoch >= train_config.max_epochs
    model.load_state_dict(best_weights)
    return model.eval(), state
