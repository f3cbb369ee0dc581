"""Model names and checkpoint directories -> ModelHandle (``--model M``, ``veff models``).

A model spec is a path to a converted checkpoint directory, or the name of one: a
subdirectory of the models directory (``$VEFF_MODELS``, else ``~/.cache/veff/models``).
The builder is chosen by the checkpoint's ``arch``; adding an architecture is one line in
``_BUILDERS`` ("module:function", imported only when such a checkpoint is loaded).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any

from veff.checkpoint import CONFIG, CheckpointError, load_checkpoint
from veff.models.base import ModelHandle

_BUILDERS = {
    "bpnet": "veff.models.bpnet:from_checkpoint",
    "chrombpnet": "veff.models.bpnet:from_checkpoint",
    "borzoi": "veff.models.borzoi:from_checkpoint",
    "enformer": "veff.models.enformer:from_checkpoint",
    "scbasset": "veff.models.scbasset:from_checkpoint",
    "alphagenome": "veff.models.alphagenome:from_checkpoint",
}


def models_dir() -> Path:
    return Path(os.environ.get("VEFF_MODELS") or Path.home() / ".cache" / "veff" / "models")


def resolve(spec: str) -> tuple[Path, str | None]:
    """A checkpoint directory path, or a registered name -> (directory, registered name)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p, None
    if "/" not in spec and os.sep not in spec and (models_dir() / spec / CONFIG).is_file():
        return models_dir() / spec, spec
    known = [m["name"] for m in list_models()]
    import difflib

    close = difflib.get_close_matches(spec, known, n=1) if "/" not in spec else []
    mean = f"did you mean {close[0]!r}? " if close else ""
    hint = f"registered: {', '.join(known)}" if known else f"none registered in {models_dir()}"
    raise CheckpointError(f"{spec}: no such checkpoint directory or registered model ({mean}{hint})")


def split_spec(spec: str) -> tuple[str | None, str]:
    """``--model NAME=PATH`` -> (NAME, PATH); a plain path or registered name -> (None, spec).
    NAME becomes the store's ``scores/<NAME>`` group (two checkpoints with the same internal
    name can be scored together this way). A directory whose own name holds ``=`` is a path."""
    name, eq, path = spec.partition("=")
    if not eq or Path(spec).expanduser().is_dir() or "/" in name or os.sep in name:
        return None, spec
    if not name or not path:
        raise CheckpointError(f"--model {spec!r}: expected NAME=PATH (both non-empty)")
    return name, path


def builder(arch: str):
    if arch not in _BUILDERS:
        raise CheckpointError(f"unknown architecture {arch!r}; known: {', '.join(_BUILDERS)}")
    module, func = _BUILDERS[arch].split(":")
    return getattr(importlib.import_module(module), func)


def load_model(spec: str, name: str | None = None) -> ModelHandle:
    """Load a checkpoint (verifying its sha256) and build its handle.

    The handle's name is ``name`` if given, else the registered name the model was loaded
    by, else what the checkpoint says (its converter's ``--name``, or its directory name).
    """
    given_name, spec = split_spec(spec)
    name = name or given_name
    directory, registered = resolve(spec)
    ckpt = load_checkpoint(directory)
    handle = builder(ckpt.arch)(ckpt)
    if (name or registered) and (name or registered) != handle.name:
        handle = dataclasses.replace(handle, name=name or registered)
    return handle


def _window(doc: dict[str, Any]) -> int | None:
    """Window length from a checkpoint's config.json without loading weights: converters put
    ``window_len`` in metadata; older or foreign ones may only have it in config."""
    meta, cfg = doc.get("metadata", {}), doc.get("config", {})
    for d in (meta, cfg, cfg.get("accessibility", {}) if isinstance(cfg, dict) else {}):
        for key in ("window_len", "input_len", "seq_len", "sequence_length"):
            if isinstance(d, dict) and isinstance(d.get(key), int):
                return d[key]
    return None


def list_models() -> list[dict[str, Any]]:
    """Registered models: [{name, arch, window, tracks, path}], sorted by name.

    Reads only config.json (weights are verified when a model is loaded). Directories that
    are not checkpoints are skipped; a malformed config.json is listed with arch "invalid".
    """
    root = models_dir()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg = d / CONFIG
        if not cfg.is_file():
            continue
        try:
            doc = json.loads(cfg.read_text())
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            out.append({"name": d.name, "arch": "invalid", "window": None, "tracks": [],
                        "path": str(d)})
            continue
        out.append({
            "name": d.name,
            "arch": doc.get("arch", "invalid"),
            "window": _window(doc),
            "tracks": [t.get("name") for t in doc.get("tracks", []) if isinstance(t, dict)],
            "path": str(d),
        })
    return out
