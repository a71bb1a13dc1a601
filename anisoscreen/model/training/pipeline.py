"""From the dielectric data set to a shipped model file and its metrics.

The model card is written by :mod:`anisoscreen.model.training.model_card`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model, save_model
from anisoscreen.model.checksum import file_checksum
from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.spread_calibration import fit_spread_calibration
from anisoscreen.model.training.dataset import (
    clean_entries,
    load_entries,
    random_split,
    target_cleaning,
)
from anisoscreen.model.training.evaluate import crystal_systems, metrics, predict_irreps
from anisoscreen.model.training.model_card import write_model_card
from anisoscreen.model.training.train import (
    TrainConfig,
    attach_physics_priors,
    fit,
    prepare_graphs,
    resolve_device,
    target_stats,
)

__all__ = [
    "TARGET_RECIPES",
    "born_scale",
    "ensemble_improves",
    "epoch_printer",
    "extend_ensemble",
    "split_without",
    "target_recipe",
    "train_model",
]


TARGET_RECIPES: dict[str, dict[str, str]] = {
    "electronic": {"readout": "mean", "loss": "mse"},
    "ionic": {"readout": "psd_square_volume", "loss": "huber_log1p_eig"},
    "total": {"readout": "psd_square_volume", "loss": "huber_log1p_eig"},
}
"""Default read-out and loss per target: PSD and extensive by construction for eps0 and
eps_inf + eps0 (their response above vacuum is PSD), and a loss that is linear in the tail."""


def target_recipe(
    target: str, readout: str | None = None, loss: str | None = None
) -> dict[str, str]:
    """The read-out and loss to train ``target`` with (explicit choices win)."""
    if target not in TARGET_RECIPES:
        raise AnisoscreenError(f"unknown target {target!r}; use one of {sorted(TARGET_RECIPES)}")
    recipe = dict(TARGET_RECIPES[target])
    if readout is not None:
        recipe["readout"] = readout
    if loss is not None:
        recipe["loss"] = loss
    return recipe


def train_model(
    data_path: str | Path,
    output_dir: str | Path,
    name: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: tuple[int, ...] = (0,),
    split_seed: int = 42,
    device: str = "auto",
    max_entries: int | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    version: str = "1.0.0",
    exclude: Sequence[int] = (),
) -> dict[str, Any]:
    """Train an ensemble (one network per seed), evaluate it and write the model folder.

    The folder gets ``model.pt`` (all members), ``train-seed<k>.ckpt`` (resumable training
    state), ``metrics.json`` and ``MODEL_CARD.md``. Calling again resumes unfinished members.
    ``model_config.target`` picks the tensor learnt (electronic, ionic or total); the ionic
    and total targets drop outliers from training and validation only
    (:func:`~anisoscreen.model.training.dataset.target_cleaning`), so every target is tested
    on the same structures.
    ``exclude``: indices of cleaned entries left out of training and validation (and so
    without exfoliated copies there), e.g. an out-of-distribution regime
    (:mod:`anisoscreen.model.training.regimes`); the test split is unchanged.
    Returns the metrics dict, or ``{"finished": False}`` if a time limit stopped a member.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    entries, report = clean_entries(load_entries(data_path))
    if max_entries:
        entries = entries[:max_entries]
    split = split_without(random_split(len(entries), split_seed), exclude)
    feature_cache = None
    if model_config.atom_features:
        from anisoscreen.model.atom_features import data_set_cache

        feature_cache = data_set_cache(model_config.atom_features, data_path)
    graphs = prepare_graphs(entries, model_config.cutoff, model_config.atom_features, feature_cache)
    if model_config.physics_prior:
        if not train_config.physics_priors:
            raise AnisoscreenError("a physics_prior model needs train.physics_priors (an .npz)")
        attach_physics_priors(graphs, [e.structure for e in entries], train_config.physics_priors)
    target = model_config.target
    targets = np.stack([e.target_irreps(target) for e in entries])
    trainable, target_removed = target_cleaning(
        [entries[i] for i in np.concatenate([split["train"], split["validation"]])], target
    )
    trainable_ids = np.concatenate([split["train"], split["validation"]]).tolist()
    kept = dict(zip(trainable_ids, trainable.tolist(), strict=True))

    def subset(key: str):
        idx = [i for i in split[key] if kept.get(int(i), True)]
        return [graphs[i] for i in idx], targets[idx]

    train, validation = subset("train"), subset("validation")
    # the entry each validation structure comes from (an exfoliated copy: its parent's)
    validation_groups = [int(i) for i in split["validation"] if kept.get(int(i), True)]
    exfoliated = _exfoliated_sets(entries, split, train_config, model_config, feature_cache)
    if exfoliated["validation"][0]:  # model selection sees the layered regime too
        validation = (
            [*validation[0], *exfoliated["validation"][0]],
            np.concatenate([validation[1], exfoliated["validation"][1]]),
        )
        validation_groups += exfoliated["validation_parents"]
    elements = sorted({int(z) for g in train[0] for z in g.atomic_numbers})
    stats = target_stats(
        train[1], train[0], model_config.readout, target, model_config.outer_channels
    )
    model_config = replace(model_config, elements=elements, **stats)
    born = None
    if train_config.born_weight > 0:

        def born_of(key: str) -> list[np.ndarray | None]:
            return [entries[i].born for i in split[key] if kept.get(int(i), True)]

        born = (born_of("train"), born_of("validation"))
        model_config = replace(model_config, born_head=True, born_scale=born_scale(born[0]))

    networks, states = [], []
    for seed in seeds:
        member_progress = (lambda rec, s=seed: progress(s, rec)) if progress else None
        net, state = fit(
            model_config,
            replace(train_config, seed=seed),
            train,
            validation,
            output_dir / f"train-seed{seed}.ckpt",
            device=device,
            progress=member_progress,
            born=born,
            augment=exfoliated["train_groups"],
        )
        if not state.finished:
            return {"finished": False, "seed": seed, "epoch": state.epoch}
        networks.append(net)
        states.append(state)

    dev = resolve_device(device)
    spread_calibration = None
    if len(networks) > 1:  # fitted on validation only (with its exfoliated copies)
        val_members = tmath.irreps_to_tensor(predict_irreps(networks, validation[0], dev))
        spread_calibration = fit_spread_calibration(
            val_members,
            tmath.irreps_to_tensor(validation[1]),
            np.array([g.has_vacuum for g in validation[0]]),
            np.array(validation_groups),
        )
    test_graphs, test_targets = subset("test")
    test_structures = [entries[i].structure for i in split["test"]]
    predicted = predict_irreps(networks, test_graphs, dev).mean(axis=0)
    systems = crystal_systems(test_structures)
    result = {
        "finished": True,
        "test": metrics(
            tmath.irreps_to_tensor(predicted),
            tmath.irreps_to_tensor(test_targets),
            systems,
            target,
        ),
        "members": [
            {
                "seed": seed,
                "best_epoch": st.best_epoch,
                "epochs": st.epoch,
                "best_val_loss": st.best_val_loss,
                "train_seconds": round(st.train_seconds, 1),
            }
            for seed, st in zip(seeds, states, strict=False)
        ],
    }
    if exfoliated["test"][0]:
        slice_graphs, slice_targets = exfoliated["test"]
        slice_predicted = predict_irreps(networks, slice_graphs, dev).mean(axis=0)
        result["test_exfoliated"] = metrics(
            tmath.irreps_to_tensor(slice_predicted), tmath.irreps_to_tensor(slice_targets)
        )
    if born is not None:
        from anisoscreen.model.training.born_metrics import born_charge_metrics

        train_ids = [i for i in split["train"] if kept.get(int(i), True)]
        result["test_born"] = born_charge_metrics(
            networks,
            test_graphs,
            [entries[i].born for i in split["test"]],
            test_structures,
            [entries[i].structure for i in train_ids],
            [entries[i].born for i in train_ids],
            dev,
        )
    if len(networks) > 1:
        single = predict_irreps(networks[:1], test_graphs, dev)[0]
        result["test_single_member"] = metrics(
            tmath.irreps_to_tensor(single), tmath.irreps_to_tensor(test_targets), target=target
        )
    metadata = {
        "data_file": Path(data_path).name,
        "data_sha256": file_checksum(data_path),
        "cleaning": {
            "n_input": report.n_input,
            "removed": report.removed,
            "n_output": report.n_output,
        },
        "band_gaps": {
            "from_record": sum(e.band_gap_source == "record" for e in entries),
            "matched_from_id_table": sum(
                (e.band_gap_source or "").startswith("matched") for e in entries
            ),
            "unknown": sum(e.band_gap is None for e in entries),
        },
        "target": target,
        "target_cleaning": {
            "applies_to": "train and validation",
            "removed": target_removed,
            "train_size": len(train[0]),
            "validation_size": len(validation[0]),
        },
        "split_seed": split_seed,
        "excluded_from_training": len(exclude),
        "n_entries": len(entries),
        # every material of the data set (train, validation and test) is already known
        "material_ids": sorted({e.material_id for e in entries if e.material_id.startswith("mp-")}),
        "split_sizes": {k: len(v) for k, v in split.items()},
        "train_config": train_config.to_dict(),
        "seeds": list(seeds),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": _hardware(dev),
        "train_seconds": round(sum(st.train_seconds for st in states), 1),
        "parameters_per_member": networks[0].num_parameters,
        "metrics": result,
    }
    if spread_calibration is not None:
        metadata["spread_calibration"] = spread_calibration
    if exfoliated["train_groups"]:
        metadata["exfoliation"] = {
            "layered_entries": {
                "train": len(exfoliated["train_groups"]),
                "validation": len(exfoliated["validation"][0])
                // len(train_config.exfoliation_deltas),
                "test": len(exfoliated["test"][0]) // len(train_config.exfoliation_deltas),
            },
            "deltas": list(train_config.exfoliation_deltas),
            "per_epoch": train_config.exfoliated_per_epoch,
        }
    save_model(
        output_dir / MODEL_FILENAME,
        model_config,
        [net.state_dict() for net in networks],
        name=name,
        version=version,
        metadata=metadata,
    )
    (output_dir / "metrics.json").write_text(json.dumps(metadata, indent=2))
    write_model_card(output_dir / "MODEL_CARD.md", name, version, model_config, metadata)
    return result


def split_without(split: dict[str, np.ndarray], exclude: Sequence[int]) -> dict[str, np.ndarray]:
    """``split`` with the indices ``exclude`` removed from training and validation (not test)."""
    dropped = np.asarray(exclude, dtype=np.int64)
    # order kept: the training's shuffles and batches follow the split's order
    return {
        key: idx[~np.isin(idx, dropped)] if key in ("train", "validation") else idx
        for key, idx in split.items()
    }


def _exfoliated_sets(
    entries: Sequence[Any],
    split: dict[str, np.ndarray],
    train_config: TrainConfig,
    model_config: ModelConfig,
    feature_cache: Path | None = None,
) -> dict[str, Any]:
    """Graphs and targets of the exfoliated copies, per split (never mixed across splits).

    ``train_groups`` holds one ``(graphs, targets)`` group per layered training entry (the
    epoch draws from each); ``validation`` and ``test`` are flat ``(graphs, targets)``, and
    ``validation_parents`` / ``test_parents`` the entry index of each copy.
    """
    empty: dict[str, Any] = {
        "train_groups": [],
        "validation": ([], np.zeros((0, 6))),
        "validation_parents": [],
        "test": ([], np.zeros((0, 6))),
    }
    if not train_config.exfoliation_deltas:
        return empty
    if model_config.target != "electronic":
        raise AnisoscreenError("exfoliation augmentation is defined for the electronic tensor")
    from anisoscreen.model.training.exfoliated import exfoliated_copies, exfoliated_graphs

    def graphs_of(copies: list[Any]) -> tuple[list[Any], np.ndarray]:
        graphs = exfoliated_graphs(
            copies, entries, model_config.cutoff, model_config.atom_features, feature_cache
        )
        targets = np.stack([tmath.tensor_to_irreps(c.eps_electronic) for c in copies])
        return graphs, targets

    out = dict(empty)
    for key in ("train", "validation", "test"):
        copies = exfoliated_copies(entries, split[key].tolist(), train_config.exfoliation_deltas)
        if key == "train":
            out["train_groups"] = [graphs_of(group) for group in copies.values()]
        elif copies:
            flat = [c for group in copies.values() for c in group]
            out[key] = graphs_of(flat)
            out[f"{key}_parents"] = [int(c.parent) for c in flat]
    return out


def born_scale(born: Sequence[np.ndarray | None]) -> float:
    """The RMS Born-charge component over the structures that have Born charges."""
    charges = [np.asarray(b, dtype=float) for b in born if b is not None]
    if not charges:
        raise AnisoscreenError("born_weight > 0 but no training structure has Born charges")
    return float(np.sqrt(np.mean(np.concatenate(charges) ** 2)))


def epoch_printer() -> Callable[[int, dict[str, float]], None]:
    """A ``progress`` callback printing one line per epoch: seed, losses, lr and times."""
    start = time.time()

    def progress(seed: int, rec: dict[str, float]) -> None:
        print(
            f"seed {seed} epoch {rec['epoch']:4d} train {rec['train_loss']:.4f} "
            f"val {rec['val_loss']:.4f} lr {rec['lr']:.5f} {rec['seconds']:.1f}s "
            f"[{time.time() - start:.0f}s]" + _born_columns(rec),
            flush=True,
        )

    return progress


def _born_columns(rec: dict[str, float]) -> str:
    if "train_born_loss" not in rec:
        return ""
    return f" born train {rec['train_born_loss']:.4f} val {rec['val_born_loss']:.4f}"


def ensemble_improves(current: dict[str, Any], extended: dict[str, Any]) -> bool:
    """Whether ``extended``'s eps_poly and a_r MAEs are both no worse and one is better.

    For eps0, which has no a_r (``anisotropy_ratio_mae`` is ``None``), MAE_ten stands in.
    """
    has_ratio = current.get("anisotropy_ratio_mae") is not None
    keys = ("eps_poly_mae", "anisotropy_ratio_mae" if has_ratio else "tensor_mae")
    old, new = [current[k] for k in keys], [extended[k] for k in keys]
    return all(n <= o for n, o in zip(new, old, strict=True)) and new != old


def extend_ensemble(
    model_dir: str | Path,
    data_path: str | Path,
    seeds: tuple[int, ...],
    version: str,
    device: str = "auto",
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train more members for a model folder and add them where validation says they help.

    The new members are trained exactly as the existing ones (same data, cleaning, split,
    network and training settings, read from the model's metadata) in
    ``<model_dir>/extra-members/`` (resumable). The larger ensemble replaces ``model.pt``
    (with ``version``, metrics, ``metrics.json`` and model card updated) only if its
    validation MAEs of eps_poly and a_r are both no worse and one is better; test metrics play
    no part in the decision. Returns the validation metrics of both ensembles, ``kept``, and
    the new test metrics; or ``{"finished": False, ...}`` if a time limit stopped training.
    """
    from anisoscreen.model.training.evaluate import evaluate_model

    model_dir = Path(model_dir)
    model_path = model_dir / MODEL_FILENAME
    current = load_model(model_path)
    metadata = dict(current.metadata)
    metrics_path = model_dir / "metrics.json"
    if metrics_path.exists():  # sections added after training (the read-out ablation) live here
        ablation = json.loads(metrics_path.read_text()).get("readout_ablation")
        if ablation:
            metadata["readout_ablation"] = ablation
    clash = sorted(set(seeds) & set(metadata["seeds"]))
    if clash or not seeds:
        raise AnisoscreenError(f"seeds {clash or list(seeds)} cannot be added to {model_path}")
    work_dir = model_dir / "extra-members"
    result = train_model(
        data_path,
        work_dir,
        current.name,
        current.config,
        TrainConfig(**metadata["train_config"]),
        seeds=tuple(seeds),
        split_seed=metadata["split_seed"],
        device=device,
        max_entries=metadata["n_entries"],
        progress=progress,
        version=version,
    )
    if not result.get("finished"):
        return result
    extra = load_model(work_dir / MODEL_FILENAME)
    if extra.config != current.config:  # same data and split give the same statistics
        raise AnisoscreenError(f"{work_dir} was not trained like {model_path}")

    candidate_path = work_dir / "extended.pt"
    merged_metadata = {
        **metadata,
        "seeds": [*metadata["seeds"], *seeds],
        "train_seconds": round(metadata["train_seconds"] + extra.metadata["train_seconds"], 1),
        "trained_at": extra.metadata["trained_at"],
        "hardware": extra.metadata["hardware"],
    }
    states = [net.state_dict() for net in [*current.networks, *extra.networks]]
    save_model(candidate_path, current.config, states, current.name, version, merged_metadata)
    cleaned = clean_entries(load_entries(data_path))[0]  # read once for the three evaluations

    def evaluated(path: Path, subset: str) -> dict[str, Any]:
        return evaluate_model(str(path), data_path, subset=subset, device=device, cleaned=cleaned)

    validation = {
        label: evaluated(path, "validation")["metrics"]
        for label, path in (("current", model_path), ("extended", candidate_path))
    }
    kept = ensemble_improves(validation["current"], validation["extended"])
    outcome = {"finished": True, "kept": kept, "validation": validation}
    if not kept:
        return outcome
    test = evaluated(candidate_path, "test")["metrics"]
    merged_metadata["metrics"] = {
        **metadata["metrics"],
        "test": test,
        "validation": validation["extended"],
        "members": [*metadata["metrics"]["members"], *result["members"]],
    }
    save_model(model_path, current.config, states, current.name, version, merged_metadata)
    metrics_path.write_text(json.dumps(merged_metadata, indent=2))
    write_model_card(model_dir / "MODEL_CARD.md", current.name, version, current.config,
                     merged_metadata)  # fmt: skip
    candidate_path.unlink()
    outcome["test"] = test
    return outcome


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
