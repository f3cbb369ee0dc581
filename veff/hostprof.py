"""Where a `veff score` run spends its host time: ``VEFF_PROFILE=FILE`` makes the run add
up the wall time of each phase (per thread, so overlapping phases add up to more than the
run) and write them to FILE as JSON when the process exits. Off (the default) it costs one
dictionary look-up per phase. scripts/bench_host.py prints the table.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

_PATH = os.environ.get("VEFF_PROFILE") or None
_totals: dict[str, list[float]] = {}
_lock = threading.Lock()


def enabled() -> bool:
    return _PATH is not None


def add(phase: str, seconds: float, count: int = 1) -> None:
    if _PATH is None:
        return
    with _lock:
        t = _totals.setdefault(phase, [0.0, 0])
        t[0] += seconds
        t[1] += count


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    if _PATH is None:
        yield
        return
    t = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - t)


def _dump() -> None:
    if _PATH is None or not _totals:
        return
    with open(_PATH, "w") as fh:
        json.dump({k: {"seconds": v[0], "count": v[1]} for k, v in _totals.items()}, fh, indent=1)


atexit.register(_dump)
