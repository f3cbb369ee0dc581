"""The bad-input corpus: inputs and misuses a hostile or careless user tries, each with the
command, the expected exit code and first words on stderr, or the per-row statuses.

A case's ``files`` maps placeholder names to builders ``(dir, world) -> Path``; the command's
``{name}`` placeholders are filled with those paths and the shared world's ``{fa}``,
``{model}``, ``{store}`` (a finished store, copied per case) and ``{dir}`` (the case's own
directory). ``statuses``: expected counts of row statuses (others zero) in the output of a
`check`/`score` that succeeds; every record must appear (``rows``). ``exit`` None means
"any non-zero"; ``err`` is a regular expression searched in the first stderr line.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    cmd: list[str]
    files: dict[str, Callable[[Path, dict], Path]] = dataclasses.field(default_factory=dict)
    exit: int | None = 0
    err: str | None = None
    statuses: dict[str, int] | None = None
    rows: int | None = None
    stdin: bytes | None = None
    env: dict[str, str] | None = None


def text(name: str, body: str | bytes) -> Callable[[Path, dict], Path]:
    def make(d: Path, world: dict) -> Path:
        p = d / name
        p.write_bytes(body.encode() if isinstance(body, str) else body)
        return p
    return make


def vcf(body: str, name: str = "v.vcf", header: str = HEADER) -> Callable[[Path, dict], Path]:
    return text(name, header + body)


def row(chrom="chr1", pos=200, ref=None, alt="A", vid=".") -> str:
    return f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t.\n"


def check(body: str | None = None, *, statuses=None, rows=None, exit=0, err=None, extra=(),
          name="v.vcf", files=None, header=HEADER, stdin=None, arg=None) -> dict:
    files = dict(files or {})
    if body is not None:
        files["in"] = vcf(body, name, header)
    return dict(cmd=["check", arg or "{in}", "--genome", "{fa}", *extra], files=files,
                statuses=statuses, rows=rows, exit=exit, err=err, stdin=stdin)


def score(body: str | None = None, *, statuses=None, rows=None, exit=0, err=None, extra=(),
          name="v.vcf", files=None, model="{model}", out="{dir}/o.zarr", arg=None, stdin=None) -> dict:
    files = dict(files or {})
    if body is not None:
        files["in"] = vcf(body, name)
    return dict(cmd=["score", arg or "{in}", "--genome", "{fa}", "--model", model, "--out", out,
                     "--quiet", *extra], files=files, statuses=statuses, rows=rows, exit=exit,
                err=err, stdin=stdin)


def gz(inner: Callable[[Path, dict], Path], truncate: int | None = None) -> Callable[[Path, dict], Path]:
    def make(d: Path, world: dict) -> Path:
        p = inner(d, world)
        data = gzip.compress(p.read_bytes())
        out = p.with_name(p.name + ".gz")
        out.write_bytes(data[:truncate] if truncate else data)
        return out
    return make
