"""Time of real campaign rounds on a 3,000-structure pool (batch 20), DFT stood in for.

    python benchmarks/bench_campaign_round.py [--learner gp|finetune] [--model anisonet-mp-v3]
        [--pool 3000] [--batch-size 20] [--rounds 2] [--gp-geometry] [--carry-siblings]
        [--max-per-group 3] [--diversity group|embedding] [--json benchmarks/results/...json]

The pool is the cleaned shared data set plus exfoliated copies of its layered entries, cut
to ``--pool`` structures, stored as candidates in a fresh embedded store (a temporary
folder). ``campaign start`` (:func:`~anisoscreen.campaign.rounds.start_campaign`) predicts the
pool once; then each ``campaign step`` (:func:`~anisoscreen.campaign.rounds.step_campaign`,
``--local``) is one round: select, record and run the picks' validation flows, collect,
learn, re-predict where the learner needs it. The DFT is the stand-in
(:class:`~anisoscreen.campaign.standin.OracleRunner`: the known labels stored as finished
DFPT results at once), so a step's time excludes the DFT and nothing else. Reported: storing
the pool, the start (the one prediction pass) and every step's wall and CPU seconds (CPU:
this process, all its threads), with the machine's 1-minute load average before and after
each, since wall time on a shared machine depends on the other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from anisoscreen.campaign import local_run
from anisoscreen.campaign.rounds import load_campaign, start_campaign, step_campaign
from anisoscreen.campaign.simulate import build_oracle, build_regime_oracle
from anisoscreen.campaign.standin import OracleRunner
from anisoscreen.model.checkpoint import load_model, resolve_model_path
from anisoscreen.schemas import CampaignDoc, CandidateDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float], load: float) -> dict[str, float]:
    wall, cpu = _clock()
    return {
        "wall_s": round(wall - start[0], 1),
        "cpu_s": round(cpu - start[1], 1),
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learner", default="gp", choices=["gp", "finetune"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gp-geometry", action="store_true")
    parser.add_argument("--carry-siblings", action="store_true")
    parser.add_argument("--max-per-group", type=int, default=3)
    parser.add_argument("--diversity", default="group", choices=["group", "embedding"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    shared = get_settings()
    name = args.model or shared.model
    model = load_model(name, shared.data_dir)
    data = shared.shared / "data" / model.metadata["data_file"]
    oracle = build_oracle(data, model.metadata["split_seed"], ("train", "validation", "test"))
    if len(oracle) < args.pool:
        cached = Path("runs/ood/regime-layered.json")  # from benchmarks/ood_start.py, if run
        indices = json.loads(cached.read_text())["indices"] if cached.exists() else None
        layered = build_regime_oracle(data, "layered", indices)
        copies = [e for e in layered if "-exf" in e.material_id]
        oracle += copies[: args.pool - len(oracle)]
    oracle = oracle[: args.pool]
    model_path = str(resolve_model_path(name, shared.data_dir))

    with tempfile.TemporaryDirectory(prefix="anisoscreen-round-") as tmp:
        os.environ["ANISOSCREEN_DATA_DIR"] = str(Path(tmp) / "data")
        settings = get_settings(data_dir=Path(tmp) / "data")
        start, load = _clock(), os.getloadavg()[0]
        with ResultsStore(settings) as results:
            results.upsert(
                [CandidateDoc.from_structure(e.structure, "bench", e.material_id) for e in oracle]
            )
        stored = _since(start, load)
        print(f"pool of {len(oracle)} stored: {stored['wall_s']} s wall", flush=True)
        runner = OracleRunner({e.material_id: e.dielectric_tensor for e in oracle})
        local_run.run_local_validation = runner  # type: ignore[assignment]  # the DFT stand-in
        doc = CampaignDoc(
            name="bench",
            source="bench",
            strategy="ucb",
            batch_size=args.batch_size,
            budget=args.batch_size * args.rounds,
            base_model=model_path,
            current_model=model_path,
            local=True,
            learner=args.learner,
            gp_geometry=args.gp_geometry,
            carry_siblings=args.carry_siblings,
            max_per_group=args.max_per_group,
            diversity=args.diversity,
            finetune={"epochs": 3, "replay": 200} if args.learner == "finetune" else {},
        )
        start, load = _clock(), os.getloadavg()[0]
        predicted = start_campaign(doc, settings)
        started = _since(start, load)
        print(f"start: {predicted} predicted, {started['wall_s']} s wall", flush=True)
        steps = []
        for _ in range(args.rounds):
            start, load = _clock(), os.getloadavg()[0]
            outcome = step_campaign("bench", settings, progress=lambda line: None)
            steps.append({**_since(start, load), "outcome": outcome})
            print(f"step: {outcome}; {steps[-1]['wall_s']} s wall", flush=True)
        final = load_campaign("bench", settings)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "learner": args.learner,
        "model": name,
        "members": len(model.networks),
        "pool": predicted,
        "batch_size": args.batch_size,
        "gp_geometry": args.gp_geometry,
        "carry_siblings": args.carry_siblings,
        "max_per_group": args.max_per_group,
        "diversity": args.diversity,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "store_pool": stored,
        "start_prediction_pass": started,
        "steps": steps,
        "sigma_scale": [r.sigma_scale for r in final.rounds],
        "validations_run": len(runner.calls),
        "one_round_wall_s": max(s["wall_s"] for s in steps),
        "one_round_cpu_s": max(s["cpu_s"] for s in steps),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
