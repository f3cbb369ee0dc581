"""The run fingerprint: everything a store's rows and numbers depend on, recorded in the root
attrs when the store is created and compared before a run writes into it again (``--resume``,
``run-partition``, ``finalize``), so one store never mixes two runs (docs/store.md).

Keys are the command-line names of what the user gives (``VARIANTS``, ``--genome``,
``--stats`` …) so that a refusal names what to change. Files are compared by content (size
and SHA-256), never by path: a moved copy of the same VCF resumes, an edited one does not.
Options that change neither rows nor numbers (``--batch-size``, ``--devices``) are left out.

Which settings enter, and under which key, comes from their definitions in veff.settings
(each field says what it changes): a new option that changes results is fingerprinted by
being defined there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veff.store import StoreError

if TYPE_CHECKING:
    from veff.io.genome import Genome
    from veff.models.base import ModelHandle
    from veff.pipeline import RunSpec

FORMAT = 1  # bump when the meaning of a key changes
FULL_GENOME_BASES = 16_000_000  # genomes up to this many bases are hashed base by base
SAMPLES_PER_CONTIG = 64  # larger ones: this many evenly spaced stretches per contig
SAMPLE_LEN = 32

# What the store's files and the consensus depend on, per command that writes without
# taking options from the user (the options themselves come from the store there).
PARTITION_KEYS = ("--genome", "--model")
FINALIZE_KEYS = ("--genome", "--groups")


class FingerprintMismatch(StoreError):
    """The run differs from the one that created the store; ``lines`` says how, one each."""

    def __init__(self, lines: Sequence[str]):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


# ---------------------------------------------------------------------------- digests
def file_digest(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Size and SHA-256 of a file, read in 1 MiB blocks (constant memory)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if str(path) == "-" or (p.exists() and not p.is_file()):
        # stdin or a pipe: it cannot be read twice. A resumed run takes its rows from the
        # store, so a stream is recorded as a stream and matches another stream.
        return {"path": "-" if str(path) == "-" else str(p), "stream": True}
    h = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise StoreError(f"cannot read {p}: {e.strerror or e}") from None
    return {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": h.hexdigest()}


def genome_digest(genome: Genome) -> dict[str, Any]:
    """Contig names and lengths, and the bases the models see (tokens, so case and line
    width do not count): every base of a genome up to FULL_GENOME_BASES, else
    SAMPLES_PER_CONTIG evenly spaced stretches of SAMPLE_LEN bases per contig (cheap for
    hg38, found by any other assembly or build, not by an edit between the stretches)."""
    names = hashlib.sha256()
    bases = hashlib.sha256()
    total = sum(genome.contigs.values())
    full = total <= FULL_GENOME_BASES
    for name, length in genome.contigs.items():
        names.update(f"{name}\t{length}\n".encode())
        bases.update(f">{name}\n".encode())
        for start, stop in _stretches(length, full):
            bases.update(genome.fetch(name, start, stop).tobytes())
    return {
        "path": str(Path(genome.path).resolve()),
        "contigs": len(genome.contigs),
        "length": total,
        "names_sha256": names.hexdigest(),
        "bases_sha256": bases.hexdigest(),
        "bases": "all" if full else f"{SAMPLES_PER_CONTIG} x {SAMPLE_LEN} bp per contig",
    }


def _stretches(length: int, full: bool) -> Iterable[tuple[int, int]]:
    if full or length <= SAMPLES_PER_CONTIG * SAMPLE_LEN:
        step = 1 << 20
        return ((a, min(a + step, length)) for a in range(0, length, step))
    last = length - SAMPLE_LEN
    return ((s, s + SAMPLE_LEN) for s in (i * last // (SAMPLES_PER_CONTIG - 1) for i in range(SAMPLES_PER_CONTIG)))


# ---------------------------------------------------------------------------- fingerprint
def run_fingerprint(spec: RunSpec, genome: Genome, handles: Sequence[ModelHandle]) -> dict[str, Any]:
    """The fingerprint of a run: input digests and every setting that changes rows, numbers
    or the store (veff.settings marks them), keyed by the flag the user gives. Files are
    digested; ``--chunk-size`` is left out when not given (a resumed store keeps its own)."""
    from veff.settings import fingerprint_fields, flag_value, value_of

    fp: dict[str, Any] = {"format": FORMAT}
    for f, nested in fingerprint_fields():
        how, key, value = f.metadata["fingerprint"], f.metadata["flag"], value_of(spec, f, nested)
        if how == "genome":
            fp[key] = genome_digest(genome)
        elif how == "models":
            fp[key] = [[h.name, h.sha256] for h in handles]
        elif how == "file":
            fp[key] = file_digest(value) if value else None
        elif how == "given" and value is None:
            continue
        else:
            fp[key] = flag_value(f, value)
    return fp


def partial_fingerprint(keys: Iterable[str], *, genome: Genome | None = None,
                        handles: Sequence[ModelHandle] = (), groups: str | None = None) -> dict[str, Any]:
    """Only the named input digests (for ``run-partition`` and ``finalize``)."""
    fp: dict[str, Any] = {}
    for key in keys:
        if key == "--genome" and genome is not None:
            fp[key] = genome_digest(genome)
        elif key == "--model" and handles:
            fp[key] = [[h.name, h.sha256] for h in handles]
        elif key == "--groups":
            fp[key] = file_digest(groups)
    return fp


def _identity(key: str, value: Any) -> Any:
    """The part of a value that decides sameness (content, not where a file lies)."""
    if isinstance(value, Mapping) and "sha256" in value:
        return value["size"], value["sha256"]
    if isinstance(value, Mapping) and "bases_sha256" in value:
        return value["names_sha256"], value["bases_sha256"]
    if isinstance(value, (list, tuple)):
        return [_identity(key, v) for v in value]
    return value


def describe(key: str, value: Any) -> str:
    if value is None:
        return "not given"
    if isinstance(value, bool) and key.startswith("--no-"):
        return "given" if value else "not given"
    if isinstance(value, Mapping) and "sha256" in value:
        return f"{value['path']} ({value['size']} bytes, sha256 {value['sha256'][:12]})"
    if isinstance(value, Mapping) and "bases_sha256" in value:
        return (f"{value['path']} ({value['contigs']} contigs, {value['length']} bp, "
                f"sequence digest {value['bases_sha256'][:12]})")
    if key == "--model":
        return ", ".join(f"{name} (sha256 {sha[:12]})" for name, sha in value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def differences(stored: Mapping[str, Any], now: Mapping[str, Any], *, command: str,
                keys: Iterable[str] | None = None) -> list[str]:
    """One line per setting that differs; keys either side lacks are not compared."""
    wanted = list(now) if keys is None else list(keys)
    lines = []
    for key in wanted:
        if key == "format" or key not in stored or key not in now:
            continue
        if _identity(key, stored[key]) != _identity(key, now[key]):
            lines.append(f"{command}: {key} differs: stored {describe(key, stored[key])}, "
                         f"now {describe(key, now[key])}")
    return lines


def check(stored: Mapping[str, Any] | None, now: Mapping[str, Any], *, command: str, path: str | os.PathLike,
          hint: str, keys: Iterable[str] | None = None) -> None:
    """Raise :class:`FingerprintMismatch` (one line per difference, then ``hint``) unless the
    store's fingerprint matches ``now``."""
    if stored is None:
        raise StoreError(
            f"{command}: {path} was written by a veff without a run fingerprint, so it cannot be "
            "checked against this run; finish it with that version, or start over with --overwrite"
        )
    if stored.get("format") != FORMAT:
        raise StoreError(f"{command}: {path} has a run fingerprint of another format "
                         f"({stored.get('format')}, this veff writes {FORMAT}); finish it with the "
                         "veff that created it, or start over with --overwrite")
    lines = differences(stored, now, command=command, keys=keys)
    if lines:
        raise FingerprintMismatch([*lines, f"{command}: {path} is unchanged; {hint}"])


def check_resume(spec: RunSpec, genome: Genome, handles: Sequence[ModelHandle]) -> None:
    """Refuse to resume ``spec.out`` with other inputs, models or options than it was
    created with: one line per difference, before anything is written."""
    from veff.store import root_attrs

    check((root_attrs(spec.out) or {}).get("fingerprint"), run_fingerprint(spec, genome, handles),
          command="--resume", path=spec.out,
          hint="rerun with the inputs and options it was created with, or start over with --overwrite")
