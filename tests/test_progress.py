"""Progress of long commands: periodic lines in logs, counted bars on a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from cli_helpers import CLI

from anisoscreen.commands.progress import LineProgress


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


def test_the_rate_and_time_left_leave_out_the_set_up_before_the_first_count():
    stream = io.StringIO()
    now = [40.0]  # 40 s of loading before the work is counted
    report = LineProgress("evaluating", stream=stream, clock=lambda: now[0])
    report.start = 0.0
    report(0, 100)
    now[0] = 41.0
    report(10, 100)
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "evaluating: 10/100 (10 %), 10.0/s, 41 s elapsed, about 9 s left"


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


def test_training_counts_the_epochs_of_every_member(monkeypatch):
    """Early stopping counts a member's epochs as done; a log gets counted lines with an ETA."""
    from typer.testing import CliRunner

    from anisoscreen.cli import app

    def fake_train_model(data, folder, name, model_config, train_config, **kwargs):
        for seed, last in zip(kwargs["seeds"], (3, train_config.max_epochs), strict=True):
            for epoch in range(last):  # 0-based, as training records them; member 1 stops at 3
                rec = {"epoch": epoch, "train_loss": 0.5, "val_loss": 0.6, "lr": 1e-3}
                kwargs["progress"](seed, {**rec, "seconds": 1.0})
        maes = ("eps_poly_mae", "anisotropy_ratio_mae", "component_mae", "tensor_mae")
        return {
            "finished": True,
            "epoch": train_config.max_epochs,
            "test": dict.fromkeys(maes, 0.1),
        }

    monkeypatch.setattr("anisoscreen.model.training.pipeline.train_model", fake_train_model)
    args = ["train", "--seed", "4", "--seed", "7", "--max-epochs", "10"]
    out = CliRunner().invoke(app, args)
    lines = out.output.splitlines()
    counted = [line for line in lines if line.startswith("training 2 member(s): ")]
    assert counted, out.output
    assert counted[0].startswith("training 2 member(s): 2/20 (10 %)") and "s left" in counted[0]
    # member 1 stopped at epoch 3: member 2's first epoch is the 11th of 20
    assert any(line.startswith("training 2 member(s): 11/20 (55 %)") for line in counted)
    assert counted[-1].startswith("training 2 member(s): 20/20 (100 %)")
    assert sum("20/20 (100 %)" in line for line in counted) == 1  # the end is said once
    assert "member 2/2 (seed 7) epoch    0" in out.output


def test_evaluate_counts_the_structures_it_predicts(tiny_model, shared_dir):
    from typer.testing import CliRunner

    from anisoscreen.cli import app
    from anisoscreen.model.training.evaluate import evaluate_model

    folder, _ = tiny_model
    data = shared_dir / "data" / "mp_dielectric_tensors.json.gz"
    calls: list[tuple[int, int | None]] = []
    result = evaluate_model(
        str(folder), data, subset="test", device="cpu", progress=lambda *a: calls.append(a)
    )
    n = result["slices"]["exfoliated"].get("n", 0) + len(result["reference"])
    done, total = calls[-1]
    assert done == total >= n and all(d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # counts only go up

    out = CliRunner().invoke(app, ["evaluate", "--model", str(folder), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    counted = [line for line in out.output.splitlines() if line.startswith("evaluating: ")]
    assert counted and counted[-1].startswith(f"evaluating: {total}/{total} (100 %)"), out.output
