"""Producer -> device -> writer: the whole `veff score` job over a store.

Window building for the next chunk runs in a background thread while the device scores
the current one; JAX dispatch is asynchronous, so host and device work overlap.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veff import __version__
from veff import hostprof
from veff.calibration import pvalue_stats
from veff.engine import ModelScorer, ScoreOptions  # noqa: F401 - re-exported
from veff.io.genome import Genome
from veff.io.vcf import read_variants
from veff.models.base import ModelHandle
from veff.signals import StopRequest
from veff import store as _store
from veff.settings import RunSpec, to_attrs
from veff.store import Store, StoreError
from veff.chunks import (  # noqa: F401 - re-exported (tests and callers import them here)
    ProgressFn, block_rows, load_nulls, oriented_windows, score_chunks)


@dataclasses.dataclass(frozen=True)
class RunResult:
    out: Path
    num_variants: int
    num_ok: int
    chunks_scored: int
    seconds: float
    consensus_groups: tuple[str, ...] = ()



def load_handles(specs: Sequence[str]) -> list[ModelHandle]:
    from veff.models.registry import load_model

    handles = [load_model(s) for s in specs]
    names = [h.name for h in handles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StoreError(f"two --model arguments share the name {dupes[0]!r}; name one with --model NAME=PATH")
    return handles


def stats_for(handle: ModelHandle, requested: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The requested statistics that apply to this model's kind (None: its defaults)."""
    if requested is None:
        return None
    if handle.kind == "profile":
        from veff.scoring.profile import STAT_INFO

        return tuple(s for s in requested if s in STAT_INFO)
    if handle.kind == "cells":
        from veff.scoring.cells import STATS

        return tuple(s for s in requested if s in STATS)
    from veff.scoring.tracks import ScoreSpec

    def is_track_stat(s: str) -> bool:
        try:
            ScoreSpec.parse(s)
        except ValueError:
            return False
        return True

    return tuple(s for s in requested if is_track_stat(s))


def build_scorers(
    spec: RunSpec,
    genome: Genome,
    handles: Sequence[ModelHandle],
    peak_counts: dict[str, np.ndarray] | None = None,
) -> list[ModelScorer]:
    """One scorer per model; with several model kinds, each takes the requested statistics
    that apply to it, and a statistic that applies to none is an error. ``peak_counts``
    (model name -> counts) replaces predicting them from ``spec.peaks``."""
    from veff.calibration import predict_peak_counts
    from veff.engine import ScoringError

    requested = spec.options.stats
    if requested is not None:
        used = {s for h in handles for s in stats_for(h, requested)}
        unknown = [s for s in requested if s not in used]
        if unknown:
            raise ScoringError(
                f"unknown statistic(s) {', '.join(unknown)} for the model(s) given; "
                "see docs/scores_profile.md and docs/scores_tracks.md"
            )
    given = spec.options.unused_by({h.kind for h in handles})  # veff.settings: kinds per option
    if given:  # options that no model here would use: say so, don't ignore them
        raise ScoringError(f"{', '.join(given)}: no model given uses it (binned models such as "
                           "Enformer and Borzoi do; see `veff score --help`)")
    scorers = []
    for h in handles:
        stats = stats_for(h, requested)
        if stats == ():
            raise ScoringError(f"none of --stats {','.join(requested)} applies to model {h.name}")
        # options that do not apply to this kind (shifts for a profile model) at their defaults
        options = dataclasses.replace(spec.options.for_kind(h.kind), stats=stats)
        peaks = (peak_counts or {}).get(h.name)
        if peaks is None and spec.peaks is not None and h.kind == "profile":
            # a forward-only pass over peak windows: auto takes the former default of 64
            bs = 64 if options.batch_size == "auto" else options.batch_size
            peaks = predict_peak_counts(h, genome, spec.peaks, rc=options.rc, batch_size=bs)
        scorers.append(ModelScorer(h, options, peak_counts=peaks))
    return scorers


def check_models(store: Store, names: list[str], shas: list[str]) -> None:
    """Refuse to write a store with models other than the ones it was created with."""
    stored = store.model_names()
    stored_shas = [store.root["scores"][m].attrs["checkpoint_sha256"] for m in stored]
    if names != stored or shas != stored_shas:
        raise StoreError(
            f"{store.path} was created with models {stored}; the checkpoints now load as "
            f"{names} and differ (changed on disk since `veff plan`?)"
        )


def scorers_for_store(
    store: Store, spec: RunSpec, genome: Genome, handles: list[ModelHandle]
) -> list[ModelScorer]:
    """``pipeline.build_scorers`` for a store that exists: the models must be the ones it
    was created with, and peak counts (``--peaks``) are the store's copy, never recomputed,
    so every writer scores against the same numbers."""
    check_models(store, [h.name for h in handles], [h.sha256 for h in handles])
    stored = {h.name: store.read_model_array(h.name, "peak_counts") for h in handles}
    stored = {k: v for k, v in stored.items() if v is not None}
    if not stored:
        return build_scorers(dataclasses.replace(spec, peaks=None), genome, handles)
    return build_scorers(spec, genome, handles, peak_counts=stored)


def _model_attrs(h: ModelHandle) -> dict[str, Any]:
    return {
        "arch": h.arch,
        "checkpoint_sha256": h.sha256,
        "window_len": h.window_len,
        "output_len": h.output_len,
        "bin_size": h.bin_size,
        "num_folds": h.num_folds,
        "kind": h.kind,
    }


def _window_attrs(s: ModelScorer) -> dict[str, Any]:
    """How the windows and tracks were laid out (binned-model options recorded per model)."""
    o = s.options
    out: dict[str, Any] = {"centering": o.centering}
    if s.handle.kind == "binned":
        out["strands_merged"] = list(s.track_names) != list(s.handle.track_names)
        out["indel_align"] = "stitch" if o.indel_align else "none"
    out["indel_windows"] = o.indel_windows
    return out


def open_or_create(spec: RunSpec, genome: Genome, scorers: list[ModelScorer]) -> Store:
    """Create the store for a new run: every variant row, every model's arrays, the peak
    counts and the shuffled null, and the run's fingerprint (veff.fingerprint)."""
    from veff.fingerprint import run_fingerprint

    out = Path(spec.out)
    if spec.chunk_size is None:
        size = default_chunk_size(spec.options.batch_size, score_bytes_per_row(scorers, bool(spec.null_shuffles)),
                                  genes=spec.genes is not None)
        spec = dataclasses.replace(spec, chunk_size=size)
    gene_index = None
    if spec.genes is not None:  # before the store exists: a bad GTF leaves nothing behind
        from veff import genes_store

        gene_index = genes_store.prepare(scorers, spec.genes)
    variants = read_variants(
        spec.variants,
        genome,
        ref_mismatch=spec.ref_mismatch,
        max_indel_len=spec.max_indel_len,
    )
    with hostprof.phase("store: create variants/ (incl. reading the VCF)"):
        store = Store.create(
            out,
            variants,
            chunk_size=spec.chunk_size,
            run_config={**to_attrs(spec), "veff_version": __version__},
            overwrite=spec.overwrite,
        )
    try:
        with _store.write_errors(out, "the store is not finished: fix it, then rerun with "
                                 "--resume (it starts over)"):
            store.root.attrs["centering"] = spec.options.centering
            with hostprof.phase("store: create model arrays"):
                _add_models(spec, store, genome, scorers, gene_index)
            fingerprint = run_fingerprint(spec, genome, [s.handle for s in scorers])
            store.root.attrs["fingerprint"] = fingerprint
            from veff import provenance

            store.root.attrs[provenance.ATTR] = provenance.record(spec, fingerprint, [s.handle for s in scorers])
            store.mark_ready()
    except BaseException:
        store.close()
        raise
    return store


def _add_models(spec: RunSpec, store: Store, genome: Genome, scorers: list[ModelScorer],
                gene_index: Any = None) -> None:
    for s in scorers:
        stats = dict(s.formulas)
        if spec.null_shuffles and s.handle.kind == "profile":
            for name in pvalue_stats(s.stats):
                stats[f"{name}_pval"] = (
                    f"empirical p-value of {name} against {spec.null_shuffles} dinucleotide-"
                    f"shuffled flanks per null variant ({profile_tail(name)} tail; variant-scorer get_pvals)"
                )
        store.add_model(
            s.handle.name,
            tracks=s.track_names,
            stats=stats,
            attrs={**_model_attrs(s.handle), **_window_attrs(s)},
            track_meta=_track_meta(s),
        )
        if s.peaks is not None:
            store.write_model_array(s.handle.name, "peak_counts", np.asarray(s.peaks),
                                    ["fold", "peak"] if s.peaks.ndim == 2 else ["peak"],
                                    {"meaning": "sorted RC-averaged predicted counts of the --peaks set"})
    store.root.attrs["indel_windows"] = spec.options.indel_windows
    if spec.genes is not None:
        from veff import genes_store

        genes_store.create(store, scorers, spec.genes, spec.options.indel_windows, gene_index)
    if spec.null_shuffles:
        _write_nulls(spec, store, genome, scorers)


def open_run(
    spec: RunSpec, genome: Genome, handles: Sequence[ModelHandle]
) -> tuple[Store, list[ModelScorer]]:
    """The store (holding the writer lock) and the scorers of a run: a new store, or with
    ``--resume`` the existing one, whose fingerprint (inputs, models, options) must match
    and whose peak counts and null are reused as stored."""
    from veff.fingerprint import check_resume

    if spec.resume:
        kind = Store.kind(spec.out)
        if kind in (_store.NOT_A_DIR, _store.FOREIGN):
            what = "is not a directory" if kind == _store.NOT_A_DIR else "is not a veff store"
            raise StoreError(f"--resume: {spec.out} {what}; nothing was changed: check --out")
        if kind == _store.STARTED:
            check_resume(spec, genome, handles)
            store = Store.open(spec.out)
            try:
                from veff.genes_store import check_resume as check_genes

                check_genes(store, store.model_names(), spec.genes)
                return store, scorers_for_store(store, spec, genome, list(handles))
            except BaseException:
                store.close()
                raise
        # a veff store killed while being created starts over (Store.create takes its lock)
        spec = dataclasses.replace(spec, overwrite=kind == _store.UNSTARTED)
    scorers = build_scorers(spec, genome, handles)
    return open_or_create(spec, genome, scorers), scorers


def _track_meta(s: ModelScorer) -> dict[str, list]:
    if s.handle.kind != "binned":
        return {}
    meta: dict[str, list] = {}
    tracks = s.handle.tracks
    if list(s.track_names) != list(s.handle.track_names):  # strand pairs summed: first members
        from veff.scoring.track_transforms import strand_groups

        first, _ = strand_groups([int(t.get("strand_pair", i)) for i, t in enumerate(tracks)])
        tracks = [tracks[i] for i in first]
        if any("description" in t for t in tracks):
            meta["description"] = [str(t.get("description", "")) for t in tracks]
        return meta
    if any("description" in t for t in tracks):
        meta["description"] = [str(t.get("description", "")) for t in tracks]
    if any("strand_pair" in t for t in tracks):
        meta["strand_pair"] = [int(t.get("strand_pair", i)) for i, t in enumerate(tracks)]
    return meta


def _write_nulls(spec: RunSpec, store: Store, genome: Genome, scorers: list[ModelScorer]) -> None:
    from veff.calibration import shuffled_null

    status = store.root["variants"]["status"][:]
    ok = np.flatnonzero(status == "ok")
    if len(ok) > spec.null_variants:
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x6E756C6C]))
        ok = np.sort(rng.choice(ok, size=spec.null_variants, replace=False))
    variants = store.read_variant_rows(ok)
    for s in scorers:
        if s.handle.kind != "profile" or not len(ok):
            continue
        null = shuffled_null(s, genome, variants, ok, num_shuffles=spec.null_shuffles, seed=spec.seed)
        for stat in pvalue_stats(s.stats):
            store.write_model_array(s.handle.name, f"null_{stat}", null[stat], ["null", "track"],
                                    {"meaning": f"{stat} of the shuffled null (pooled)"})


def run(spec: RunSpec, progress: ProgressFn | None = None,
        stop: StopRequest | None = None) -> RunResult:
    t0 = time.perf_counter()
    genome = Genome(spec.genome)
    handles = load_handles(spec.models)
    store, scorers = open_run(spec, genome, handles)
    try:
        todo = store.pending_chunks()
        with hostprof.phase("score_chunks (total)"):
            score_chunks(store, genome, scorers, todo, progress, stop, gtf=spec.genes)
    except BaseException:
        store.close()
        raise
    return finish_run(spec, store, len(handles), len(todo), t0)


def finish_run(spec: RunSpec, store: Store, num_models: int, chunks_scored: int, t0: float) -> RunResult:
    """Every chunk is done: mark the store complete, release it, write the consensus."""
    try:
        from veff import provenance

        provenance.finish(store, resumed=spec.resume)
        with hostprof.phase("finalize (consolidate)"):
            store.finalize()
        num_ok = int(np.sum(store.root["variants"]["status"][:] == "ok"))
        num_variants = store.num_variants
    finally:
        store.close()
    return RunResult(
        out=Path(spec.out),
        num_variants=num_variants,
        num_ok=num_ok,
        chunks_scored=chunks_scored,
        seconds=time.perf_counter() - t0,
        consensus_groups=write_run_consensus(spec, num_models),
    )


def write_run_consensus(spec: RunSpec, num_models: int) -> tuple[str, ...]:
    """With ≥ 2 models and consensus on: normalise, combine and compare them (consensus/)."""
    if not spec.consensus or num_models < 2:
        return ()
    from veff.backgrounds import BackgroundSpec
    from veff.consensus import write_consensus

    groups = write_consensus(
        spec.out,
        groups_yaml=spec.groups,
        genome=spec.genome,
        background=BackgroundSpec(num=spec.background_n, seed=spec.seed),
    )
    return tuple(groups)


def profile_tail(stat: str) -> str:
    from veff.scoring.profile import STAT_INFO

    return {"two": "two-sided", "right": "right"}[STAT_INFO[stat].tail]


CHUNK_MAX = 131_072  # rows: with ~20 statistics, ≤ 200 files per model per million rows
CHUNK_BYTES = 256 << 20  # score bytes of one chunk (all models) kept in memory until written


def default_chunk_size(batch_size: int | str, bytes_per_row: int = 0, *, genes: bool = False) -> int:
    """A chunk is the unit of resume and one Zarr chunk of every per-variant array, so its
    size sets the number of files (docs/store.md). The device scores it in blocks
    (``block_rows``), so its size costs memory only for the scores held until it is
    written: the largest power of two ≤ CHUNK_MAX whose scores (``bytes_per_row``, all
    models) fit in CHUNK_BYTES, at least 1024 rows. ``VEFF_CHUNK`` sets the target instead
    (the former default, 1024), as does a gene table (scored a whole chunk at a time).
    Rounded to a whole number of batches (auto batches are powers of two per device)."""
    env = os.environ.get("VEFF_CHUNK")
    if env or genes:
        target = int(env or "1024")
    else:
        fit = CHUNK_BYTES // max(1, bytes_per_row)
        target = 1024
        while target * 2 <= min(CHUNK_MAX, fit):
            target *= 2
    if batch_size == "auto":
        return max(1, target)
    return max(batch_size, (target // batch_size) * batch_size)


def score_bytes_per_row(scorers: Sequence[ModelScorer], null: bool = False) -> int:
    """Bytes of one row's scores over every model (float32 per statistic and track)."""
    total = 0
    for s in scorers:
        stats = len(s.formulas) * (2 if null and s.handle.kind == "profile" else 1)
        total += 4 * stats * len(s.track_names) + 1
    return total
