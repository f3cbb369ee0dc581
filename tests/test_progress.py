"""Progress output: plain lines when stderr is not a terminal (a batch job's log file)."""

from __future__ import annotations

import io
import re

from veff.progress import progress_bar


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_log_lines_every_interval_and_at_the_end(monkeypatch):
    monkeypatch.setenv("VEFF_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    with progress_bar("scoring", stream=out) as update:
        for _ in range(4):
            update(250, 1000)
    lines = _lines(out)
    assert len(lines) == 4
    pattern = r"\d\d:\d\d:\d\d veff scoring: ([\d,]+)/1,000 rows \(([\d.]+) %\)"
    done = [int(re.match(pattern, ln).group(1).replace(",", "")) for ln in lines]
    assert done == [250, 500, 750, 1000]
    assert "100.0 %" in lines[-1] and "left" not in lines[-1]
    assert "variants/s" not in lines[0]  # no rate from a single update


def test_log_lines_are_throttled_but_the_last_is_always_written(monkeypatch):
    monkeypatch.setenv("VEFF_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    with progress_bar("partition 3", stream=out) as update:
        for _ in range(10):
            update(7, 70)
    lines = _lines(out)
    assert len(lines) == 2, lines  # the first update and the end
    assert "veff partition 3: 7/70 rows" in lines[0]
    assert "70/70 rows (100.0 %)" in lines[1]


def test_disabled_and_no_updates_print_nothing(monkeypatch):
    monkeypatch.setenv("VEFF_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    with progress_bar("scoring", stream=out, disable=True) as update:
        update(5, 10)
    with progress_bar("scoring", stream=out):
        pass
    assert out.getvalue() == ""


def test_a_run_that_stops_short_of_the_total_still_logs_its_last_state(monkeypatch):
    """A resumed run counts only its own rows, so it never reaches the store's total: the
    last state is written when the run ends."""
    monkeypatch.setenv("VEFF_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    with progress_bar("scoring", stream=out) as update:
        for _ in range(3):
            update(10, 100)
    lines = _lines(out)
    assert len(lines) == 2, lines
    assert "veff scoring: 30/100 rows (30.0 %)" in lines[-1]
