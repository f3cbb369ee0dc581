"""veff's native checkpoint format: a directory holding

- ``weights.safetensors``: flat ``{"path/to/param": array}`` tensors (no pickle, ever);
- ``config.json``: ``{"format_version": 2, "arch": ..., "config": {...}, "tracks": [...],
  "metadata": {...}, "sha256": <digest>}``.

The digest (format 2) covers everything that can change a number or its label: sha256 of a
header line, the canonical JSON of config.json's ``format_version``, ``arch``, ``config``,
``tracks`` (names, strand pairs, targets-file columns) and the metadata the model builders
read (``DIGEST_METADATA``), then the bytes of weights.safetensors. Loading verifies it, so
an edited config (a gamma setting, a track list) or a truncated weights file is an error,
not a silently different model, and two checkpoints with one digest score alike. The rest
of metadata (name, provenance) is description: a renamed copy keeps its digest. Format 1
checkpoints (digest of the weights file only) still load: their weights are checked against
the stored digest and the checkpoint's ``sha256`` is the format-2 digest computed on load.
Weights must be finite: a NaN or Inf tensor is refused by name.
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
FORMAT_VERSION = 2
_DIGEST_HEADER = b"veff checkpoint digest v2\n"
# metadata read by the model builders (track names of a head, the track of a lone BPNet);
# the rest of metadata (name, provenance, converter facts) describes and is not digested,
# so a renamed copy of a model shares its digest (and its cached backgrounds).
DIGEST_METADATA = ("head_tracks", "role")


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


def _sha256(path: Path, h: Any = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k not in ("sha256", "metadata")}
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    body["metadata"] = {k: meta[k] for k in DIGEST_METADATA if k in meta}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True).encode()


def checkpoint_digest(doc: dict[str, Any], weights: str | os.PathLike) -> str:
    """The format-2 digest: config.json's content (less ``sha256``) and the weights bytes."""
    h = hashlib.sha256(_DIGEST_HEADER)
    body = _canonical(doc)
    h.update(f"{len(body)}\n".encode())
    h.update(body)
    return _sha256(Path(weights), h)


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
    _check_finite(flat, directory / WEIGHTS)
    save_file(flat, str(directory / WEIGHTS))
    doc = write_config(directory, {"arch": arch, "config": config, "tracks": tracks or [],
                                   "metadata": metadata or {}})
    digest = doc["sha256"]
    return Checkpoint(
        arch=arch,
        config=config,
        params=flat,
        tracks=doc["tracks"],
        metadata=doc["metadata"],
        sha256=digest,
        path=directory,
    )


def write_config(directory: str | os.PathLike, doc: dict[str, Any]) -> dict[str, Any]:
    """Write ``doc`` as the config.json of ``directory`` (whose weights are written), with
    the current format version and its digest; returns what was written. Anything that
    edits a checkpoint's config.json (e.g. ``veff fetch`` stamping its metadata) goes
    through here, so the digest stays valid."""
    directory = Path(directory)
    doc = {**doc, "format_version": FORMAT_VERSION}
    doc.pop("sha256", None)
    doc = json.loads(json.dumps(doc))  # the digest is of what a reader parses back
    doc["sha256"] = checkpoint_digest(doc, directory / WEIGHTS)
    tmp = directory / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / CONFIG)
    return doc


def _check_finite(flat: dict[str, np.ndarray], where: Path) -> None:
    for key, a in flat.items():
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            bad = "NaN" if np.isnan(a).any() else "Inf"
            raise CheckpointError(f"{where}: tensor {key!r} holds {bad} values; the weights "
                                  "are corrupt (convert or train the model again)")


def _read_doc(cfg_path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{cfg_path}: not a text file") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{cfg_path}: holds a JSON {type(doc).__name__}, not an object; "
                              "the checkpoint is damaged (convert it again)")
    for key, kind in (("arch", str), ("config", dict), ("sha256", str)):
        if key not in doc:
            raise CheckpointError(f"{cfg_path}: missing field {key!r}")
        if not isinstance(doc[key], kind):
            raise CheckpointError(f"{cfg_path}: field {key!r} is not a JSON "
                                  f"{'string' if kind is str else 'object'}")
    for key, kind in (("tracks", list), ("metadata", dict)):
        if not isinstance(doc.get(key, kind()), kind):
            raise CheckpointError(f"{cfg_path}: field {key!r} is not a JSON "
                                  f"{'list' if kind is list else 'object'}")
    return doc


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read a native checkpoint; params come back flat (``"a/b/kernel"`` keys)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG, directory / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        missing = [p.name for p in (cfg_path, w_path) if not p.is_file()]
        raise CheckpointError(
            f"{directory}: not a veff checkpoint (no {' or '.join(missing)}); "
            "convert one with `veff convert`"
        )
    doc = _read_doc(cfg_path)
    version = doc.get("format_version", 1)
    digest = checkpoint_digest(doc, w_path)
    if version == 1:  # digest of the weights file alone
        stored, computed, what = doc["sha256"], _sha256(w_path), w_path
    elif version == 2:
        stored, computed, what = doc["sha256"], digest, directory
    else:
        raise CheckpointError(f"{cfg_path}: format_version {version!r} is not one this veff "
                              f"reads (1 or {FORMAT_VERSION}); upgrade veff")
    if computed != stored:
        raise CheckpointError(
            f"{what}: sha256 {computed[:12]}… does not match config.json "
            f"({stored[:12]}…); "
            + ("the weights file was changed or truncated" if version == 1 else
               "weights.safetensors or config.json was changed or truncated")
        )
    try:
        params = dict(load_file(str(w_path)))
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{w_path}: not a readable safetensors file "
                              f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    _check_finite(params, w_path)
    return Checkpoint(
        arch=doc["arch"],
        config=doc["config"],
        params=params,
        tracks=doc.get("tracks", []),
        metadata=doc.get("metadata", {}),
        sha256=digest,
        path=directory,
    )
