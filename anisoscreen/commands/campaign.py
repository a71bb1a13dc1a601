"""``anisoscreen campaign start|step|status|simulate``: closed-loop discovery campaigns.

Only argument parsing and printing; the work is in :mod:`anisoscreen.campaign`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from anisoscreen.commands.common import DataDirOption, StoreOption, console, settings_from_options

__all__ = ["register"]

campaign_app = typer.Typer(
    help="Closed-loop discovery: pick by uncertainty, validate by DFT, fine-tune, repeat.",
    no_args_is_help=True,
)

StrategyOption = Annotated[
    str,
    typer.Option("--strategy", help="greedy, ucb, exploration, random or thompson."),
]
ObjectiveOption = Annotated[
    str,
    typer.Option(
        "--objective",
        help="The screening objectives: ar, eps-poly, birefringence, or with an ionic model "
        "ar-total, eps-total, fom (E_g x eps_poly(total)).",
    ),
]
KappaOption = Annotated[float, typer.Option("--kappa", help="UCB: mean + kappa * sigma.")]
GroupByOption = Annotated[
    str,
    typer.Option("--group-by", help="Diversity guard groups: prototype, composition or none."),
]
MaxPerGroupOption = Annotated[
    int, typer.Option("--max-per-group", min=0, help="Most picks per group per batch (0: off).")
]
EpochsOption = Annotated[
    int, typer.Option("--epochs", min=0, help="Fine-tuning epochs per member (0: no fine-tune).")
]
ReplayOption = Annotated[
    int, typer.Option("--replay", min=0, help="Old training entries replayed when fine-tuning.")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Starting model (default: the settings' model).")
]
LearnerOption = Annotated[
    str,
    typer.Option(
        "--learner",
        help="finetune: fine-tune the ensemble on the labels each round; gp: keep it frozen "
        "and refit a residual GP on its embeddings (no re-prediction).",
    ),
]
DiversityOption = Annotated[
    str,
    typer.Option(
        "--diversity",
        help="group: the --max-per-group guard; embedding: also spread a batch over the "
        "embedding space.",
    ),
]
CarrySiblingsOption = Annotated[
    bool,
    typer.Option(
        "--carry-siblings/--no-carry-siblings",
        help="gp learner: carry each DFT label by the laminate law to the other paddings of "
        "the same layer stack in the pool, and spend no DFT on them.",
    ),
]
GpGeometryOption = Annotated[
    bool,
    typer.Option(
        "--gp-geometry/--no-gp-geometry",
        help="Add the vacuum geometry to the GP's and the diversity's coordinates.",
    ),
]


def start(
    name: Annotated[
        str,
        typer.Argument(
            help="Campaign name (its key in the store): 1-64 letters, digits, '.', '_', '-'."
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option("--source", help="Pool: stored candidates of this source (default: all)."),
    ] = None,
    objective: ObjectiveOption = "ar",
    strategy: StrategyOption = "ucb",
    kappa: KappaOption = 1.5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="DFT validations picked per round.")
    ] = 20,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Most DFT validations.")] = 100,
    group_by: GroupByOption = "prototype",
    max_per_group: MaxPerGroupOption = 3,
    epochs: EpochsOption = 3,
    replay: ReplayOption = 200,
    learner: LearnerOption = "finetune",
    diversity: DiversityOption = "group",
    gp_geometry: GpGeometryOption = False,
    carry_siblings: CarrySiblingsOption = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds random and Thompson picks and fine-tuning.")
    ] = 0,
    model: ModelOption = None,
    ionic_model: Annotated[
        str | None,
        typer.Option(
            "--ionic-model",
            help="Ionic model of the set (default: the settings'), for ar-total, eps-total, fom.",
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Run validations in this process, not a queue.")
    ] = False,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="jobflow-remote project (default: the config's)."),
    ] = None,
    worker: Annotated[
        str | None,
        typer.Option("--worker", "-w", help="jobflow-remote worker that runs VASP."),
    ] = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a campaign and predict its pool with the starting model."""
    from anisoscreen.campaign.finetune import FinetuneConfig
    from anisoscreen.campaign.rounds import start_campaign
    from anisoscreen.schemas import CampaignDoc
    from anisoscreen.screening.objectives import needs_ionic

    settings = settings_from_options(store, data_dir)
    doc = CampaignDoc(
        name=name,
        source=source,
        objective=objective,
        strategy=strategy,
        kappa=kappa,
        batch_size=batch_size,
        budget=budget,
        group_by=group_by,
        max_per_group=max_per_group,
        seed=seed,
        base_model=model or settings.model,
        current_model=model or settings.model,
        ionic_model=ionic_model or (settings.ionic_model if needs_ionic(objective) else None),
        local=local,
        project=project,
        worker=worker,
        finetune=FinetuneConfig(epochs=max(epochs, 1), replay=replay, seed=seed).to_dict()
        if epochs
        else {},
        learner=learner,
        diversity=diversity,
        gp_geometry=gp_geometry,
        carry_siblings=carry_siblings,
    )
    from anisoscreen.commands.progress import progress

    with progress("predicting pool", console) as report:
        pool = start_campaign(doc, settings, count=report)
    console.print(f"campaign {name}: {pool} candidates predicted with {doc.current_model}")


def step(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for the validations (0: return)."),
    ] = 0.0,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Advance one round: select, submit, collect, fine-tune, re-predict (resumable)."""
    from anisoscreen.campaign.rounds import step_campaign

    settings = settings_from_options(store, data_dir)
    outcome = step_campaign(name, settings, wait=wait, progress=console.print)
    console.print(outcome)


def status(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rounds, picks, job states, model versions and the best found so far."""
    from anisoscreen.campaign.rounds import load_campaign

    settings = settings_from_options(store, data_dir)
    doc = load_campaign(name, settings)
    console.print(
        f"campaign {doc.name}: {doc.strategy} on {doc.objective} ({doc.learner} learner), "
        f"{doc.n_picked}/{doc.budget} validations, model {doc.current_model}"
    )
    table = Table("round", "stage", "model", "picks", "states", "best DFT", "new model")
    best = None
    for r in doc.rounds:
        observed = [p.observed for p in r.picks if p.observed is not None]
        states: dict[str, int] = {}
        for p in r.picks:
            states[p.state] = states.get(p.state, 0) + 1
        if observed:
            best = max([*observed, *([best] if best is not None else [])])
        table.add_row(
            str(r.index),
            r.stage,
            r.model,
            ", ".join(p.material_id for p in r.picks),
            ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
            f"{max(observed):.3f}" if observed else "-",
            r.new_model or "-",
        )
    console.print(table)
    console.print(
        f"best {doc.objective} found: {best:.3f}" if best is not None else "no labels yet"
    )
    if doc.rounds and doc.rounds[-1].carried:
        carried = doc.rounds[-1].carried
        console.print(
            f"{len(carried)} candidate(s) given by the laminate law from a sibling's label "
            f"(no DFT spent): {', '.join(carried[:10])}{', ...' if len(carried) > 10 else ''}"
        )


def simulate(
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="Oracle JSON(.gz): [{material_id, structure, dielectric_tensor}] "
            "(eps_electronic, as in the shared MP DFPT set, is accepted too). The shared "
            'set itself is one; python -c "from anisoscreen.campaign.simulate import '
            "build_oracle, write_oracle; write_oracle(build_oracle(PATH), 'oracle.json.gz')\" "
            "writes the part the shipped model never trained on.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report JSON to write.")],
    strategy: StrategyOption = "ucb",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds to simulate.")] = 3,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Labels revealed (picks) per round.")
    ] = 10,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds random and Thompson picks and fine-tuning.")
    ] = 0,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="A hit is a pick in the true top-k.")
    ] = 10,
    objective: ObjectiveOption = "ar",
    kappa: KappaOption = 1.5,
    group_by: GroupByOption = "prototype",
    max_per_group: MaxPerGroupOption = 3,
    epochs: EpochsOption = 2,
    replay: ReplayOption = 50,
    learner: LearnerOption = "finetune",
    diversity: DiversityOption = "group",
    gp_geometry: GpGeometryOption = False,
    carry_siblings: CarrySiblingsOption = False,
    model: ModelOption = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Figure of hits against DFT calculations.")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the loop offline against an oracle file: labels revealed only when picked."""
    from anisoscreen.campaign.oracle import read_oracle_records

    records = read_oracle_records(labels)  # a wrong file fails before the model loads
    from anisoscreen.campaign.finetune import FinetuneConfig
    from anisoscreen.campaign.simulate import SimulationConfig, load_oracle
    from anisoscreen.campaign.simulate import simulate as run_simulation

    settings = settings_from_options(None, data_dir)
    _warn_training_overlap(
        {str(r["material_id"]) for r in records}, model or settings.model, settings
    )
    config = SimulationConfig(
        strategy=strategy,
        rounds=rounds,
        batch_size=batch_size,
        seed=seed,
        top_k=top_k,
        objective=objective,
        kappa=kappa,
        group_by=group_by,
        max_per_group=max_per_group,
        model=model or settings.model,
        finetune=FinetuneConfig(epochs=epochs, replay=replay) if epochs else None,
        learner=learner,
        diversity=diversity,
        gp_geometry=gp_geometry,
        carry_siblings=carry_siblings,
    )
    report = run_simulation(
        load_oracle(labels), config, settings.shared, settings.data_dir, progress=console.print
    )
    output.write_text(json.dumps(report, indent=2))
    if plot is not None:
        from anisoscreen.report.campaign import plot_hits

        plot_hits([report], plot)
    console.print(
        f"{strategy}: {report['total_hits']} hits of the true top-{report['top_k']} in "
        f"{len(report['rounds'])} rounds of {batch_size} (pool {report['pool_size']}), best "
        f"{objective} {report['best']:.3f} of {report['best_possible']:.3f}, "
        f"{report['seconds']:.0f} s -> {output}"
    )


def _warn_training_overlap(ids: set[str], model: str, settings) -> None:
    """Warn when oracle materials were in the starting model's training split."""
    import warnings

    from anisoscreen.errors import AnisoscreenError, AnisoscreenWarning
    from anisoscreen.model.checkpoint import resolve_model_path
    from anisoscreen.validation.imports import training_split_ids

    try:
        path = Path(resolve_model_path(model, settings.data_dir))
    except AnisoscreenError:
        return  # the simulation reports a missing model itself
    seen = ids & training_split_ids(path if path.is_dir() else path.parent, settings.shared)
    if seen:
        warnings.warn(
            f"{len(seen)} of {len(ids)} oracle materials were in the training split of {model} "
            "(e.g. " + ", ".join(sorted(seen)[:3]) + "): the model has seen their labels, so "
            "hits on them flatter it; build the oracle from its validation and test splits "
            "(anisoscreen.campaign.simulate.build_oracle)",
            AnisoscreenWarning,
            stacklevel=2,
        )


def register(app: typer.Typer) -> None:
    """Add ``campaign start|step|status|simulate`` to ``app``."""
    campaign_app.command()(start)
    campaign_app.command()(step)
    campaign_app.command()(status)
    campaign_app.command()(simulate)
    app.add_typer(campaign_app, name="campaign")
