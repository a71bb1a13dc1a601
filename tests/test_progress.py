"""Progress of long commands: periodic lines in logs, counted bars on a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from anisoscreen.commands.progress import LineProgress

CLI = "import sys; from anisoscreen.cli import main; sys.argv[0] = 'anisoscreen'; main()"


def test_line_progress_prints_every_tenth_and_the_end():
    stream = io.StringIO()
    now = [0.0]
    report = LineProgress("predicting", stream=stream, clock=lambda: now[0])
    for done in range(1, 101):
        now[0] += 0.1
        report(done, 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("predicting: 10/100 (10 %)") and "s left" in lines[0]
    assert lines[-1].startswith("predicting: 100/100 (100 %)")
    # slow work with no count still shows a line every 30 s
    stream = io.StringIO()
    report = LineProgress("training", stream=stream, clock=lambda: now[0])
    for done in range(1, 5):
        now[0] += 31
        report(done, None)
    assert len(stream.getvalue().splitlines()) == 4


def test_streamed_totals_end_with_a_line():
    stream = io.StringIO()
    report = LineProgress("predicting", stream=stream, every_items=1000)
    for done in range(1, 301):
        report(done, None)
    assert stream.getvalue() == ""
    report.finish()
    assert stream.getvalue().startswith("predicting: 300/300 (100 %)")


def test_predict_prints_progress_lines_when_stdout_is_not_a_terminal(tmp_path):
    from anisoscreen.candidates.sources import load_bundled

    folder = tmp_path / "cifs"
    folder.mkdir()
    for candidate in load_bundled().candidates[:3]:
        candidate.structure.to(filename=str(folder / f"{candidate.material_id}.cif"))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "predict",
            str(folder),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("predicting: ")]
    assert lines and lines[-1].startswith("predicting: 3/3 (100 %)"), out.stdout


def test_html_report_counts_its_figures_and_cards(memory_results):
    from report_data import fill

    from anisoscreen.query import CandidateQuery, find_candidates
    from anisoscreen.report.html import render_html_report
    from anisoscreen.report.overview import OVERVIEW_FIGURES

    fill(memory_results)
    rows = find_candidates(memory_results, CandidateQuery())
    calls: list[tuple[int, int | None]] = []
    render_html_report(rows, top=3, progress=lambda done, total: calls.append((done, total)))
    total = len(OVERVIEW_FIGURES) + 3
    assert calls == [(n, total) for n in range(1, total + 1)]


def test_heartbeat_says_uncounted_work_goes_on():
    import time

    from rich.console import Console

    from anisoscreen.commands.progress import Heartbeat

    stream = io.StringIO()
    beat = Heartbeat("evaluating", Console(file=stream), every=0.05, terminal=False).start()
    time.sleep(0.3)
    beat.stop()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "evaluating..." and len(lines) >= 3
    assert all(re.fullmatch(r"evaluating: \d+ s elapsed", line) for line in lines[1:])
    count = len(lines)
    time.sleep(0.15)
    assert len(stream.getvalue().splitlines()) == count  # stopped
