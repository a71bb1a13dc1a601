"""What the command's end costs: ``anisoscreen predict`` entered by ``cli.run`` and by ``cli.main``.

    python benchmarks/bench_exit.py [--structures 20] [--repeats 3] [--output JSON]

``cli.run`` is the console script's entry: it ends the process without interpreter teardown
once torch is loaded (:mod:`anisoscreen.process_end`); ``cli.main`` ends by ``sys.exit``, so
Python tears down torch and the rest. Each repeat predicts the first ``--structures`` cells of
the shared pool (default model) in a fresh process per entry, the two entries alternating, and
also records when the command's own work ended (an exit handler registered before it starts
runs after it), so that the time from there to the process's end is the end's own cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pool import pool_candidates

ENTRY = """
import atexit, sys, time
atexit.register(lambda: open({mark!r}, "w").write(repr(time.time())))
from anisoscreen.cli import {entry} as entry
sys.argv[0] = "anisoscreen"
entry()
"""


def _one(entry: str, args: list[str], mark: Path) -> dict[str, float]:
    """Wall seconds of one command, and the seconds from its exit handlers to its end."""
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", ENTRY.format(mark=str(mark), entry=entry), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    end = time.time()
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{entry}: exit {done.returncode}\n{done.stderr[-2000:]}")
    handlers_ran = float(mark.read_text())
    return {"seconds": end - start, "after_exit_handlers": end - handlers_ran}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "few.json"
        source.write_text(
            json.dumps(
                [
                    {"material_id": c.material_id, "structure": c.structure.as_dict()}
                    for c in pool_candidates(options.structures)
                ]
            )
        )
        args = ["predict", str(source), "--output", str(Path(folder) / "out.jsonl")]
        runs: dict[str, list[dict[str, float]]] = {"run": [], "main": []}
        for _ in range(options.repeats):
            for entry in runs:
                runs[entry].append(_one(entry, args, Path(folder) / "mark"))
    result = {
        "command": "anisoscreen " + " ".join(["predict", f"<{options.structures} pool cells>"]),
        "runs": runs,
        "mean": {
            entry: {key: statistics.mean(r[key] for r in rows) for key in rows[0]}
            for entry, rows in runs.items()
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if options.output is not None:
        options.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
