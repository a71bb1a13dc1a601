"""The ``anisoscreen`` command ends without interpreter teardown once torch is loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from anisoscreen import __version__
from anisoscreen.errors import ExitCode


def _python(*parts: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    code = "".join(textwrap.dedent(part) for part in parts)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _marking(tmp_path: Path) -> str:
    """Code that registers an exit handler and a teardown-time finaliser, each writing a file."""
    return f"""
        import atexit, sys, torch
        from pathlib import Path
        folder = Path({str(tmp_path)!r})
        atexit.register(lambda: (folder / "handler").write_text("ran"))
        class Finaliser:
            def __del__(self):
                (folder / "finaliser").write_text("ran")
        keep = Finaliser()
        sys.argv[0] = "anisoscreen"
        from anisoscreen.cli import run
        print("before", end="")
    """


def test_the_command_runs_exit_handlers_flushes_and_skips_teardown(tmp_path):
    out = _python(_marking(tmp_path), "run()\n", args=("--version",))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("before") and __version__ in out.stdout
    assert (tmp_path / "handler").read_text() == "ran"
    assert not (tmp_path / "finaliser").exists()  # module teardown skipped


def test_the_command_keeps_its_exit_status_and_one_line_error(tmp_path):
    out = _python(
        _marking(tmp_path), "run()\n", args=("run-screen", "--source", str(tmp_path / "no"))
    )
    assert out.returncode == ExitCode.SOURCE, out.stderr
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "handler").read_text() == "ran"


def test_a_working_thread_finishes_first_as_in_a_normal_exit(tmp_path):
    threaded = """
        import threading, time
        def work():
            time.sleep(0.5)
            (folder / "thread").write_text("done")
        threading.Thread(target=work).start()
        from anisoscreen.process_end import end_process
        end_process(3)
    """
    out = _python(_marking(tmp_path), threaded)
    assert out.returncode == 3, out.stderr
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "handler").read_text() == "ran"
    assert not (tmp_path / "finaliser").exists()


def test_without_torch_the_exit_is_normal(tmp_path):
    plain = f"""
        import sys
        from pathlib import Path
        class Finaliser:
            def __del__(self):
                Path({str(tmp_path)!r}, "finaliser").write_text("ran")
        keep = Finaliser()
        from anisoscreen.process_end import end_process
        end_process(4)
    """
    out = _python(plain)
    assert out.returncode == 4, out.stderr
    assert (tmp_path / "finaliser").read_text() == "ran"  # the interpreter's teardown ran


def test_the_command_collects_garbage_at_its_own_thresholds_and_a_library_caller_keeps_its(
    tmp_path,
):
    from anisoscreen.gc_thresholds import OLDER_THRESHOLD, YOUNG_THRESHOLD

    report = f"""
        import atexit, gc, sys
        from pathlib import Path
        atexit.register(lambda: Path({str(tmp_path / "seen")!r}).write_text(str(gc.get_threshold())))
        sys.argv[0] = "anisoscreen"
        from anisoscreen.cli import main, run
    """
    out = _python(report, "run()\n", args=("--version",))
    assert out.returncode == 0, out.stderr
    expected = (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    assert (tmp_path / "seen").read_text() == str(expected)
    out = _python(report, "main()\n", args=("--version",))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "seen").read_text() == str((700, 10, 10))  # CPython's defaults, kept
