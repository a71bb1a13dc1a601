"""From the dielectric data set to a shipped model file, its metrics and its model card."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterable, Sequence
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
from anisoscreen.model.training.dataset import (
    clean_entries,
    load_entries,
    random_split,
    target_cleaning,
)
from anisoscreen.model.training.error_slices import fit_spread_calibration
from anisoscreen.model.training.evaluate import crystal_systems, metrics, predict_irreps
from anisoscreen.model.training.train import (
    TrainConfig,
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
    "target_recipe",
    "train_model",
    "write_model_card",
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
) -> dict[str, Any]:
    """Train an ensemble (one network per seed), evaluate it and write the model folder.

    The folder gets ``model.pt`` (all members), ``train-seed<k>.ckpt`` (resumable training
    state), ``metrics.json`` and ``MODEL_CARD.md``. Calling again resumes unfinished members.
    ``model_config.target`` picks the tensor learnt (electronic, ionic or total); the ionic
    and total targets drop outliers from training and validation only
    (:func:`~anisoscreen.model.training.dataset.target_cleaning`), so every target is tested
    on the same structures.
    Returns the metrics dict, or ``{"finished": False}`` if a time limit stopped a member.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    entries, report = clean_entries(load_entries(data_path))
    if max_entries:
        entries = entries[:max_entries]
    split = random_split(len(entries), split_seed)
    feature_cache = None
    if model_config.atom_features:
        from anisoscreen.model.atom_features import data_set_cache

        feature_cache = data_set_cache(model_config.atom_features, data_path)
    graphs = prepare_graphs(entries, model_config.cutoff, model_config.atom_features, feature_cache)
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
    exfoliated = _exfoliated_sets(entries, split, train_config, model_config)
    if exfoliated["validation"][0]:  # model selection sees the layered regime too
        validation = (
            [*validation[0], *exfoliated["validation"][0]],
            np.concatenate([validation[1], exfoliated["validation"][1]]),
        )
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
            val_members, tmath.irreps_to_tensor(validation[1])
        )
    test_graphs, test_targets = subset("test")
    test_structures = [entries[i].structure for i in split["test"]]
    predicted = predict_irreps(networks, test_graphs, dev).mean(axis=0)
    systems = crystal_systems(test_structures)
    result = {
        "finished": True,
        "test": metrics(
            tmath.irreps_to_tensor(predicted), tmath.irreps_to_tensor(test_targets), systems
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
    if len(networks) > 1:
        single = predict_irreps(networks[:1], test_graphs, dev)[0]
        result["test_single_member"] = metrics(
            tmath.irreps_to_tensor(single), tmath.irreps_to_tensor(test_targets)
        )
    metadata = {
        "data_file": Path(data_path).name,
        "data_sha256": file_checksum(data_path),
        "cleaning": {
            "n_input": report.n_input,
            "removed": report.removed,
            "n_output": report.n_output,
        },
        "target": target,
        "target_cleaning": {
            "applies_to": "train and validation",
            "removed": target_removed,
            "train_size": len(train[0]),
            "validation_size": len(validation[0]),
        },
        "split_seed": split_seed,
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


def _exfoliated_sets(
    entries: Sequence[Any],
    split: dict[str, np.ndarray],
    train_config: TrainConfig,
    model_config: ModelConfig,
) -> dict[str, Any]:
    """Graphs and targets of the exfoliated copies, per split (never mixed across splits).

    ``train_groups`` holds one ``(graphs, targets)`` group per layered training entry (the
    epoch draws from each); ``validation`` and ``test`` are flat ``(graphs, targets)``.
    """
    empty: dict[str, Any] = {
        "train_groups": [],
        "validation": ([], np.zeros((0, 6))),
        "test": ([], np.zeros((0, 6))),
    }
    if not train_config.exfoliation_deltas:
        return empty
    if model_config.target != "electronic":
        raise AnisoscreenError("exfoliation augmentation is defined for the electronic tensor")
    from anisoscreen.model.nn.graph import structure_to_graph
    from anisoscreen.model.training.exfoliated import exfoliated_copies

    def graphs_of(copies: list[Any]) -> tuple[list[Any], np.ndarray]:
        graphs = [
            structure_to_graph(
                c.structure,
                model_config.cutoff,
                allow_isolated=True,
                band_gap=entries[c.parent].band_gap,
            )
            for c in copies
        ]
        targets = np.stack([tmath.tensor_to_irreps(c.eps_electronic) for c in copies])
        return graphs, targets

    out = dict(empty)
    for key in ("train", "validation", "test"):
        copies = exfoliated_copies(entries, split[key], train_config.exfoliation_deltas)
        if key == "train":
            out["train_groups"] = [graphs_of(group) for group in copies.values()]
        elif copies:
            out[key] = graphs_of([c for group in copies.values() for c in group])
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
    """Whether ``extended``'s eps_poly and a_r MAEs are both no worse and one is better."""
    keys = ("eps_poly_mae", "anisotropy_ratio_mae")
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
    validation = {
        label: evaluate_model(str(path), data_path, subset="validation", device=device)["metrics"]
        for label, path in (("current", model_path), ("extended", candidate_path))
    }
    kept = ensemble_improves(validation["current"], validation["extended"])
    outcome = {"finished": True, "kept": kept, "validation": validation}
    if not kept:
        return outcome
    test = evaluate_model(str(candidate_path), data_path, subset="test", device=device)["metrics"]
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


def write_model_card(
    path: Path, name: str, version: str, config: ModelConfig, metadata: dict[str, Any]
) -> None:
    """A human-readable model card (Markdown) next to the weights."""
    test = metadata["metrics"]["test"]
    per_system = _markdown_table(
        ["crystal system", "n", "eps_poly MAE", "a_r MAE", "component MAE", "MAE_ten"],
        (
            [
                system,
                str(m["n"]),
                f"{m['eps_poly_mae']:.3f}",
                f"{m['anisotropy_ratio_mae']:.3f}",
                f"{m['component_mae']:.3f}",
                f"{m.get('tensor_mae', float('nan')):.3f}",
            ]
            for system, m in test.get("per_crystal_system", {}).items()
        ),
    )
    cfg = {k: v for k, v in config.to_dict().items() if k != "elements"}
    tensor_name = {
        "electronic": "high-frequency dielectric tensor eps_inf",
        "ionic": "ionic (lattice) dielectric tensor eps0",
        "total": "static dielectric tensor eps_inf + eps0",
    }[config.target]
    target_cleaning = metadata.get("target_cleaning") or {}
    cleaning_line = (
        f"\n- Target cleaning (train and validation only): removed {target_cleaning['removed']}."
        if target_cleaning.get("removed")
        else ""
    )
    sections = (
        _readout_ablation_section(metadata.get("readout_ablation"))
        + _readout_study_section(metadata.get("readout_study"))
        + _laminate_section(config, metadata)
    )
    text = f"""# {name} {version}

AnisoNet-style equivariant graph network (anisoscreen implementation) predicting the
{tensor_name} (target `{config.target}`) of a crystal from its structure.

## Data
- File: `{metadata["data_file"]}` (sha256 `{metadata["data_sha256"][:16]}...`), Materials
  Project DFPT (PBE) tensors; Materials Project data are CC BY 4.0 (cite the Materials Project
  and Petousis et al., Sci. Data 4, 160134, 2017).
- Cleaning: {metadata["cleaning"]["n_input"]} entries -> {metadata["cleaning"]["n_output"]}
  (removed: {metadata["cleaning"]["removed"]}).{cleaning_line}
- Random split, seed {metadata["split_seed"]}: {metadata["split_sizes"]}.
- Elements seen in training: {len(config.elements)}.

## Model
- Config: `{json.dumps(cfg)}`
- Parameters per member: {metadata["parameters_per_member"]:,}; ensemble members (seeds):
  {metadata["seeds"]}.
- Training: `{json.dumps(metadata["train_config"])}`.
- Training time: {metadata["train_seconds"]:.0f} s on {metadata["hardware"]}
  (trained {metadata["trained_at"]}).

## Test-set metrics (structures never seen in training or model selection)
- eps_poly MAE: **{test["eps_poly_mae"]:.3f}**
- a_r MAE: **{test["anisotropy_ratio_mae"]:.3f}**
- mean component MAE: **{test["component_mae"]:.3f}**
- MAE_ten (DTNet eq. 3, 6 unique components): **{test.get("tensor_mae", float("nan")):.3f}**
- n = {test["n"]}

{per_system}

Reference (Lou & Ganose 2025, 6,706 entries): eps_poly MAE 0.311, a_r MAE 0.078 (eps_inf).
DTNet (Mao, Li & Tan 2024, ~6,650 entries) MAE_ten: electronic 0.368, ionic 1.677,
total 1.911.
{sections}
## Intended use and limits
Screening of ordered, stoichiometric crystals with a band gap. {_limits(config)} Elements
absent from training are refused at prediction time.
"""
    path.write_text(text)


def _limits(config: ModelConfig) -> str:
    """What the read-out can and cannot see, for the model card."""
    if config.readout == "psd_laminate_volume":
        return (
            "The laminate read-out mixes the per-atom polarisabilities with the vacuum the "
            "cell holds (parallel in a layer's plane, series along its normal, cylinders for "
            "wires); interactions across gaps wider than the 5 A cutoff are not seen, and the "
            "layer boundary is placed 4 A (GAP_OFFSET + GAP_SOFTNESS / 2) from the outermost "
            "atom planes. Predictions without a band gap use the gap-free mode of the same "
            "network (`band_gap_used: false` in the record)."
        )
    if config.readout == "mean":
        return (
            "The mean-pooled read-out cannot see separations larger than the 5 A cutoff: a "
            "layered crystal with its layers pulled apart keeps the same tensor."
        )
    return (
        f"The {config.readout} read-out divides a sum of per-atom polarisabilities by the cell "
        "volume, so vacuum between layers dilutes the response as it should; interactions "
        "across gaps wider than the 5 A cutoff are still not seen."
    )


LAMINATE_DERIVATION = """### The read-out, derived
Each atom contributes a positive definite polarisability alpha_i = exp(M_i) (its `0e+2e`
output as a symmetric matrix). For a dense crystal the susceptibility is their sum per
volume, chi = (v0 / V) sum_i alpha_i, and eps = I + chi (v2). A layer of thickness fraction
f (tensor eps_L, in its own frame) stacked with vacuum is a laminate: E is continuous in the
plane and D along the normal n, which gives Wiener's bounds, eps_par = f eps_L,par + 1 - f
and 1/eps_perp = f/eps_L,perp + 1 - f (Backus's average for a general tensor). The same
result in one matrix formula, with chi = f (eps_L - I) (what the sum over the layer's atoms
per cell volume is), is Maxwell Garnett's with depolarisation n n^T:

    eps = I + chi (I + D chi)^-1,   D = (1 - f) / f * n n^T

(tested equal to Backus's average for arbitrary layer tensors). D comes from the geometry
(`anisoscreen.geometry.depolarisation_tensor`): along the normal of each of the 13 planes
with Miller indices in {-1, 0, 1}, every empty slab between consecutive atom planes adds
its width beyond 3.5 A (quadratic onset over 1 A, so D has no jump), and the sum over one
period divided by d_hkl is the vacuum fraction q = 1 - f; the plane with the most vacuum is
the stacking plane. Summing every gap makes a cell with m layers equal a cell with one;
D = 0 for a dense crystal, so the read-out is then exactly the sum/V one. A wire (vacuum
along a second, transverse normal) gets the cylinder form D = (1 - f) / f (I - t t^T) / 2
with f = f1 f2 and axis t, blended with the layer form by q2 / q1: series mixing in both
transverse directions would be two crossed laminates, which under-screens a wire, whose
field lines pass around it. D rotates with the structure and ignores translations,
permutations and supercells; eps stays positive definite (chi PD, D PSD).
"""


def _laminate_section(config: ModelConfig, metadata: dict[str, Any]) -> str:
    """Model-card sections of a laminate read-out model: derivation and the v3 study."""
    if config.readout != "psd_laminate_volume":
        return ""
    return "\n" + LAMINATE_DERIVATION + _v3_study_section(metadata.get("v3_study"))


def _block_pair(block: dict[str, Any] | None) -> str:
    if not block or not block.get("n"):
        return "-"
    return _pair(block["eps_poly_mae"], block["anisotropy_ratio_mae"])


def _v3_study_section(study: dict[str, Any] | None) -> str:
    """Tables of ``studies/v3_study.py``: slices, gap bins, calibration, laminate test."""
    if not study:
        return ""
    variants = (("v2", "v2"), ("v2_posthoc", "v2 + post-hoc laminate"), ("v3", "v3 (this model)"))

    def slice_of(key: str, subset: str, name: str) -> dict[str, Any] | None:
        result = study[key][subset]
        if name == "all":
            return result["metrics"]
        if name == "2D":
            return result["slices"].get("by_dimensionality", {}).get("2D")
        return result["slices"].get(name)

    names = (
        ("all", "test split"),
        ("exfoliated", "exfoliated slice (test entries' copies)"),
        ("layered_gap", "empty slab > 6 A"),
        ("2D", "2D-tagged"),
        ("eps_poly_tail", "eps_poly > 8"),
    )
    slices = _markdown_table(
        ["slice (test)", *(f"{label}: eps_poly / a_r MAE" for _, label in variants), "n"],
        (
            [
                label,
                *(_block_pair(slice_of(key, "test", name)) for key, _ in variants),
                str((slice_of("v3", "test", name) or {}).get("n", 0)),
            ]
            for name, label in names
        ),
    )
    validation = _markdown_table(
        ["validation", *(label for _, label in variants)],
        (
            [label, *(_block_pair(slice_of(key, "validation", name)) for key, _ in variants)]
            for name, label in names[:2]
        ),
    )
    v3_test = study["v3"]["test"]["slices"]
    v2_test = study["v2"]["test"]["slices"]
    gap_rows = []
    for label, block in v3_test.get("by_band_gap", {}).items():
        without = v3_test.get("by_band_gap_without_gap", {}).get(label)
        gap_rows.append(
            [
                label,
                str(block.get("n", 0)),
                _fmt(v2_test["by_band_gap"][label].get("eps_poly_mae")),
                _fmt(block.get("eps_poly_mae")),
                _fmt((without or {}).get("eps_poly_mae")),
            ]
        )
    gaps = _markdown_table(
        ["PBE gap (test)", "n", "v2 eps_poly MAE", "v3 with gap", "v3 without gap"], gap_rows
    )
    calibration_rows = []
    for where, block in (
        ("test split", v3_test.get("calibration")),
        ("exfoliated slice", (v3_test.get("exfoliated") or {}).get("calibration")),
    ):
        for quantity, c in (block or {}).items():
            calibration_rows.append(
                [
                    where,
                    quantity,
                    f"{c['spearman_spread_vs_error']:.2f}",
                    f"{c['coverage_2sigma']:.2f}",
                    f"{c.get('coverage_2sigma_calibrated', float('nan')):.2f}",
                    f"{c.get('spread_scale', 1.0):.2f}",
                ]
            )
    calibration = _markdown_table(
        [
            "where",
            "quantity",
            "Spearman(spread, abs error)",
            "+-2 sigma coverage (raw)",
            "after recalibration",
            "sigma factor (fit on validation)",
        ],
        calibration_rows,
    )
    laminate_rows = []
    for model, layers in study["laminate_test"].items():
        for layer, r in layers.items():
            laminate_rows.append(
                [
                    model,
                    layer,
                    f"{r['in_plane_2d'][2]:.2f} / {r['in_plane_2d'][-1]:.2f}",
                    f"{100 * r['in_plane_spread_20_60']:.1f} %",
                    f"{r['normal_2d'][2]:.2f} / {r['normal_2d'][-1]:.2f}",
                    f"{100 * r['normal_spread_20_60']:.1f} %",
                    "yes" if r["passes"] else "no",
                ]
            )
    laminate = _markdown_table(
        [
            "model",
            "layer",
            "(eps_par - 1) c at 20 / 60 A",
            "spread 20-60 A",
            "(1 - 1/eps_perp) c at 20 / 60 A",
            "spread 20-60 A",
            "within 5 %",
        ],
        laminate_rows,
    )
    return f"""
### Study (`studies/v3_study.py`)
Every number below is on structures no model saw in training or model selection (the test
split) or on their exfoliated copies (each layered test entry with its gaps opened by 2, 4,
8, 12 and 16 A, labelled from its own DFPT tensor by the laminate law; training and
validation copies never reach these tables). The v3 validation score against v2 (eps_poly
MAE ratio + a_r MAE ratio; 2 = equal) is {study["validation_score_v3_vs_v2"]:.3f}.

{slices}

{validation}

Test split by PBE band gap (v3 with the gap, and the same structures with it hidden):

{gaps}

Ensemble calibration (the spread factor is fitted on the validation split only, with its
exfoliated copies, so that +-2 sigma covers 95 %):

{calibration}

Laminate test (a layer in cells of height c = 12-60 A; physics: both products constant):

{laminate}
"""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pair(first: float | None, second: float | None) -> str:
    """``"first / second"``, each to three decimals (eps_poly / a_r cells)."""
    return f"{_fmt(first)} / {_fmt(second)}"


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table with ``header`` and one line per row of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_STUDY_HEADER = [
    "variant",
    "members",
    "validation eps_poly / a_r MAE (ensemble)",
    "per member (validation eps_poly / a_r)",
    "test eps_poly / a_r MAE",
    "test MAE_ten",
]
_SLICES_HEADER = [
    "variant",
    "2D",
    "empty slab > 6 A",
    "eps_poly > 8",
    "Spearman(spread, error) eps_poly / a_r; +-2 sigma coverage",
    "dilution eps_zz(40) / ratio",
]


def _readout_study_section(study: dict[str, Any] | None) -> str:
    """Model-card section of the read-out/loss study (``workflows/v2_study.py``)."""
    if not study:
        return ""
    rows = _markdown_table(
        _STUDY_HEADER,
        (
            [
                r["label"],
                str(r["members"]),
                _pair(r["val_eps_poly"], r["val_ar"]),
                f"{', '.join(f'{v:.3f}' for v in r['member_val_eps_poly'])} / "
                f"{', '.join(f'{v:.3f}' for v in r['member_val_ar'])}",
                _pair(r["test_eps_poly"], r["test_ar"]),
                _fmt(r["test_tensor_mae"]),
            ]
            for r in study["rows"]
        ),
    )
    slices = _markdown_table(
        _SLICES_HEADER,
        (
            [
                r["label"],
                _pair(r["twod_eps_poly"], r["twod_ar"]),
                f"{_pair(r['layered_eps_poly'], r['layered_ar'])} (n={r['layered_n']})",
                _pair(r["tail_eps_poly"], r["tail_ar"]),
                _calibration_cell(r["calibration"]),
                f"{r['dilution_eps_zz_40']:.2f} / {_fmt(r['dilution_ratio'])}",
            ]
            for r in study["rows"]
        ),
    )
    return f"""
## Read-out and loss study
{study["description"]}

{rows}

Error slices on the {study["slice_n"]} validation + test structures (eps_poly / a_r MAE),
ensemble calibration, and the MoS2-layer dilution series (eps_zz at c = 40 A; in-plane
(eps - 1) ratio between c = 40 and 20 A, physics 0.5):

{slices}
"""


def _calibration_cell(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "-"
    e, a = calibration["eps_poly"], calibration["anisotropy_ratio"]
    return (
        f"{e['spearman_spread_vs_error']:.2f} / {a['spearman_spread_vs_error']:.2f}; "
        f"{e['coverage_2sigma']:.2f} / {a['coverage_2sigma']:.2f}"
    )


def _readout_ablation_section(ablation: dict[str, Any] | None) -> str:
    """Model-card section comparing equivariant and scalar read-outs (if it was run)."""
    if not ablation:
        return ""
    rows = _markdown_table(
        [
            "read-out",
            "validation eps_poly / a_r MAE",
            "test eps_poly / a_r MAE",
            "test component MAE",
        ],
        (
            [
                row["label"],
                _pair(row["validation"]["eps_poly_mae"], row["validation"]["anisotropy_ratio_mae"]),
                _pair(row["test"]["eps_poly_mae"], row["test"]["anisotropy_ratio_mae"]),
                _fmt(row["test"]["component_mae"]),
            ]
            for row in ablation["rows"]
        ),
    )
    return f"""
## Equivariant vs scalar read-out
{ablation["description"]}

{rows}
"""
