"""Progress on stderr: a rich bar on a terminal, plain timestamped lines in a log file.

A batch job's stderr is a file (SLURM's ``-o``/``-e``), where a live bar prints nothing
until the end; there veff writes one line per ``$VEFF_PROGRESS_INTERVAL`` seconds
(default 60) and one at the end: rows done, rate and time left.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

DEFAULT_INTERVAL_S = 60.0


@contextlib.contextmanager
def progress_bar(label: str, *, disable: bool = False,
                 stream: TextIO | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yields ``update(done_now, total)``. Nothing is shown before the first update, so a
    run that fails before doing any work prints nothing but its error."""
    stream = sys.stderr if stream is None else stream
    if disable:
        yield lambda done, total: None
        return
    if not stream.isatty():
        update, finish = _log_lines(label, stream, _interval())
        try:
            yield update
        finally:
            finish()
        return
    yield from _rich_bar(label)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VEFF_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _log_lines(label: str, stream: TextIO,
               interval: float) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(update, finish) writing lines such as ``veff scoring: 2,048/10,000 rows (20.5 %),
    113.4 variants/s, about 0:01:10 left``. The rate counts from the first update on, so
    compilation and setup before it do not drag the estimate down. ``finish`` writes the
    last state if the last update was not written (a resumed run never reaches the total:
    its rows done count only this run's)."""
    first: tuple[float, int] | None = None
    last_line = -float("inf")
    done = 0
    unwritten: int | None = None  # the total of an update not yet written

    def update(done_now: int, total: int, *, force: bool = False) -> None:
        nonlocal first, last_line, done, unwritten
        done += done_now
        now = time.monotonic()
        if first is None:
            first = (now, done)
        if not force and now - last_line < interval and done < total:
            unwritten = total
            return
        unwritten = None
        last_line = now
        t0, d0 = first
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        eta = f", about {_duration((total - done) / rate)} left" if rate and done < total else ""
        pct = 100.0 * done / total if total else 100.0
        stream.write(f"{time.strftime('%H:%M:%S')} veff {label}: {done:,}/{total:,} rows "
                     f"({pct:.1f} %)" + (f", {rate:,.1f} variants/s" if rate else "")
                     + eta + "\n")
        stream.flush()

    def finish() -> None:
        if unwritten is not None:
            update(0, unwritten, force=True)

    return update, finish


def _rich_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total, rate="")
        bar.advance(task, done)
        speed = bar.tasks[task].speed
        bar.update(task, rate=f"{speed:,.1f} variants/s" if speed else "")

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()
