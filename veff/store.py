"""The Zarr store: layout (the contract in docs/store.md), region writes, done markers, resume.

Layout::

    OUT.zarr/
      variants/        (variant,) chrom, pos, ref, alt, id, status, ... one row per ALT allele
      scores/<model>/  (variant, track) one float32 array per statistic, `track` coordinate
      _veff/           done markers (one file per chunk of variants) and the writer lock

A run first streams every input row into ``variants/`` (constant memory), then scores
chunk by chunk: each chunk's region is written for every model and only then is its done
marker created (write to a temporary name, then rename), so ``--resume`` redoes exactly the
chunks without a marker and an interrupted run never leaves a chunk half-counted.

Only veff's own stores are ever replaced (``--overwrite``) or restarted: a directory is one
when its root attrs carry ``veff_format`` (written first, before any row) or, from older
versions, ``veff_version``. Every chunk of every array is written even when it holds only
the fill value, so a missing chunk file always means damage (see veff/integrity.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from veff import __version__
from veff.store_dir import (  # noqa: F401 - re-exported: the store's names in one place
    ABSENT,
    EMPTY,
    FOREIGN,
    LOCK_NAME,
    NOT_A_DIR,
    STARTED,
    UNSTARTED,
    WRITE_ERRORS,
    StoreError,
    empty_dir,
    path_kind,
    root_attrs,
    take_lock,
    write_error,
    write_errors,
)
from veff.types import Status, Variant

CENTRING = "REF allele's first base at 0-based window index L // 2"
FORMAT = 2  # root attr veff_format; 2: every chunk stored (stores without it are format 1)

# zarr leaves out a chunk that holds only the fill value (an all-NaN score chunk, an
# all-False flag), which reads back exactly as a deleted chunk file does. veff writes every
# chunk so that a missing one is always damage, never a value.
zarr.config.set({"array.write_empty_chunks": True})



_RESUME_HINT = "every chunk marked done is kept: fix it, then rerun with --resume"

# (name, zarr dtype, how to read it off a Variant)
_VARIANT_COLUMNS: tuple[tuple[str, Any, Any], ...] = (
    ("chrom", str, lambda v: v.chrom),
    ("pos", "int64", lambda v: v.pos1),
    # Scores are oriented ALT vs REF as the input gave them, so a row flipped by
    # --ref-mismatch flip keeps the input's alleles here (REF is then not the genome base).
    ("ref", str, lambda v: v.alt if v.flipped else v.ref),
    ("alt", str, lambda v: v.ref if v.flipped else v.alt),
    ("id", str, lambda v: v.id),
    ("status", str, lambda v: str(v.status)),
    ("flipped", "bool", lambda v: v.flipped),
    ("record", "int64", lambda v: v.record),
    ("orig_pos", "int64", lambda v: v.orig_pos1 if v.orig_pos1 is not None else v.pos1),
    ("orig_ref", str, lambda v: v.orig_ref if v.orig_ref is not None else v.ref),
    ("orig_alt", str, lambda v: v.orig_alt if v.orig_alt is not None else v.alt),
    ("fasta_chrom", str, lambda v: v.fasta_chrom or ""),
)


def _column_array(name: str, dtype: Any, values: list) -> np.ndarray:
    if dtype is str:
        return np.array(values, dtype=object)
    return np.asarray(values, dtype=dtype)


class Store:
    """A veff output store on the local file system."""

    def __init__(self, path: str | os.PathLike, root: zarr.Group):
        self.path = Path(path)
        self.root = root
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        variants: Iterable[Variant],
        *,
        chunk_size: int,
        run_config: dict[str, Any],
        overwrite: bool = False,
    ) -> "Store":
        """Stream every row into ``variants/`` (constant memory) and return the open store.

        ``path`` may be absent, an empty directory, or (with ``overwrite``) a veff store no
        other process writes: anything else is refused and left as it is."""
        path = Path(path)
        kind = Store.kind(path)
        if kind == NOT_A_DIR:
            raise StoreError(f"{path} exists and is not a directory; veff writes its store into a new "
                             "or empty directory, or over its own store: choose another --out "
                             "(nothing was changed)")
        if kind == FOREIGN:
            raise StoreError(f"{path} is a directory but not a veff store; veff only ever replaces "
                             "its own stores, so nothing was deleted: choose another --out, or "
                             "move its contents away yourself")
        if kind in (STARTED, UNSTARTED) and not overwrite:
            raise StoreError(
                f"{path} already exists; pass --resume to finish it or --overwrite to replace it"
            )
        made = kind == ABSENT
        with write_errors(path, "nothing was written"):
            path.mkdir(parents=True, exist_ok=True)
        # Locked before anything is deleted, and held from then on: a store that another
        # process writes is never replaced, and no one can start writing this one meanwhile.
        fd = take_lock(path, shared=False, busy="is held by another writer ({holder}); it is not "
                       "replaced while in use: stop that run first, or choose another --out")
        store = cls(path, None)
        try:
            if kind in (STARTED, UNSTARTED):
                empty_dir(path, keep=LOCK_NAME)
            store.root = root = zarr.open_group(str(path), mode="a")
            root.attrs["veff_format"] = FORMAT  # veff's from the first byte: may be restarted
            store.lock(fd)
            n = store._write_variants(variants, chunk_size)
            root.attrs.update(
                {
                    "veff_format": FORMAT,
                    "veff_version": __version__,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "centring": CENTRING,
                    "coordinates": "pos is the 1-based VCF position of the normalised allele",
                    "num_variants": n,
                    "chunk_size": chunk_size,
                    "run": run_config,
                    "models": [],
                    "complete": False,
                    "ready": False,  # set by mark_ready once every model's arrays exist
                }
            )
            (path / "_veff" / "done").mkdir(parents=True, exist_ok=True)
        except BaseException as exc:
            # The input could not be read to its end, or the disk is full: leave no
            # half-made store behind.
            if made:
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    empty_dir(path, keep=None)
            os.close(fd)
            store._lock_fd = None
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
                raise write_error(path, exc, "nothing was kept: fix it and run again") from None
            raise
        return store

    def _write_variants(self, variants: Iterable[Variant], chunk_size: int) -> int:
        group = self.root.create_group("variants")
        arrays = {
            name: group.create_array(
                name,
                shape=(0,),
                chunks=(chunk_size,),
                dtype=dtype,
                dimension_names=["variant"],
            )
            for name, dtype, _ in _VARIANT_COLUMNS
        }
        n = 0
        # Whole chunks, about WRITE_ROWS rows at a time: each resize rewrites an array's
        # metadata and each write is a round trip to zarr's event loop, so per-chunk writes
        # spent most of the time there (32 s of 45 s per million rows, against 13 s reading).
        rows_per_write = chunk_size * max(1, WRITE_ROWS // chunk_size)
        for block in _blocks(variants, rows_per_write):
            for name, dtype, get in _VARIANT_COLUMNS:
                arr = arrays[name]
                arr.resize((n + len(block),))
                arr[n : n + len(block)] = _column_array(name, dtype, [get(v) for v in block])
            n += len(block)
        return n

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r+") -> "Store":
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a veff store (no zarr.json)")
        # Never trust consolidated metadata while writing: it is a snapshot of the last finalize.
        root = zarr.open_group(str(path), mode=mode, use_consolidated=False if mode != "r" else None)
        if "veff_version" not in root.attrs:
            raise StoreError(f"{path}: a Zarr store, but not one written by veff")
        store = cls(path, root)
        if mode != "r":
            store.lock()
        return store

    # ------------------------------------------------------------------ exclusivity
    def lock(self, fd: int | None = None) -> None:
        """Hold an exclusive lock for the life of this process (released even on kill -9);
        ``fd``: one already taken with :func:`take_lock`."""
        if fd is None:
            fd = take_lock(self.path, shared=False, busy="is being written by {holder}; wait for "
                           "it to finish or stop it before resuming")
        os.ftruncate(fd, 0)
        os.write(fd, f"veff pid {os.getpid()} on {os.uname().nodename}".encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ facts
    @staticmethod
    def is_started(path: str | os.PathLike) -> bool:
        """A store whose variant table and model arrays were fully written (a run killed
        while creating it leaves one that is not, which a resume starts over)."""
        return Store.kind(path) == STARTED

    @staticmethod
    def kind(path: str | os.PathLike) -> str:
        """ABSENT, EMPTY (a directory holding nothing, or only a lock file), NOT_A_DIR,
        FOREIGN (anything but a veff store), UNSTARTED (veff's, killed while being created)
        or STARTED."""
        return path_kind(path)

    def mark_ready(self) -> None:
        """Every model's arrays are written: from now on --resume continues this store."""
        self.root.attrs["ready"] = True

    @property
    def num_variants(self) -> int:
        return int(self.root.attrs["num_variants"])

    @property
    def chunk_size(self) -> int:
        return int(self.root.attrs["chunk_size"])

    @property
    def num_chunks(self) -> int:
        return -(-self.num_variants // self.chunk_size)

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_size
        return start, min(start + self.chunk_size, self.num_variants)

    def read_columns(self, start: int, stop: int, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Columns of ``variants/`` for rows ``[start, stop)`` (all of them by default)."""
        g = self.root["variants"]
        names = [n for n, _, _ in _VARIANT_COLUMNS] if names is None else list(names)
        return {name: np.asarray(g[name][start:stop]) for name in names}

    def read_variants(self, start: int, stop: int) -> list[Variant]:
        return variants_from_columns(self.read_columns(start, stop))

    # ------------------------------------------------------------------ scores
    def add_model(
        self,
        name: str,
        *,
        tracks: list[str],
        stats: dict[str, str],
        attrs: dict[str, Any],
        track_meta: dict[str, list] | None = None,
    ) -> None:
        """Create ``scores/<name>/`` with one NaN-filled (variant, track) array per statistic.

        ``stats`` maps statistic name -> formula text (kept in the array's attrs);
        ``track_meta`` adds per-track columns (description, strand_pair, ...) along ``track``.
        """
        n, c = self.num_variants, self.chunk_size
        group = self.root.require_group("scores").create_group(name)
        track = group.create_array("track", shape=(len(tracks),), dtype=str, dimension_names=["track"])
        track[:] = np.array(tracks, dtype=object)
        for key, column in (track_meta or {}).items():
            values = np.array(column, dtype=object if isinstance(column[0], str) else None)
            col = group.create_array(
                f"track_{key}", shape=(len(tracks),), dtype=str if values.dtype == object else values.dtype,
                dimension_names=["track"],
            )
            col[:] = values
        for stat, formula in stats.items():
            arr = group.create_array(
                stat,
                shape=(n, len(tracks)),
                chunks=(c, len(tracks)),
                dtype="float32",
                fill_value=np.nan,
                dimension_names=["variant", "track"],
            )
            # xarray shows these: what the number is and its unit (effects are unitless)
            arr.attrs.update({"formula": formula, "long_name": f"{stat} of {name}: {formula}",
                              "units": "1"})
        padded = group.create_array(
            "window_padded", shape=(n,), chunks=(c,), dtype="bool", dimension_names=["variant"]
        )
        padded.attrs["meaning"] = "the model's window ran past a contig end and was padded with N"
        group.attrs.update({"model": name, **attrs, "statistics": list(stats)})
        self.root.attrs["models"] = [*self.root.attrs["models"], name]

    def write_model_array(
        self, model: str, name: str, values: np.ndarray, dims: list[str], attrs: dict | None = None
    ) -> None:
        """An extra array in ``scores/<model>/`` (peak counts, the shuffled null, ...)."""
        values = np.asarray(values)
        arr = self.root["scores"][model].create_array(
            name, shape=values.shape, dtype=values.dtype, dimension_names=dims, overwrite=True
        )
        arr[...] = values
        arr.attrs.update(attrs or {})

    def read_model_array(self, model: str, name: str) -> np.ndarray | None:
        group = self.root["scores"][model]
        return np.asarray(group[name][...]) if name in group else None

    def read_variant_rows(self, rows: np.ndarray) -> list[Variant]:
        """Variants at sorted row indices, reading one chunk at a time."""
        out: list[Variant] = []
        rows = np.asarray(rows, dtype=np.int64)
        for chunk in np.unique(rows // self.chunk_size):
            start, stop = self.chunk_range(int(chunk))
            block = self.read_variants(start, stop)
            out.extend(block[r - start] for r in rows[(rows >= start) & (rows < stop)])
        return out

    def model_names(self) -> list[str]:
        return list(self.root.attrs["models"])

    def write_scores(
        self, model: str, start: int, scores: dict[str, np.ndarray], padded: np.ndarray
    ) -> None:
        group = self.root["scores"][model]
        stop = start + len(padded)
        with write_errors(self.path, _RESUME_HINT):
            for stat, values in scores.items():
                group[stat][start:stop] = np.asarray(values, dtype=np.float32)
            group["window_padded"][start:stop] = np.asarray(padded, dtype=bool)

    # ------------------------------------------------------------------ done markers
    def _marker(self, chunk: int) -> Path:
        return self.path / "_veff" / "done" / f"{chunk:08d}"

    def mark_done(self, chunk: int) -> None:
        marker = self._marker(chunk)
        tmp = marker.with_suffix(".wip")
        with write_errors(self.path, _RESUME_HINT):
            tmp.write_text(json.dumps({"range": self.chunk_range(chunk)}))
            tmp.replace(marker)

    def is_done(self, chunk: int) -> bool:
        return self._marker(chunk).exists()

    def pending_chunks(self) -> list[int]:
        return [c for c in range(self.num_chunks) if not self.is_done(c)]

    def finalize(self) -> None:
        """Mark the run complete and consolidate metadata so plain ``xarray.open_zarr`` works."""
        missing = self.pending_chunks()
        if missing:
            raise StoreError(
                f"{self.path}: {len(missing)} chunk(s) not done (first: {missing[0]}); "
                "rerun with --resume"
            )
        self.root.attrs.update({"complete": True, "ready": True})
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not in the v3 spec; xarray reads it.
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(self.path))


def variants_from_columns(cols: dict[str, np.ndarray], rows: Iterable[int] | None = None) -> list[Variant]:
    """``Variant`` rows from ``Store.read_columns`` (all columns), at ``rows`` or all."""
    out = []
    for i in range(len(cols["pos"])) if rows is None else rows:
        flipped = bool(cols["flipped"][i])
        ref, alt = str(cols["ref"][i]), str(cols["alt"][i])
        out.append(
            Variant(
                chrom=str(cols["chrom"][i]),
                pos1=int(cols["pos"][i]),
                # Variant.ref is the genome's allele (see the column comment above)
                ref=alt if flipped else ref,
                alt=ref if flipped else alt,
                id=str(cols["id"][i]),
                status=Status(str(cols["status"][i])),
                fasta_chrom=str(cols["fasta_chrom"][i]) or None,
                flipped=flipped,
                record=int(cols["record"][i]),
                orig_pos1=int(cols["orig_pos"][i]),
                orig_ref=str(cols["orig_ref"][i]),
                orig_alt=str(cols["orig_alt"][i]),
            )
        )
    return out


WRITE_ROWS = 65_536  # rows per write while streaming the input into variants/


def _blocks(items: Iterable[Variant], size: int) -> Iterator[list[Variant]]:
    block: list[Variant] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


@contextlib.contextmanager
def opened(path: str | os.PathLike, mode: str = "r"):
    store = Store.open(path, mode=mode)
    try:
        yield store
    finally:
        store.close()
