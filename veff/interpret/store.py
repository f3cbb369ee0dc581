"""Zarr stores of the interpretation commands (ISM maps, contribution scores).

Layout (every array carries ``dimension_names``, so xarray opens it)::

    variants/            (variant,) chrom, pos, ref, alt, id, status, … as in the score store
    scores/<model>/      one group per model
        <stat>           ISM: (variant, position, base, track) float32
        <stat>_on_alt    ISM on the ALT background (--on-alt)
        track            (track,) names
    genomic_pos          (variant, position) int64, 1-based genome position of each map column
    base                 (base,) "A", "C", "G", "T"

Contribution stores use the same ``variants/`` (or ``regions/``) group; see contrib.py.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from veff import __version__
from veff.store import _VARIANT_COLUMNS, StoreError, _column_array
from veff.types import Variant


def create(path: str | Path, *, overwrite: bool, kind: str, attrs: dict[str, Any]) -> zarr.Group:
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise StoreError(f"{path} already exists; pass --overwrite to replace it")
        shutil.rmtree(path)
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({
        "veff_version": __version__,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **attrs,
    })
    return root


def write_variants(root: zarr.Group, variants: Sequence[Variant]) -> None:
    """The score store's ``variants/`` columns, one row per variant."""
    group = root.create_group("variants")
    for name, dtype, get in _VARIANT_COLUMNS:
        values = _column_array(name, dtype, [get(v) for v in variants])
        arr = group.create_array(name, shape=(len(variants),), dtype=dtype if dtype is not str else str,
                                 dimension_names=["variant"])
        if len(variants):
            arr[:] = values


def write_array(group: zarr.Group, name: str, data: np.ndarray, dims: Sequence[str],
                attrs: dict[str, Any] | None = None) -> zarr.Array:
    data = np.asarray(data)
    if data.dtype.kind in "UO":
        arr = group.create_array(name, shape=data.shape, dtype=str, dimension_names=list(dims))
        data = data.astype(object)
    else:
        chunks = tuple(min(s, 64) if i == 0 else s for i, s in enumerate(data.shape)) or None
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                 dimension_names=list(dims))
    if data.size:
        arr[...] = data
    if attrs:
        arr.attrs.update(attrs)
    return arr


def read_variant_table(root: zarr.Group) -> dict[str, np.ndarray]:
    g = root["variants"]
    return {k: np.asarray(g[k][:]) for k in g.array_keys()}


def open_store(path: str | Path) -> zarr.Group:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such store")
    return zarr.open_group(str(path), mode="r+")
