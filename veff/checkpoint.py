"""veff's native checkpoint format: a directory holding

- ``weights.safetensors``: flat ``{"path/to/param": array}`` tensors (no pickle, ever);
- ``config.json``: ``{"arch": ..., "config": {...}, "tracks": [...], "metadata": {...},
  "sha256": <hex digest of weights.safetensors>}``.

Loading verifies the digest, so a truncated or edited weights file is an error, not a
silently different model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint directory is missing, malformed or does not match its digest."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checkpoint:
    arch: str
    config: dict[str, Any]
    params: dict[str, np.ndarray]
    tracks: list[dict[str, Any]]
    metadata: dict[str, Any]
    sha256: str
    path: Path | None = None


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts (or lists) of arrays -> ``{"a/b/0": array}``."""
    out: dict[str, np.ndarray] = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list, tuple)):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten` for dict-only trees."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    arch: str,
    config: dict[str, Any],
    params: dict[str, Any],
    tracks: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Checkpoint:
    """Write ``params`` (a nested dict of arrays) and its config; returns what was written."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = {k: np.ascontiguousarray(v) for k, v in flatten(params).items()}
    save_file(flat, str(directory / WEIGHTS))
    digest = _sha256(directory / WEIGHTS)
    doc = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": config,
        "tracks": tracks or [],
        "metadata": metadata or {},
        "sha256": digest,
    }
    tmp = directory / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / CONFIG)
    return Checkpoint(
        arch=arch,
        config=config,
        params=flat,
        tracks=doc["tracks"],
        metadata=doc["metadata"],
        sha256=digest,
        path=directory,
    )


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read a native checkpoint; params come back flat (``"a/b/kernel"`` keys)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG, directory / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(
            f"{directory}: not a veff checkpoint (needs {CONFIG} and {WEIGHTS}); "
            "convert one with `veff convert`"
        )
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from None
    for key in ("arch", "config", "sha256"):
        if key not in doc:
            raise CheckpointError(f"{cfg_path}: missing field {key!r}")
    digest = _sha256(w_path)
    if digest != doc["sha256"]:
        raise CheckpointError(
            f"{w_path}: sha256 {digest[:12]}… does not match config.json "
            f"({doc['sha256'][:12]}…); the weights file was changed or truncated"
        )
    return Checkpoint(
        arch=doc["arch"],
        config=doc["config"],
        params=dict(load_file(str(w_path))),
        tracks=doc.get("tracks", []),
        metadata=doc.get("metadata", {}),
        sha256=digest,
        path=directory,
    )
