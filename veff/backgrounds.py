"""Empirical null distributions of every score: random SNVs scored with the same engine.

A background for one model is the (N, T) matrix of every statistic the run scored, computed on
N random single-base substitutions drawn from the genome (or on the ok rows of a user VCF), with
the same score options as the run. ``consensus`` turns a raw score into a quantile of it.

Sampling (seeded, deterministic): contigs are the autosomes (names ``1``..``22`` with or
without ``chr``) when the genome has any, else every contig; a contig is picked with
probability proportional to its number of admissible positions, a position uniformly among them
(the model's whole window must lie inside the contig), and the draw is kept only if the window
holds no N. REF is the genome base, ALT one of the other three bases, uniformly.

Caching: a background is keyed by the checkpoint sha256, the genome identity (sha256 of the
sorted contig names and lengths), N, the seed (or the background VCF's sha256) and the score
options that change the numbers (every ScoreOptions setting marked so in veff.settings:
statistics, rc, shifts, untransform, precision, centre width, centering, strands, indel
handling). Entries live in
``$VEFF_CACHE/backgrounds`` (else ``~/.cache/veff/backgrounds``) as ``<key>.npz`` (no pickle)
and a copy goes to ``backgrounds/<model>/`` of the store. On a cache hit the REF base of every
cached SNV is checked against the genome, which catches a different FASTA with the same
contig lengths.
"""

from __future__ import annotations

import contextlib

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from veff.signals import Interrupted

import numpy as np

from veff.io.genome import Genome
from veff.types import Status, Variant, decode

_AUTOSOME = re.compile(r"^(chr)?([1-9]|1[0-9]|2[0-2])$", re.IGNORECASE)
_SCORE_CHUNK = 256  # background variants per build_windows + score call


class BackgroundError(Exception):
    """A background cannot be computed, loaded or matched to a store."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackgroundSpec:
    """Which background to use: ``num`` random SNVs drawn with ``seed``, or the ok rows of
    ``vcf`` (then ``num`` and ``seed`` are ignored)."""

    num: int = 10_000
    seed: int = 0
    vcf: str | None = None

    def __post_init__(self):
        if self.vcf is None and self.num < 1:
            raise ValueError(f"background size must be ≥ 1, got {self.num}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Background:
    """One model's background: ``scores[stat]`` is (N, T) float32 over ``tracks``."""

    model: str
    checkpoint_sha256: str
    tracks: list[str]
    scores: dict[str, np.ndarray]
    chrom: np.ndarray  # (N,) str
    pos: np.ndarray  # (N,) int64, 1-based
    ref: np.ndarray  # (N,) str
    alt: np.ndarray  # (N,) str
    meta: dict[str, Any]  # key, source, num, seed, genome_identity, options

    @property
    def num(self) -> int:
        return len(self.pos)


# ---------------------------------------------------------------------------- identity
def cache_dir() -> Path:
    root = os.environ.get("VEFF_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "veff") / "backgrounds"


def genome_identity(genome: Genome) -> str:
    items = sorted(genome.contigs.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def background_key(
    checkpoint_sha256: str, genome_id: str, spec: BackgroundSpec, options: dict[str, Any]
) -> str:
    source = {"vcf_sha256": _file_sha256(spec.vcf)} if spec.vcf else {"num": spec.num, "seed": spec.seed}
    doc = {"checkpoint": checkpoint_sha256, "genome": genome_id, **source, "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _numeric_options(options) -> dict[str, Any]:
    """Every ScoreOptions field that changes the numbers (veff.settings: all but batch size
    and device count): the background is scored with them and keyed by them."""
    from veff.settings import numeric_options

    return numeric_options(options)


# ---------------------------------------------------------------------------- sampling
def sample_snvs(genome: Genome, num: int, seed: int, window_len: int) -> list[Variant]:
    """``num`` random SNVs whose centred ``window_len`` windows lie inside a contig, N-free."""
    names = [n for n in genome.contigs if _AUTOSOME.match(n)] or list(genome.contigs)
    centre = window_len // 2
    # positions p (0-based) with [p - centre, p - centre + L) inside the contig
    spans = np.array([max(0, genome.contigs[n] - window_len + 1) for n in names], dtype=np.int64)
    if spans.sum() == 0:
        raise BackgroundError(
            f"no contig of {genome.path} is as long as the {window_len} bp model window"
        )
    rng = np.random.default_rng(seed)
    prob = spans / spans.sum()
    out: list[Variant] = []
    attempts, max_attempts = 0, 100 * num + 1000
    while len(out) < num:
        attempts += 1
        if attempts > max_attempts:
            raise BackgroundError(
                f"found only {len(out)} of {num} N-free {window_len} bp windows in "
                f"{max_attempts} draws from {genome.path}"
            )
        c = int(rng.choice(len(names), p=prob))
        p0 = centre + int(rng.integers(spans[c]))
        alt_shift = int(rng.integers(1, 4))
        window = genome.fetch(names[c], p0 - centre, p0 - centre + window_len)
        if (window == 4).any():
            continue
        ref_tok = int(window[centre])
        out.append(
            Variant(
                chrom=names[c],
                pos1=p0 + 1,
                ref=decode(np.array([ref_tok])),
                alt=decode(np.array([(ref_tok + alt_shift) % 4])),
                id=f"bg{len(out)}",
                fasta_chrom=names[c],
            )
        )
    return out


def _vcf_snvs(genome: Genome, path: str) -> list[Variant]:
    from veff.io.vcf import read_variants

    rows = [v for v in read_variants(path, genome) if v.status is Status.OK]
    if not rows:
        raise BackgroundError(f"background VCF {path} has no scorable variant")
    return rows


# ---------------------------------------------------------------------------- compute
# Progress and stop for the background phase (set by the CLI around a run, veff.signals):
# ``progress(done_now, total)`` after each block of background SNVs, ``stop`` checked
# before each block; a stop raises veff.signals.Interrupted and `--resume` computes again.
_HOOKS: dict[str, Any] = {"progress": None, "stop": None, "start": None}


@contextlib.contextmanager
def phase_hooks(*, progress=None, stop=None, start=None):
    """``start(model, total)`` when a model's background starts (the CLI opens a progress
    line there), then ``progress(done_now, total)`` per block; ``stop`` a StopRequest."""
    old = dict(_HOOKS)
    _HOOKS.update(progress=progress, stop=stop, start=start)
    try:
        yield
    finally:
        _HOOKS.update(old)


class BackgroundInterrupted(Interrupted):
    """Stopped while computing a consensus background (every chunk is already scored)."""

    def __str__(self) -> str:
        import signal

        return (f"stopped by {signal.Signals(self.signum).name} while computing the consensus "
                "backgrounds; every chunk is scored and saved: run the same command with "
                "--resume to write the consensus")


def compute_background(
    handle, genome: Genome, spec: BackgroundSpec, options
) -> Background:
    """Score the background variants of ``spec`` with ``handle`` under ``options``."""
    from veff.engine import ModelScorer
    from veff.io.windows import build_windows

    gid = genome_identity(genome)
    num_opts = _numeric_options(options)
    key = background_key(handle.sha256, gid, spec, num_opts)
    if spec.vcf:
        variants = _vcf_snvs(genome, spec.vcf)
    else:
        variants = sample_snvs(genome, spec.num, spec.seed, handle.window_len)
    scorer = ModelScorer(handle, options)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in scorer.stats}
    stop, progress = _HOOKS["stop"], _HOOKS["progress"]
    if _HOOKS["start"] is not None:
        _HOOKS["start"](handle.name, len(variants))
    for start in range(0, len(variants), _SCORE_CHUNK):
        if stop is not None and stop.is_set():
            raise BackgroundInterrupted(stop.signum, 0, 1)
        block = variants[start : start + _SCORE_CHUNK]
        for stat, values in scorer.score(build_windows(
            genome, block, handle.window_len, centre_offset=scorer.options.centre_offset)).items():
            parts[stat].append(values)
        if progress is not None:
            progress(len(block), len(variants))
    return Background(
        model=handle.name,
        checkpoint_sha256=handle.sha256,
        tracks=list(scorer.track_names),
        scores={s: np.concatenate(v).astype(np.float32) for s, v in parts.items()},
        chrom=np.array([v.chrom for v in variants], dtype=object),
        pos=np.array([v.pos1 for v in variants], dtype=np.int64),
        ref=np.array([v.ref for v in variants], dtype=object),
        alt=np.array([v.alt for v in variants], dtype=object),
        meta={
            "key": key,
            "source": f"vcf:{spec.vcf}" if spec.vcf else "random_snvs",
            "num": len(variants),
            "seed": None if spec.vcf else spec.seed,
            "genome_identity": gid,
            "options": num_opts,
            "formulas": dict(scorer.formulas),
        },
    )


# ---------------------------------------------------------------------------- cache files
def save_cached(bg: Background, directory: Path | None = None) -> Path:
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{bg.meta['key']}.npz"
    tmp = directory / f".{bg.meta['key']}.{os.getpid()}.tmp.npz"
    arrays = {f"score__{s}": v for s, v in bg.scores.items()}
    np.savez(
        tmp,
        chrom=np.array(bg.chrom, dtype=str),
        pos=bg.pos,
        ref=np.array(bg.ref, dtype=str),
        alt=np.array(bg.alt, dtype=str),
        tracks=np.array(bg.tracks, dtype=str),
        header=np.array(json.dumps({"model": bg.model, "checkpoint_sha256": bg.checkpoint_sha256,
                                    "meta": bg.meta})),
        **arrays,
    )
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def load_cached(key: str, directory: Path | None = None) -> Background | None:
    path = (directory or cache_dir()) / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            scores = {k[len("score__"):]: z[k] for k in z.files if k.startswith("score__")}
            return Background(
                model=header["model"],
                checkpoint_sha256=header["checkpoint_sha256"],
                tracks=[str(t) for t in z["tracks"]],
                scores=scores,
                chrom=z["chrom"].astype(object),
                pos=z["pos"],
                ref=z["ref"].astype(object),
                alt=z["alt"].astype(object),
                meta=header["meta"],
            )
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is recomputed, never trusted


def matches_genome(bg: Background, genome: Genome) -> bool:
    """Every background REF base is what the genome says (cheap: one base per SNV)."""
    from veff.io.genome import GenomeError

    try:
        for chrom, pos, ref in zip(bg.chrom, bg.pos, bg.ref):
            if genome.bases(str(chrom), int(pos) - 1, int(pos) - 1 + len(ref)) != ref:
                return False
    except (GenomeError, KeyError):
        return False
    return True


def get_background(
    handle, genome: Genome, spec: BackgroundSpec, options, *, cache: Path | None = None
) -> tuple[Background, bool]:
    """The background for ``handle``: from the cache when a valid entry exists, else computed
    and cached. Returns (background, came_from_cache)."""
    key = background_key(handle.sha256, genome_identity(genome), spec, _numeric_options(options))
    bg = load_cached(key, cache)
    if bg is not None and bg.checkpoint_sha256 == handle.sha256 and matches_genome(bg, genome):
        # Same weights may be loaded under another name; a profile model's one track is named
        # after the model (engine.ModelScorer), so rename it as the engine would.
        tracks = [handle.name] if handle.kind == "profile" else list(handle.track_names)
        return dataclasses.replace(bg, model=handle.name, tracks=tracks), True
    bg = compute_background(handle, genome, spec, options)
    save_cached(bg, cache)
    return bg, False


# ---------------------------------------------------------------------------- store copy
def write_to_store(root, bg: Background) -> None:
    """Write ``bg`` to ``backgrounds/<model>/`` of an open store root (replacing any)."""
    group = root.require_group("backgrounds")
    if bg.model in group:
        del group[bg.model]
    g = group.create_group(bg.model)
    n = bg.num
    for name, values, dtype in (
        ("chrom", bg.chrom, str), ("pos", bg.pos, "int64"), ("ref", bg.ref, str), ("alt", bg.alt, str),
    ):
        arr = g.create_array(name, shape=(n,), dtype=dtype, dimension_names=["bg_variant"])
        arr[:] = np.asarray(values, dtype=object if dtype is str else dtype)
    track = g.create_array("track", shape=(len(bg.tracks),), dtype=str, dimension_names=["track"])
    track[:] = np.array(bg.tracks, dtype=object)
    for stat, values in bg.scores.items():
        arr = g.create_array(
            stat, shape=values.shape, dtype="float32", dimension_names=["bg_variant", "track"]
        )
        arr[:] = values
    g.attrs.update(
        {"model": bg.model, "checkpoint_sha256": bg.checkpoint_sha256, **_jsonable(bg.meta)}
    )


def read_from_store(root, model: str) -> Background | None:
    if "backgrounds" not in root or model not in root["backgrounds"]:
        return None
    g = root["backgrounds"][model]
    attrs = dict(g.attrs)
    skip = {"chrom", "pos", "ref", "alt", "track"}
    return Background(
        model=model,
        checkpoint_sha256=attrs.get("checkpoint_sha256", ""),
        tracks=[str(t) for t in g["track"][:]],
        scores={k: np.asarray(g[k][:], dtype=np.float32) for k in g.array_keys() if k not in skip},
        chrom=g["chrom"][:],
        pos=g["pos"][:],
        ref=g["ref"][:],
        alt=g["alt"][:],
        meta={k: v for k, v in attrs.items() if k not in ("model", "checkpoint_sha256")},
    )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


def required_stats(stats: Sequence[str], bg: Background) -> list[str]:
    """The statistics of ``stats`` that ``bg`` lacks."""
    return [s for s in stats if s not in bg.scores]
