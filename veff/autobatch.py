"""``--batch-size auto``: the largest batch whose compiled step fits in memory.

The budget is a fraction of the memory the step may use: on CPU, ``CPU_FRACTION`` of the
host's available RAM (``MemAvailable`` in /proc/meminfo; the rest is left to window
building, the store writer and other processes); on an accelerator, ``DEVICE_FRACTION`` of
XLA's allocator limit (``device.memory_stats()['bytes_limit']``, the smallest over the
devices used). ``$VEFF_MEMORY_BUDGET`` (bytes) replaces the measured budget.

A step's peak is what XLA's buffer assignment reports for the compiled step
(``memory_analysis()``: temporaries + arguments + outputs − aliased bytes), per device;
on CPU every device lives in the same RAM, so it is multiplied by the device count.
Candidates are powers of two rows per device, 1 … ``CAP``. The search only lowers and
compiles (nothing runs): it compiles 1 row per device, guesses the largest candidate that
fits from a line through the peaks measured so far (the peak is close to affine in the
batch), compiles that guess to check it, and repeats between the largest size that fits
and the smallest that does not — typically 3 compiles. Only a compiled size is chosen. Choices are cached in-process per (checkpoint digest,
window, precision, device kind and count, scoring options, budget override).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Hashable

from veff import notes

CPU_FRACTION = 0.6
DEVICE_FRACTION = 0.8
CAP = 256  # rows per device
ENV_BUDGET = "VEFF_MEMORY_BUDGET"
GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Choice:
    batch_size: int  # rows per step, a multiple of the device count
    peak_bytes: int | None  # the compiled step's peak at that size (None: not measurable)
    budget_bytes: int
    compiles: int  # steps compiled by the search

    def describe(self, model: str) -> str:
        if self.peak_bytes is None:
            return (f"veff: batch size auto → {self.batch_size} for {model} (XLA reports no "
                    "memory analysis on this backend)")
        over = " — over budget even at 1 row per device" if self.peak_bytes > self.budget_bytes else ""
        return (f"veff: batch size auto → {self.batch_size} for {model} (peak "
                f"~{self.peak_bytes / GiB:.2f} GiB of {self.budget_bytes / GiB:.2f} GiB available){over}")


_CACHE: dict[Hashable, Choice] = {}


def budget_override() -> int | None:
    text = os.environ.get(ENV_BUDGET, "").strip()
    if not text:
        return None
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"${ENV_BUDGET}={text!r}: expected a number of bytes") from None
    if value < 1:
        raise ValueError(f"${ENV_BUDGET}={text!r}: expected a positive number of bytes")
    return value


def available_ram() -> int:
    """Bytes of RAM the kernel reports available (MemAvailable), else free pages."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(devices: list[Any]) -> int:
    """Bytes one step may use over ``devices`` (per device on accelerators, the whole host's
    share on CPU)."""
    override = budget_override()
    if override is not None:
        return override
    if devices[0].platform == "cpu":
        return int(available_ram() * CPU_FRACTION)
    limits = []
    for d in devices:
        stats = d.memory_stats() or {}
        if "bytes_limit" in stats:
            limits.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    if not limits:
        return int(available_ram() * CPU_FRACTION)
    return int(min(limits) * DEVICE_FRACTION)


def peak_bytes(compiled: Any, num_devices: int, host_shared: bool) -> int | None:
    """The compiled step's peak from XLA's buffer assignment (None when not reported)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if m is None:
        return None
    total = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)
    return int(total) * (num_devices if host_shared else 1)


def search(peak_at: Callable[[int], int | None], budget: int, cap: int = CAP) -> tuple[int, int | None, int]:
    """Largest power of two p ≤ cap with peak_at(p) ≤ budget (1 when none fits).

    Returns (p, its peak, compiles). Only sizes that were compiled are ever chosen."""
    seen: dict[int, int | None] = {}

    def peak(p: int) -> int | None:
        if p not in seen:
            seen[p] = peak_at(p)
        return seen[p]

    lo, hi = 1, None  # lo fits (or is 1); hi (a power of two) does not
    if peak(1) is None or peak(1) > budget:
        return 1, peak(1), len(seen)
    while True:
        top = cap if hi is None else hi // 2
        if top <= lo:
            break
        guess = _line_guess(seen, budget, lo, hi, top)
        if guess <= lo:
            if len(seen) > 1 and (hi is None or hi < 8 * lo):
                break  # the line through two measurements says nothing larger fits
            # one measurement (peak ∝ batch is pessimistic), or a wide bracket whose
            # secant may be: check the geometric middle
            guess = lo * 2 if hi is None else 1 << ((lo.bit_length() + hi.bit_length() - 2) // 2)
        value = peak(guess)
        if value is not None and value <= budget:
            lo = guess
        else:
            hi = guess
    return lo, peak(lo), len(seen)


def _line_guess(seen: dict[int, int | None], budget: int, lo: int, hi: int | None, top: int) -> int:
    """The largest power of two in (lo, top] that the line through the measurements
    nearest lo predicts to fit; lo when it predicts none."""
    other = hi if hi is not None and seen.get(hi) is not None else max(
        (p for p, v in seen.items() if p < lo and v is not None), default=None)
    if other is None:  # one measurement: peak ∝ batch (pessimistic: parameters are fixed)
        slope = seen[lo] / lo
    else:
        slope = (seen[other] - seen[lo]) / (other - lo)
    slope = max(slope, 1.0)
    guess, p = lo, lo * 2
    while p <= top:
        if seen[lo] + (p - lo) * slope <= budget:
            guess = p
        p *= 2
    return guess


def choose(key: Hashable, compile_rows: Callable[[int], Any], *, num_devices: int,
           devices: list[Any], model: str, cap: int = CAP,
           budget: int | None = None) -> tuple[Choice, dict[int, Any]]:
    """Pick the batch (rows per step) for one model; ``compile_rows(rows)`` lowers and
    compiles the step for ``rows`` rows. Returns the choice and the compiled steps by rows
    (the chosen size among them, for reuse). Prints the choice on stderr once per key."""
    host_shared = devices[0].platform == "cpu"
    key = (key, num_devices, devices[0].platform, devices[0].device_kind, budget_override(),
           budget, cap)
    budget = memory_budget(devices) if budget is None else budget
    if key in _CACHE:
        return _CACHE[key], {}
    compiled: dict[int, Any] = {}

    def peak_at(p: int) -> int | None:
        rows = p * num_devices
        compiled[rows] = compile_rows(rows)
        return peak_bytes(compiled[rows], num_devices, host_shared)

    p, peak, n = search(peak_at, budget, cap)
    if peak is None and p == 1 and n == 1:  # no memory analysis: a modest fixed size
        p = min(8, cap)
    choice = Choice(batch_size=p * num_devices, peak_bytes=peak, budget_bytes=budget, compiles=n)
    _CACHE[key] = choice
    notes.say(choice.describe(model))
    return choice, {r: c for r, c in compiled.items() if r == choice.batch_size}
