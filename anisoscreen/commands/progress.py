"""Progress of long commands: a counted bar on a terminal, periodic lines elsewhere.

On a terminal, a rich bar shows the count, the rate and the time left. When stdout is not a
terminal (a SLURM log, ``nohup``, CI) one plain line is printed every 10 % of the work or every
30 s, whichever comes first, and one at the end, so a log always shows that work goes on.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Counter", "EpochCount", "Heartbeat", "LineProgress", "progress"]

Report = Callable[[int, int | None], None]
"""``report(done, total)``: ``done`` items of ``total`` (``None``: unknown) are finished."""


class LineProgress:
    """Periodic one-line progress for logs.

    Parameters
    ----------
    description
        What is being counted ("predicting", "importing").
    stream
        Where the lines go.
    every_fraction, every_seconds
        A line is printed when the work has advanced this fraction or this time has passed.
    every_items
        When the total is unknown (streamed inputs), also a line every this many items.
    clock
        Seconds since some origin (for tests).
    """

    def __init__(
        self,
        description: str,
        stream: TextIO | None = None,
        every_fraction: float = 0.1,
        every_seconds: float = 30.0,
        every_items: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description
        self.stream = stream or sys.stdout
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.every_items = every_items
        self.clock = clock
        self.start = clock()
        self._last_time = self.start
        self._last_done = 0
        self._seen = 0
        self._total: int | None = None
        self._first: tuple[float, int] | None = None
        self.lines = 0

    def __call__(self, done: int, total: int | None) -> None:
        self._seen, self._total = done, total
        now = self.clock()
        if self._first is None:
            self._first = (now, done)
        finished = total is not None and done >= total
        if total is None:
            by_count = done - self._last_done >= self.every_items
        else:
            by_count = total > 0 and (done - self._last_done) >= self.every_fraction * total
        if not (finished or by_count or now - self._last_time >= self.every_seconds):
            return
        if done == self._last_done and not finished and self.lines:
            return
        elapsed = now - self.start
        # the rate from the first report on: set-up before the work (loading a model, building
        # graphs) does not make the time left look longer than it is
        since, counted = now - self._first[0], done - self._first[1]
        measured = counted / since if since > 0 and counted > 0 else None
        rate = measured if measured is not None else (done / elapsed if elapsed > 0 else 0.0)
        text = f"{self.description}: {done}"
        if total is not None:
            text += f"/{total} ({100 * done / total:.0f} %)" if total else "/0"
        text += f", {rate:.1f}/s, {elapsed:.0f} s elapsed"
        if total is not None and measured and not finished:  # no guess from one report
            text += f", about {(total - done) / measured:.0f} s left"
        print(text, file=self.stream, flush=True)
        self._last_time, self._last_done = now, done
        self._total = total
        self.lines += 1

    def finish(self) -> None:
        """A last line when work was done since the previous one (streamed totals)."""
        if self._seen > self._last_done:
            self.every_items = 0
            self.every_seconds = 0.0
            self(self._seen, self._seen if self._total is None else self._total)


class Heartbeat:
    """A line every ``every`` seconds while uncounted work runs (a spinner on a terminal).

    For work whose steps the command cannot count (evaluation, fine-tuning): it says that the
    work goes on and for how long. ``start()`` and ``stop()`` bracket the work; the thread is
    a daemon, so an error in between never keeps the process alive.
    """

    def __init__(
        self, description: str, console=None, every: float = 30.0, terminal: bool | None = None
    ) -> None:
        from anisoscreen.commands.common import console as default_console

        self.description = description
        self.console = console or default_console
        self.every = every
        self.terminal = self.console.is_terminal if terminal is None else terminal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: Any = None
        self.start_time = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.monotonic() - self.start_time
            print(
                f"{self.description}: {elapsed:.0f} s elapsed", file=self.console.file, flush=True
            )

    def start(self) -> Heartbeat:
        """Say that the work starts and keep saying it goes on."""
        self.start_time = time.monotonic()
        if self.terminal:
            self._status = self.console.status(f"{self.description}...")
            self._status.start()
        else:
            print(f"{self.description}...", file=self.console.file, flush=True)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """The work is done: no more lines."""
        self._stop.set()
        if self._status is not None:
            self._status.stop()
        if self._thread is not None:
            self._thread.join(timeout=1)


def _rate_column_class():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second."""

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f}/s")

    return RateColumn


class Counter:
    """Turns increments (``advance(n)``) into cumulative ``report(done, total)`` calls."""

    def __init__(self, report: Report, total: int | None = None) -> None:
        self.report, self.total, self.done = report, total, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.report(self.done, self.total)


class EpochCount:
    """Training epochs of an ensemble as one count: ``members x max_epochs`` in all.

    ``epoch(seed, n)`` reports that member ``seed`` has finished ``n`` epochs (counted from
    the start of its training, so a resumed member continues its count); a member that stops early
    counts as all its epochs done once the next member starts, and ``finish()`` fills the
    count when training ends.
    """

    def __init__(self, report: Report, seeds: list[int], max_epochs: int) -> None:
        self.report, self.seeds, self.max_epochs = report, list(seeds), max_epochs
        self.total = len(self.seeds) * max_epochs
        self.done = 0

    def member(self, seed: int) -> int:
        """0-based position of ``seed``'s member."""
        return self.seeds.index(seed)

    def epoch(self, seed: int, n: int) -> None:
        self.done = self.member(seed) * self.max_epochs + min(n, self.max_epochs)
        self.report(self.done, self.total)

    def finish(self) -> None:
        """All epochs done (members that stopped early included), said once."""
        if self.done < self.total:
            self.done = self.total
            self.report(self.total, self.total)


@contextmanager
def progress(description: str, console=None, terminal: bool | None = None) -> Iterator[Report]:
    """A ``report(done, total)`` callable for the duration of the block.

    ``terminal`` forces the choice (default: whether ``console`` writes to a terminal).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from anisoscreen.commands.common import console as default_console

    console = console or default_console
    rate_column = _rate_column_class()
    if terminal is None:
        terminal = console.is_terminal
    if not terminal:
        lines = LineProgress(description, stream=console.file)
        yield lines
        lines.finish()
        return
    with Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        rate_column(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report
