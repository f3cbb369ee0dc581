"""A progress bar (rich, on stderr) that shows rows done and rows per second."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(label: str, *, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Yields ``update(done_now, total)``. The bar appears on the first update, so a run
    that fails before doing any work prints nothing but its error."""
    if disable:
        yield lambda done, total: None
        return
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
