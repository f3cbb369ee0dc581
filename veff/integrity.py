"""Is a finished store whole, and outputs that appear only when complete.

Zarr reads a chunk file that is not there as its fill value: a deleted score chunk would
export as NaN, a deleted ``variants/pos`` chunk as position 0. :func:`verify` therefore
checks, before ``veff export`` or ``veff report`` reads anything, that the run is complete,
that every chunk has its done marker and that every chunk file of every array exists
(veff writes every chunk, even one holding only the fill value; see veff/store.py).
:func:`reading` turns a chunk that exists but does not decode into the same kind of
one-line refusal, naming the chunk. :func:`replaced_at_end` writes an output under a
temporary name in its directory and renames it into place only once it is complete.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zarr

from veff.store import FORMAT, Store, StoreError


def _arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array]]:
    for name, node in sorted(group.members(), key=lambda kv: kv[0]):
        if isinstance(node, zarr.Array):
            yield prefix + name, node
        else:
            yield from _arrays(node, prefix + name + "/")


def _chunk_coords(arr: zarr.Array) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(-(-s // c)) for s, c in zip(arr.shape, arr.chunks)))


def _by_variant(arr: zarr.Array) -> bool:
    dims = arr.metadata.dimension_names or ()
    return bool(dims) and dims[0] == "variant"


def _hint(store: Store, name: str, arr: zarr.Array, chunk: int) -> str:
    if name.startswith("variants/"):
        return ("the variant table cannot be repaired in place: score the VCF again into a new "
                "store, or with --overwrite")
    if name.startswith("consensus/"):
        return ("write the consensus again: rerun the `veff score` command with --resume "
                "(a planned store: `veff finalize`)")
    if _by_variant(arr):
        marker = store.path / "_veff" / "done" / f"{chunk:08d}"
        return (f"delete its done marker {marker} and rerun the `veff score` command with --resume "
                "(a planned store: rerun its partition, then `veff finalize`) to score it again, "
                "or score the VCF again into a new store")
    return "score the VCF again into a new store, or with --overwrite"


def _damage(store: Store, name: str, arr: zarr.Array, coords: tuple[int, ...], what: str) -> StoreError:
    chunk = coords[0] if coords else 0
    return StoreError(f"{name} chunk {chunk} {what}: the store {store.path} is damaged; "
                      f"{_hint(store, name, arr, chunk)}")


def verify(store: Store, *, decode: bool = False) -> None:
    """Refuse (StoreError naming the first problem) a store that is not complete or whose
    chunk files are not all there; ``decode`` also reads every chunk."""
    if not store.root.attrs.get("complete", False):
        raise StoreError(f"{store.path}: the run is not complete; finish it with --resume first")
    pending = store.pending_chunks()
    if pending:
        raise StoreError(
            f"{store.path}: chunk {pending[0]} has no done marker ({len(pending)} chunk(s) without one) "
            "although the run was marked complete; rerun the `veff score` command with --resume "
            "to score it again"
        )
    required = _required(store)
    for name, arr in _arrays(store.root):
        for coords in _chunk_coords(arr):
            if not required(name, arr, coords):
                continue
            key = arr.metadata.encode_chunk_key(coords)
            if not (store.path / arr.path / key).is_file():
                raise _damage(store, name, arr, coords, "is missing")
            if decode:
                sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, arr.chunks))
                try:
                    arr[sel]
                except Exception as e:  # noqa: BLE001 - any codec error means a damaged chunk
                    raise _damage(store, name, arr, coords, f"cannot be read ({type(e).__name__}: {e})") from None


def _required(store: Store) -> Callable[[str, zarr.Array, tuple[int, ...]], bool]:
    """Which chunk files must exist. Stores of this format write every chunk; older ones
    left out chunks holding only the fill value, so there only the chunks that can never be
    all fill are required: chrom/pos/status, and score chunks with an ok row."""
    if int(store.root.attrs.get("veff_format", 1)) >= FORMAT:
        return lambda name, arr, coords: True
    status = np.asarray(store.root["variants"]["status"][:]).astype(str)
    c = store.chunk_size
    has_ok = [bool((status[a : a + c] == "ok").any()) for a in range(0, len(status), c)]

    def required(name: str, arr: zarr.Array, coords: tuple[int, ...]) -> bool:
        if name.startswith("variants/"):
            return name.split("/")[-1] in ("chrom", "pos", "status")
        if name.startswith("scores/") and _by_variant(arr) and arr.dtype.kind == "f":
            return arr.chunks[0] == c and coords[0] < len(has_ok) and has_ok[coords[0]]
        return False

    return required


@contextlib.contextmanager
def reading(store: Store) -> Iterator[None]:
    """Reading a verified store: a chunk that does not decode becomes one line naming it."""
    try:
        yield
    except StoreError:
        raise
    except (RuntimeError, ValueError, OSError, zarr.errors.BaseZarrError) as exc:
        verify(store, decode=True)  # names the chunk when one is damaged
        raise exc


@contextlib.contextmanager
def replaced_at_end(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary names in each file's own directory, renamed onto ``paths`` when the block
    ends without error (deleted otherwise): a crash never leaves a partial output."""
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.veff-part") for p in paths]
    try:
        yield tmps
        for tmp, final in zip(tmps, paths):
            os.replace(tmp, final)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
