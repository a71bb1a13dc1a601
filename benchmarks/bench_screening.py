"""End-to-end screening of the whole shared pool (3,688 MP structures), cold and repeated.

    python benchmarks/bench_screening.py [--model NAME] [--pool PATH] [--cli] [--output JSON]

With ``--cli`` it measures, in one sitting and each in a fresh process as a user runs them:
``anisoscreen predict POOL --output pool.jsonl``, then ``anisoscreen run-screen --source POOL
--include-known`` on a fresh data folder (cold) and again on the same folder (repeated),
with the network forward timed inside the run-screen processes; it prints cold / predict,
repeat / cold and the forward share of the cold wall time, the stage times of both runs, the
load average around each command, and CPU seconds: of each command (its worker processes
included), of each stage (``stage_cpu``: the process's threads, and the worker processes
that ended in it) and of the process while a forward ran (``forward_cpu_seconds``), and the
garbage collections of each run-screen process (``gc_seconds``, ``gc_collections``: by
generation). The timers go in before the command runs; the forward's, when the command first
imports the inference module (so the timing does not import torch earlier than the command).
``--keep DIR`` leaves the stores behind, e.g. to compare two versions' results. Without
``--cli`` (below) the flow runs in this process.

Runs the ScreeningMaker flow (load, filter, predict + descriptors, rank, store) with
jobflow on a fresh embedded store, then again on the same store (everything reused), and
measures the descriptor rate (dimensionality + crystal system) on its own, over the pool's
cells under 40 sites (all of them unless ``--dimensionality-n``) with the default process
pool (one process per core). The prediction stage's time includes its descriptors
(``prediction_descriptors``); ranking then only ranks. The known-dielectric filter is
switched off so that every structure that passes the physical criteria is predicted.
Results print as JSON, with the share of the cold run's wall time spent in the network
forward (``cold_forward_share``: the time inside ``Predictor.predict_graphs``) and the repeat
over cold ratio.
"""

from __future__ import annotations

import argparse
import gc
import importlib.abc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from _pool import pool_candidates, pool_path
from jobflow import run_locally

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.schemas import ScreeningRunDoc
from anisoscreen.screening import descriptors as ranking
from anisoscreen.screening.flows import ScreeningMaker
from anisoscreen.settings import DEFAULT_MODEL, get_settings
from anisoscreen.store import ResultsStore, build_job_store


def _children_cpu() -> float:
    """CPU seconds of this process's ended (and waited-for) child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StageTimer:
    """Wall and CPU seconds of each jobflow job (stage) run in this process.

    ``cpu_seconds`` is this process's CPU time (all its threads) and ``children_cpu_seconds``
    that of the worker processes that ended during the stage (the descriptor pool).
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def installed(self) -> Iterator[None]:
        from jobflow.core.job import Job

        original = Job.run

        def timed(job, *args, **kwargs):
            wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
            try:
                return original(job, *args, **kwargs)
            finally:
                self.stages[job.name] = {
                    "seconds": time.perf_counter() - wall,
                    "cpu_seconds": time.process_time() - cpu,
                    "children_cpu_seconds": _children_cpu() - children,
                }

        Job.run = timed  # type: ignore[method-assign]
        try:
            yield
        finally:
            Job.run = original  # type: ignore[method-assign]


class ForwardTimer:
    """Wall time spent in the network forward (``Predictor.predict_graphs``), in-process.

    ``cpu_seconds``: this process's CPU time (every thread) while a forward ran.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.calls = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Time every forward while in the block; the timing is put in when the inference
        module is first imported (not before: importing it imports torch, which the command
        may do later or never)."""
        patched: list[tuple[type, Callable]] = []  # (class, its untimed method)

        def patch(module: ModuleType) -> None:
            predictor = module.Predictor
            original = predictor.predict_graphs

            def timed(model, *args, **kwargs):
                start, cpu = time.perf_counter(), time.process_time()
                try:
                    return original(model, *args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start
                    self.cpu_seconds += time.process_time() - cpu
                    self.calls += 1

            predictor.predict_graphs = timed
            patched.append((predictor, original))

        try:
            with _after_import("anisoscreen.model.inference", patch):
                yield
        finally:
            for predictor, original in patched:
                predictor.predict_graphs = original


class GarbageTimer:
    """Seconds and number of garbage collections in this process, by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    @contextmanager
    def installed(self) -> Iterator[None]:
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)


@contextmanager
def _after_import(name: str, callback: Callable[[ModuleType], None]) -> Iterator[None]:
    """Call ``callback(module)`` once module ``name`` is imported (now, if it already is)."""
    if name in sys.modules:
        callback(sys.modules[name])
        yield
        return

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is not None and spec.loader is not None:
                execute = spec.loader.exec_module

                def exec_then_call(module: ModuleType) -> None:
                    execute(module)
                    callback(module)

                spec.loader.exec_module = exec_then_call  # type: ignore[method-assign]
            return spec

    hook = Hook()
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)


def run_once(maker: ScreeningMaker, settings) -> tuple[float, ScreeningRunDoc, float]:
    """Wall seconds of one flow run, its run document and the seconds in the forward."""
    timer = ForwardTimer()
    start = time.perf_counter()
    with timer.installed():
        flow = maker.make()
        run_locally(
            flow, store=build_job_store(settings), create_folders=False, ensure_success=True
        )
    seconds = time.perf_counter() - start
    with ResultsStore(settings) as results:
        runs = sorted(results.query(ScreeningRunDoc), key=lambda r: r.finished_at)
    return seconds, runs[-1], timer.seconds


FORWARD_TIMED_CLI = """
import atexit, json, sys
sys.path.insert(0, {bench!r})
from bench_screening import ForwardTimer, GarbageTimer, StageTimer
timer, stages, garbage = ForwardTimer(), StageTimer(), GarbageTimer()
contexts = [timer.installed(), stages.installed(), garbage.installed()]  # held: see below
for context in contexts:  # (a context collected as garbage would uninstall its timer)
    context.__enter__()
atexit.register(lambda: json.dump(
    {{"forward_seconds": timer.seconds, "forward_cpu_seconds": timer.cpu_seconds,
      "forward_calls": timer.calls, "stage_cpu": stages.stages,
      "gc_seconds": garbage.seconds, "gc_collections": garbage.collections}}, open({out!r}, "w")
))
try:  # the console script's entry (older versions: main)
    from anisoscreen.cli import run as entry
except ImportError:
    from anisoscreen.cli import main as entry
sys.argv = ["anisoscreen", *sys.argv[1:]]
entry()
"""


def _command(
    args: list[str], forward_file: Path | None = None, accept: tuple[int, ...] = (0,)
) -> dict:
    """Run ``anisoscreen ARGS`` in a fresh process: wall seconds, load average, forward time.

    It enters as the console script does (``anisoscreen.cli.run``: no interpreter teardown),
    or by ``main`` in a version without it, for comparisons. ``accept``: exit codes that are
    not failures (``predict`` exits 3 when some inputs could not be predicted).
    """
    if forward_file is None:
        code = (
            "import sys\ntry:\n    from anisoscreen.cli import run as entry\n"
            "except ImportError:\n    from anisoscreen.cli import main as entry\n"
            "sys.argv[0] = 'anisoscreen'\nentry()"
        )
    else:
        bench = str(Path(__file__).resolve().parent)
        code = FORWARD_TIMED_CLI.format(bench=bench, out=str(forward_file))
    load_before = os.getloadavg()
    start, children = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    cpu_seconds = _children_cpu() - children
    if done.returncode not in accept:
        raise RuntimeError(f"anisoscreen {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    out = {
        "command": "anisoscreen " + " ".join(args),
        "exit_code": done.returncode,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    if forward_file is not None:
        out.update(json.loads(forward_file.read_text()))
    return out


def run_cli(pool: str, model: str, keep: Path | None = None) -> dict:
    """predict, run-screen cold and run-screen repeated, each a fresh process, one sitting.

    ``keep``: a folder to run in and leave behind (the screen's store and the predictions),
    e.g. to compare two versions' stores; by default a temporary one.
    """
    result: dict = {"pool": Path(pool).name, "model": model, "mode": "cli"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if keep is None else keep
        folder.mkdir(parents=True, exist_ok=True)
        predicted = folder / "pool.jsonl"
        result["predict"] = _command(
            [
                "predict",
                pool,
                "--output",
                str(predicted),
                "--model",
                model,
            ],
            accept=(0, 3),
        )
        result["predict"]["n_lines"] = sum(1 for _ in predicted.open())
        data_dir = folder / "screen"
        screen = [
            "run-screen",
            "--source",
            pool,
            "--include-known",
            "--model",
            model,
            "--data-dir",
            str(data_dir),
        ]
        result["cold"] = _command(screen, folder / "cold_forward.json")
        result["repeat"] = _command(screen, folder / "repeat_forward.json")
        with ResultsStore(get_settings(data_dir=data_dir)) as results:
            runs = sorted(results.query(ScreeningRunDoc), key=lambda r: r.finished_at)
        for name, run in zip(("cold", "repeat"), runs, strict=True):
            result[name].update(
                stage_seconds=run.timings,
                n_predicted=run.n_predicted,
                n_reused=run.n_reused,
                n_candidates=run.n_candidates,
            )
    cold, repeat, predict = result["cold"], result["repeat"], result["predict"]
    result.update(
        cold_over_predict=cold["seconds"] / predict["seconds"],
        repeat_over_cold=repeat["seconds"] / cold["seconds"],
        cold_forward_share=cold["forward_seconds"] / cold["seconds"],
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pool", default=None, help="default: the shared oxide pool")
    parser.add_argument(
        "--dimensionality-n", type=int, default=None, help="structures (default: all)"
    )
    parser.add_argument(
        "--dimensionality-only", action="store_true", help="measure only the dimensionality rate"
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="also the single-process rate per CPU second (robust on a busy machine)",
    )
    parser.add_argument(
        "--cli",
        action="store_true",
        help="predict, cold and repeated run-screen as commands, in one sitting",
    )
    parser.add_argument("--output", default=None, help="also write the results JSON here")
    parser.add_argument(
        "--keep", default=None, help="with --cli: run in this (new) folder and keep it"
    )
    args = parser.parse_args()
    pool = str(pool_path(args.pool))
    if args.cli:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        keep = Path(args.keep) if args.keep else None
        result = {"started": started, **run_cli(pool, args.model, keep)}
        print(json.dumps(result, indent=2))
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        return
    result: dict = {"pool": Path(pool).name}

    structures = [c.structure for c in pool_candidates(path=pool)]
    sample = {str(i): s for i, s in enumerate(structures[: args.dimensionality_n])}
    start = time.perf_counter()
    ranking.descriptors(sample)
    seconds = time.perf_counter() - start
    result.update(
        dimensionality_n=len(sample),
        dimensionality_processes=os.cpu_count(),
        dimensionality_seconds=seconds,
        dimensionality_structures_per_s=len(sample) / seconds,
    )
    if args.cpu_time:
        start = time.process_time()
        ranking.descriptors(sample, processes=1)
        result["dimensionality_structures_per_cpu_s"] = len(sample) / (time.process_time() - start)
    if args.dimensionality_only:
        print(json.dumps(result, indent=2))
        return

    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(data_dir=tmp)
        maker = ScreeningMaker.from_options(
            source=pool,
            model=args.model,
            criteria=ScreeningCriteria(exclude_known_dielectrics=False),
            store={"data_dir": tmp},
        )
        cold, run, forward = run_once(maker, settings)
        result.update(
            cold_seconds=cold,
            cold_forward_seconds=forward,
            cold_forward_share=forward / cold,
            n_input=run.n_input,
            removed_by=run.removed_by,
            n_predicted=run.n_predicted,
            cold_stage_seconds=run.timings,
            cold_descriptors_structures_per_s=run.n_predicted
            / max(run.timings.get("prediction_descriptors", 0.0), 1e-9),
        )
        repeat, run, forward = run_once(maker, settings)
        result.update(
            repeat_seconds=repeat,
            repeat_forward_seconds=forward,
            repeat_over_cold=repeat / cold,
            repeat_reused=run.n_reused,
            repeat_stage_seconds=run.timings,
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
