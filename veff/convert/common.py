"""Strict assignment of foreign weights into veff's param trees.

Every converter builds the tree it expects abstractly (a tree of ``jax.ShapeDtypeStruct``:
``bpnet.abstract_params`` or ``jax.eval_shape`` of a model's init), renames the source's tensors to veff keys, and hands both to :func:`assign`.
Nothing is filled by default and nothing is dropped silently: one error lists EVERY
missing key, unexpected key and shape mismatch, so a wrong file is diagnosed in one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from veff.checkpoint import flatten, unflatten

# Bumped when a converter's output for the same input would change.
CONVERTER_VERSION = 1


class ConvertError(Exception):
    """A source checkpoint cannot be converted (wrong format, missing or extra weights)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Converted:
    """What a format reader returns for one source file (one fold).

    ``facts`` go into the checkpoint's metadata; include ``window_len`` and ``output_len`` so
    ``veff models`` can list a model without loading its weights.
    """

    arch: str
    config: dict[str, Any]
    params: dict[str, Any]
    facts: dict[str, Any]
    tracks: list[dict[str, Any]] | None = None


def _shape_tree(tree: Any) -> dict[str, tuple[int, ...]]:
    """Flat {key: shape} of a tree of arrays or ShapeDtypeStructs."""
    out: dict[str, tuple[int, ...]] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}/")
        else:
            out[prefix[:-1]] = tuple(int(d) for d in node.shape)

    walk(tree, "")
    return out


def _limit(items: list[str], n: int = 50) -> str:
    more = f", … ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def match_params(
    expected: Any, found: Any, *, source: str, error: type[Exception] = ConvertError
) -> tuple[dict[str, Any], int]:
    """Check ``found`` (a nested dict of arrays) against the ``expected`` shape tree.

    Every leaf must have the expected shape, or every leaf must have one extra leading axis
    of the same size (stacked folds). Returns (float32 params tree, num_folds); raises
    ``error`` listing every problem otherwise.
    """
    want = _shape_tree(expected)
    have = {k: np.asarray(v) for k, v in flatten(found).items()}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    common = sorted(set(want) & set(have))

    fold_sizes = {have[k].shape[0] for k in common if have[k].shape[1:] == want[k]
                  and have[k].ndim == len(want[k]) + 1}
    folded = bool(common) and all(
        have[k].ndim == len(want[k]) + 1 and have[k].shape[1:] == want[k] for k in common
    ) and len(fold_sizes) == 1
    bad_shape = []
    for k in common:
        ok = have[k].shape[1:] == want[k] if folded else have[k].shape == want[k]
        if not ok:
            bad_shape.append(f"{k} {have[k].shape} (expected {want[k]})")
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_limit(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_limit(unexpected)}")
    if bad_shape:
        problems.append(f"wrong shape {len(bad_shape)}: {_limit(bad_shape)}")
    if problems:
        raise error(f"{source}: weights do not match the model; " + "; ".join(problems))
    num_folds = fold_sizes.pop() if folded else 1
    params = unflatten({k: np.asarray(have[k], dtype=np.float32) for k in want})
    return params, num_folds


def assign(expected: Any, found: dict[str, np.ndarray], *, source: str) -> dict[str, Any]:
    """Converters' entry point: ``found`` is flat ({"a/b/kernel": array}) in veff's names.

    Exactly the expected keys with exactly the expected shapes (no fold axis here: folds are
    stacked by :func:`stack_folds` after each fold was assigned on its own).
    """
    params, num_folds = match_params(expected, unflatten(found), source=source)
    if num_folds != 1:
        raise ConvertError(f"{source}: weights carry an unexpected leading axis")
    return params


def stack_folds(trees: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """Stack same-shaped param trees on a new leading fold axis."""
    flats = [flatten(t) for t in trees]
    keys = set(flats[0])
    for f, s in zip(flats[1:], sources[1:]):
        if set(f) != keys or any(f[k].shape != flats[0][k].shape for k in keys):
            raise ConvertError(f"{s}: its weights differ in layout from {sources[0]}; "
                               "folds must share one architecture")
    return unflatten({k: np.stack([f[k] for f in flats]) for k in sorted(keys)})


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def source_record(paths: list[str], fmt: str, converter: str) -> dict[str, Any]:
    """Provenance for a checkpoint's metadata."""
    import veff

    return {
        "format": fmt,
        "converter": converter,
        "converter_version": CONVERTER_VERSION,
        "veff_version": veff.__version__,
        "source_files": [str(Path(p).resolve()) for p in paths],
        "source_sha256": [file_sha256(p) for p in paths],
    }


def check_sources(paths: list[str]) -> None:
    if not paths:
        raise ConvertError("no source files given")
    for p in paths:
        if not Path(p).exists():
            raise ConvertError(f"{p}: no such file or directory")
    if len(set(map(lambda p: str(Path(p).resolve()), paths))) != len(paths):
        raise ConvertError("the same source file was given twice; each fold must be one file")
