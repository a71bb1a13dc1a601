"""``predict``, ``train`` and ``evaluate`` commands."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:
    from rich.console import Console

ModelOption = Annotated[
    str | None, typer.Option("--model", help="Model name (under models/) or checkpoint path.")
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto (GPU when available), cpu or cuda.")
]


dataset_app = typer.Typer(help="Build training data sets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    app.command()(predict)
    app.command()(train)
    app.command()(evaluate)
    dataset_app.command("build")(dataset_build)
    app.add_typer(dataset_app, name="dataset")


def dataset_build(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON.gz file to write.")],
    from_mp: Annotated[
        bool, typer.Option("--from-mp", help="Fetch every MP DFPT tensor (needs MP_API_KEY).")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Documents per MP API request (cached).")
    ] = 500,
) -> None:
    """Rebuild the full Materials Project dielectric set (tensors + structures) for training.

    Interrupted downloads resume from a cache under the data dir.
    """
    from anisoscreen.candidates.mp import MPResterSearcher, RetryPolicy, api_key
    from anisoscreen.commands.common import console, settings_from_options
    from anisoscreen.model.training.mp_dataset import build_dielectric_dataset

    if not from_mp:
        raise AnisoscreenError("say where the data comes from: --from-mp")
    settings = settings_from_options()
    key = api_key(settings)
    count = build_dielectric_dataset(
        MPResterSearcher(key, "dielectric"),
        MPResterSearcher(key, "summary"),
        output,
        settings.data_dir / "cache" / "mp-dielectric",
        chunk_size=chunk_size,
        retry=RetryPolicy(secret=key),
        progress=lambda stage, done, total: console.print(f"{stage}: chunk {done}/{total}"),
    )
    console.print(f"{count} dielectric records -> {output}")


def _countable_total(inputs: list[Path]) -> int | None:
    """Number of structures when every input is a structure file or a folder of them.

    ``None`` when a record file (JSON, JSON Lines) is among them: those are streamed, and
    their length is known only at the end.
    """
    from anisoscreen.structures_io import is_structure_file

    def records(path: Path) -> bool:
        return ".json" in path.name.lower()

    total = 0
    for path in inputs:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        if any(records(p) for p in files) or not all(p.is_file() for p in files):
            return None
        total += sum(is_structure_file(p) for p in files)
    return total or None


def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="CIF/POSCAR/vasprun files, folders, JSON(.gz) lists or JSON Lines (.jsonl[.gz]) "
            "files; record files are streamed."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output JSON Lines file.")],
    model: ModelOption = None,
    device: DeviceOption = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Structures per model call (default: settings)."),
    ] = None,
    ionic_model: Annotated[
        str | None,
        typer.Option(
            "--ionic-model",
            help="Ionic model of the model set: adds eps_ionic and eps_total (= eps_inf + "
            "eps_ionic) to every line. Default: the ionic_model setting (none).",
        ),
    ] = None,
) -> None:
    """Predict the high-frequency (and, with an ionic model, static) dielectric tensors.

    Writes one JSON object per line; inputs that cannot be predicted get an ``error`` field
    and make the command exit with status 3 after writing everything else.
    """
    for path in inputs:  # before the heavy imports: a typo fails at once
        if not path.expanduser().exists():
            raise AnisoscreenError(f"input {path} does not exist")
    from anisoscreen.commands.common import console, settings_from_options
    from anisoscreen.commands.progress import Counter, progress
    from anisoscreen.model.inference import PredictionFailure, Predictor
    from anisoscreen.structures_io import read_structure_inputs

    settings = settings_from_options(
        model=model, device=device, batch_size=batch_size, ionic_model=ionic_model
    )
    predictor = Predictor.load(
        settings.model,
        settings.data_dir,
        settings.device,
        settings.batch_size,
        settings.ionic_model,
    )
    # streamed: records are read, predicted and written a batch at a time (flat memory)
    records = read_structure_inputs(inputs)
    first = next(records, None)
    if first is None:
        raise AnisoscreenError("no structures found in the inputs")
    n_ok = n_failed = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    try:
        with open(tmp, "w") as handle, progress("predicting", console) as report:
            counter = Counter(report, _countable_total(inputs))
            records = itertools.chain([first], records)
            for result in predictor.predict(records, progress=counter.advance):
                if isinstance(result, PredictionFailure):
                    line = result.as_dict()
                    n_failed += 1
                else:
                    line = prediction_line(result)
                    n_ok += 1
                handle.write(json.dumps(line) + "\n")
    except BaseException:
        if n_ok + n_failed == 0:  # nothing worth keeping: leave no empty .partial behind
            tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    console.print(
        f"{n_ok} predicted, {n_failed} failed with {predictor.model.name} "
        f"{predictor.model.version} on {predictor.device} -> {output}"
    )
    if n_failed:
        raise typer.Exit(3)


def prediction_line(doc) -> dict:
    """The JSON Lines record of one :class:`PredictionDoc`.

    The flat fields are eps_inf, as always, with its optics: the principal refractive
    indices, the birefringence, the optical character and the optic axes as lattice
    directions ``[u, v, w]``. With an ionic model the line adds
    ``eps_electronic``, ``eps_ionic`` and ``eps_total`` blocks (tensor, eigenvalues, eps_poly,
    a_r and ensemble spread each), ``ionic_model`` and, where the band gap is known,
    ``figure_of_merit``.
    """
    line = {
        "material_id": doc.material_id,
        "formula": doc.formula_pretty,
        "dielectric_tensor": doc.dielectric_tensor,
        "eigenvalues": doc.eigenvalues,
        "eps_poly": doc.eps_poly,
        "anisotropy_ratio": doc.anisotropy_ratio,
        "model": doc.model,
        "model_version": doc.model_version,
        "refractive_indices": doc.refractive_indices,
        "birefringence": doc.birefringence,
        "optical_character": doc.optical_character,
        "optic_axes": doc.optic_axes,
        "lattice_parameters": doc.lattice_parameters,
    }
    if doc.optic_axial_angle is not None:
        line["optic_axial_angle"] = doc.optic_axial_angle
    if doc.n_models > 1:
        line.update(
            dielectric_tensor_std=doc.dielectric_tensor_std,
            eps_poly_std=doc.eps_poly_std,
            anisotropy_ratio_std=doc.anisotropy_ratio_std,
            birefringence_std=doc.birefringence_std,
            n_models=doc.n_models,
        )
    if doc.eps_total is not None and doc.eps_ionic is not None:
        line.update(
            eps_electronic=doc.eps_electronic.model_dump(exclude_none=True),
            eps_ionic=doc.eps_ionic.model_dump(exclude_none=True),
            eps_total=doc.eps_total.model_dump(exclude_none=True),
            ionic_model=doc.ionic_model,
            ionic_model_version=doc.ionic_model_version,
        )
        if doc.figure_of_merit is not None:
            line["figure_of_merit"] = doc.figure_of_merit
    return line


def train(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Training recipe (YAML: name, version, seeds, split_seed, and ModelConfig / "
            "TrainConfig fields under model: and train:), e.g. models/anisonet-mp-v3/recipe.yaml."
            " Default: the shipped default model's recipe for --target. Options below override.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Model name, the folder under --output-dir (default: the recipe's)."
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Model version (default: the recipe's).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Default: <data_dir>/models.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Training JSON(.gz); default: shared MP set.")
    ] = None,
    mul: Annotated[int | None, typer.Option(help="Irrep multiplicity.")] = None,
    lmax: Annotated[int | None, typer.Option(help="Highest rotational order.")] = None,
    layers: Annotated[int | None, typer.Option(help="Gated convolution layers.")] = None,
    output_irreps: Annotated[
        str | None, typer.Option("--output-kind", help="equivariant (0e+2e) or scalar (6x0e).")
    ] = None,
    atom_features: Annotated[
        str | None,
        typer.Option(
            "--atom-features",
            help=(
                "Add a pretrained potential's per-atom features to the input: chgnet-0.3.0 "
                "(invariant) or sevennet-0 (equivariant l = 0, 1, 2)."
            ),
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.")] = None,
    lr_decay: Annotated[float | None, typer.Option(help="Exponential LR factor per epoch.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Structures per step.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience in epochs.")] = None,
    seeds: Annotated[
        list[int] | None, typer.Option("--seed", help="One network per seed (ensemble).")
    ] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the 80/10/10 split.")] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="Stop resumably after S seconds.")
    ] = None,
    max_entries: Annotated[
        int | None, typer.Option(help="Use only the first N entries (smoke runs).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Tensor to learn: electronic (eps_inf), ionic (eps0) or total (default: the "
            "recipe's; without --config, electronic)."
        ),
    ] = None,
    readout: Annotated[
        str | None,
        typer.Option(
            help="mean, sum_volume, psd_sum_volume, psd_laminate_volume, psd_square_volume or "
            "psd_outer_volume."
        ),
    ] = None,
    loss: Annotated[str | None, typer.Option(help="mse, mse_log_eig or huber_log1p_eig.")] = None,
    born_weight: Annotated[
        float | None,
        typer.Option(
            "--born-weight",
            help="Weight of the auxiliary per-atom Born-charge loss on the structures with "
            "DFPT Born charges (0 = off; adds a Born head to the network).",
        ),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Train (or resume training) an equivariant dielectric model and write its model card.

    Without --config it trains the shipped default model's recipe for --target
    (models/anisonet-mp-v3/recipe.yaml; ionic and total: anisonet-mp-ionic-v1's) under the
    name my-anisonet.
    """
    from anisoscreen.commands.common import console, settings_from_options
    from anisoscreen.commands.progress import EpochCount, progress
    from anisoscreen.model.training.pipeline import train_model
    from anisoscreen.model.training.recipe import default_recipe, load_recipe

    settings = settings_from_options(device=device)
    if output_irreps not in (None, "equivariant", "scalar"):
        raise AnisoscreenError("--output-kind must be 'equivariant' or 'scalar'")
    base = load_recipe(config) if config is not None else default_recipe(target or "electronic")
    recipe = base.with_overrides(
        name=name,
        version=version,
        seeds=seeds or None,
        split_seed=split_seed,
        model={
            "mul": mul,
            "lmax": lmax,
            "num_layers": layers,
            "output": output_irreps,
            "atom_features": atom_features,
            "readout": readout,
            "target": target,
        },
        train={
            "lr": lr,
            "weight_decay": weight_decay,
            "lr_decay": lr_decay,
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "patience": patience,
            "time_limit": time_limit,
            "loss": loss,
            "born_weight": born_weight,
        },
    )
    data = data or settings.shared / "data" / "mp_dielectric_tensors.json.gz"
    folder = (output_dir or settings.data_dir / "models") / recipe.name

    members = len(recipe.seeds)

    def on_epoch(seed: int, rec: dict) -> None:
        epochs.epoch(seed, int(rec["epoch"]) + 1)  # the record's epoch counts from 0
        console.print(
            f"member {epochs.member(seed) + 1}/{members} (seed {seed}) "
            f"epoch {rec['epoch']:4d}  train {rec['train_loss']:.4f}  "
            f"val {rec['val_loss']:.4f}  lr {rec['lr']:.2e}  {rec['seconds']:.1f}s"
            + (
                f"  born train {rec['train_born_loss']:.4f} val {rec['val_born_loss']:.4f}"
                if "train_born_loss" in rec
                else ""
            )
        )

    # counted: epochs of all members (bar with rate and ETA; lines when not a terminal)
    with progress(f"training {members} member(s)", console) as report:
        epochs = EpochCount(report, list(recipe.seeds), recipe.train.max_epochs)
        result = train_model(
            data,
            folder,
            recipe.name,
            recipe.model,
            recipe.train,
            seeds=recipe.seeds,
            split_seed=recipe.split_seed,
            device=settings.device,
            max_entries=max_entries,
            progress=on_epoch,
            version=recipe.version,
        )
        if result["finished"]:
            epochs.finish()
    if not result["finished"]:
        console.print(f"stopped at epoch {result['epoch']} (time limit); run again to resume")
        return
    test = result["test"]
    console.print(
        f"test ({recipe.model.target}): eps_poly MAE {test['eps_poly_mae']:.3f}, "
        f"a_r MAE {_mae(test['anisotropy_ratio_mae'])}, "
        f"component MAE {test['component_mae']:.3f}, MAE_ten {test['tensor_mae']:.3f} -> {folder}"
    )


def evaluate(
    model: ModelOption = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Data JSON(.gz); default: shared MP set.")
    ] = None,
    split_seed: Annotated[
        int | None, typer.Option(help="Split seed; default: the model's.")
    ] = None,
    subset: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    device: DeviceOption = None,
    parity_plot: Annotated[
        Path | None, typer.Option("--parity-plot", help="Write eps_poly / a_r parity plots here.")
    ] = None,
    log_scale: Annotated[
        bool | None,
        typer.Option(
            "--log-scale/--linear-scale",
            help="Log-log parity axes; default: log for ionic and total models.",
        ),
    ] = None,
    member: Annotated[
        list[int] | None,
        typer.Option("--member", help="Evaluate only these ensemble members (0-based)."),
    ] = None,
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write the full result as JSON here.")
    ] = None,
    experimental: Annotated[
        bool,
        typer.Option(
            "--experimental",
            help="Compare the model and MP's DFPT with measured refractive indices "
            "(the committed refractiveindex.info table) instead of a data split.",
        ),
    ] = False,
    ionic_model: Annotated[
        str | None,
        typer.Option(
            "--ionic-model",
            help="Evaluate the model set: --model (electronic), this ionic model and their "
            "sum against DFPT eps_total (MAE_ten for all three).",
        ),
    ] = None,
    refine_charges: Annotated[
        str | None,
        typer.Option(
            "--refine-charges",
            help="With --ionic-model, also score the refine stage of run-screen --refine-top "
            "with these Born charges (predicted, dfpt or nominal) on every structure of the "
            "split under 40 sites: force constants for each, cached in the results store "
            "(SevenNet-l3i5: 31 minutes for the 256 test structures on 2 cores).",
        ),
    ] = None,
    refine_potential: Annotated[
        str | None,
        typer.Option(
            "--refine-potential",
            help="Potential of --refine-charges (sevennet-0, sevennet-l3i5, sevennet-mf-0; "
            "default: the refine stage's for those charges).",
        ),
    ] = None,
) -> None:
    """Evaluate a model on a split of the data: MAE of eps_poly, a_r, components and MAE_ten.

    A single model also gets the error slices: per dimensionality, vacuum-separated layers
    (empty slab wider than 6 A), the eps_poly > 8 tail, and the ensemble calibration.
    """
    from anisoscreen.commands.common import console, settings_from_options
    from anisoscreen.commands.progress import progress
    from anisoscreen.model.training.evaluate import evaluate_model, evaluate_model_set
    from anisoscreen.screening.descriptors import dimensionality

    settings = settings_from_options(model=model, device=device)
    data = data or settings.shared / "data" / "mp_dielectric_tensors.json.gz"
    if experimental:
        _evaluate_experimental(settings, data, parity_plot, json_output)
        return
    if ionic_model and (split_seed is not None or member):
        raise AnisoscreenError("--split-seed and --member apply to a single model")
    refine = None
    if refine_charges is not None or refine_potential is not None:
        if not ionic_model:
            raise AnisoscreenError("--refine-charges and --refine-potential need --ionic-model")
        from anisoscreen.screening.ionic_refine import IonicRefineMaker

        chosen = {"potential": refine_potential} if refine_potential else {}
        refine = IonicRefineMaker.for_charges(refine_charges or "nominal", **chosen)
    console.print(f"evaluating {settings.model} on the {subset} split")
    cleaned = None
    if refine is not None:  # read once: the model set and the refined structures share them
        from anisoscreen.model.training.dataset import clean_entries, load_entries

        cleaned = clean_entries(load_entries(data))[0]
    # counted: the structures predicted (bar with rate and ETA; lines when not a terminal)
    with progress("evaluating", console) as report:
        if ionic_model:
            results = evaluate_model_set(
                settings.model,
                ionic_model,
                data,
                settings.data_dir,
                subset,
                settings.device,
                progress=report,
                cleaned=cleaned,
            )
        else:
            results = {
                "model": evaluate_model(
                    settings.model,
                    data,
                    settings.data_dir,
                    subset,
                    split_seed,
                    settings.device,
                    members=member or None,
                    dimensionality=dimensionality,
                    progress=report,
                )
            }
    if refine is not None:
        from anisoscreen.screening.refined_evaluation import refine_model_set

        assert cleaned is not None
        with progress("refining eps0", console) as report:
            results = refine_model_set(results, refine, cleaned, progress=report)
    for key, result in results.items():
        if parity_plot is not None:
            from anisoscreen.report.figures import parity_from_arrays

            path = parity_plot
            if len(results) > 1:
                path = parity_plot.with_name(f"{parity_plot.stem}-{key}{parity_plot.suffix}")
            parity_from_arrays(
                result["predicted"],
                result["reference"],
                path,
                label=f"DFPT (MP) eps_{result['target']}",
                log_scale=result["target"] != "electronic" if log_scale is None else log_scale,
            )
        which = f", members {result['members']}" if member else ""
        _print_metrics(console, result, f"{which} on the {subset} split")
    if json_output is not None:
        from anisoscreen.model.training.evaluate import summary as without_arrays

        summary = {key: without_arrays(result) for key, result in results.items()}
        json_output.write_text(
            json.dumps(summary["model"] if not ionic_model else summary, indent=1)
        )


def _evaluate_experimental(
    settings, data: Path, parity_plot: Path | None, json_output: Path | None
):
    """``evaluate --experimental``: model and DFPT against measured indices, side by side."""
    from rich.table import Table

    from anisoscreen.commands.common import console
    from anisoscreen.model.experimental import compare

    oxides = settings.shared / "data" / "mp_candidates_oxides.json.gz"
    result = compare(settings.model, data, oxides, settings.device, settings.data_dir)
    table = Table(
        title=f"{result['model']} and MP DFPT against experiment ({len(result['rows'])} "
        "crystals, refractiveindex.info)"
    )
    for column in ("crystals", "source", "n", "MAE n_o", "MAE n_e", "MAE n (biaxial)",
                   "MAE n", "MAE Δn", "Δn sign right", "MAE a_r"):  # fmt: skip
        table.add_column(column)

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    for label, summary in result["summary"].items():
        for source, name in (("model", "model"), ("dft", "MP DFPT")):
            m = summary[source]
            if not m["n"]:
                table.add_row(label, name, "0", *["—"] * 7)
                continue
            axes = m["mae_n_per_axis"]
            biaxial = [axes[a] for a in ("alpha", "beta", "gamma") if a in axes]
            table.add_row(
                label,
                name,
                str(m["n"]),
                number(axes.get("o")),
                number(axes.get("e")),
                number(sum(biaxial) / len(biaxial) if biaxial else None),
                number(m["mae_n"]),
                number(m["mae_dn"]),
                f"{m['sign_right']}/{m['sign_total']}",
                number(m["mae_ar"]),
            )
    console.print(table)
    console.print(
        f"{len(result['unmatched'])} measured crystals not compared (no matching structure in "
        "the shared MP sets, absorbing, or data too short); see the JSON output."
    )
    if parity_plot is not None:
        from anisoscreen.report.figures import experimental_parity

        experimental_parity(result["rows"], parity_plot)
        console.print(f"parity figure -> {parity_plot}")
    if json_output is not None:
        json_output.write_text(json.dumps(result, indent=1, ensure_ascii=False))


def _mae(value: float | None) -> str:
    """An MAE to three decimals; ``-`` where the quantity is undefined (a_r of eps0)."""
    return "-" if value is None else f"{value:.3f}"


def _print_metrics(console: Console, result: dict[str, Any], where: str) -> None:
    """One evaluation result as a table: all, per crystal system, then the error slices."""
    from rich.table import Table

    table = Table(
        title=f"{result['model']} ({result['target']}){where} (n={result['metrics']['n']})"
    )
    for column in ("slice", "n", "eps_poly MAE", "a_r MAE", "component MAE", "MAE_ten"):
        table.add_column(column)
    slices = result.get("slices") or {}
    rows = {
        "all": result["metrics"],
        **result["metrics"].get("per_crystal_system", {}),
        **slices.get("by_dimensionality", {}),
    }
    if slices:
        rows["layered, gap > 6 A"] = slices["layered_gap"]
        rows["eps_poly > 8"] = slices["eps_poly_tail"]
        if slices.get("exfoliated", {}).get("n"):
            rows["exfoliated slice"] = slices["exfoliated"]
        rows.update(slices.get("by_band_gap", {}))
        if slices.get("without_gap"):
            rows["all, gaps hidden"] = slices["without_gap"]
    for label, m in rows.items():
        if not m.get("n"):
            continue
        table.add_row(
            label,
            str(m["n"]),
            f"{m['eps_poly_mae']:.3f}",
            _mae(m["anisotropy_ratio_mae"]),
            f"{m['component_mae']:.3f}",
            f"{m['tensor_mae']:.3f}",
        )
    console.print(table)
    for quantity, c in (slices.get("calibration") or {}).items():
        calibrated = c.get("coverage_2sigma_calibrated")
        console.print(
            f"calibration {quantity}: Spearman(spread, |error|) = "
            f"{c['spearman_spread_vs_error']:.2f}, "
            f"coverage of +-2 sigma = {c['coverage_2sigma']:.2f} raw"
            + ("" if calibrated is None else f", {calibrated:.2f} calibrated")
        )
