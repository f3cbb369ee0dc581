"""Provenance: how a store (and every export of it) was made, for the methods section and
for finding a result's inputs again a year later (docs/store.md, "Provenance").

The store's root attribute ``provenance`` holds the command line, the working directory,
absolute paths, sizes and SHA-256 of the inputs (the digests the run fingerprint computed
at creation, veff/fingerprint.py, reused rather than read again), each model's name, path
and checkpoint digest, the versions of veff and of the libraries the numbers depend on, the
devices, and the start and end times (``finished`` is written when the run completes; a
``--resume`` adds an entry to ``resumed``).

Exports carry it too: TSV as ``#`` comment lines before the column names (read with
``pandas.read_csv(..., sep="\\t", comment="#")``), VCF as ``##veff...`` header lines,
Parquet as the schema metadata key ``veff.provenance`` (JSON).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veff.models.base import ModelHandle
    from veff.pipeline import RunSpec

ATTR = "provenance"
LIBRARIES = ("veff", "jax", "jaxlib", "flax", "numpy", "zarr", "cyvcf2", "pandas")
# fingerprint key -> provenance name of an input file
INPUT_KEYS = {"VARIANTS": "variants", "--genome": "genome", "--peaks": "peaks",
              "--groups": "groups", "--genes": "genes"}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> list[str]:
    """The command as typed: ``veff`` and its arguments (``python -m veff.cli`` reads the
    same), or the Python program's argv when veff is used as a library."""
    argv = list(sys.argv)
    if argv and (os.path.basename(argv[0]) in ("veff", "cli.py", "__main__.py")
                 or argv[0].endswith(os.path.join("veff", "cli.py"))):
        return ["veff", *argv[1:]]
    return argv


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def devices() -> dict[str, Any]:
    try:
        import jax

        devs = jax.local_devices()
    except Exception:  # noqa: BLE001 - provenance never stops a run
        return {}
    kinds = sorted({f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devs})
    return {"platform": devs[0].platform if devs else "", "kinds": kinds, "count": len(devs)}


def record(spec: RunSpec, fingerprint: dict[str, Any], handles: Sequence[ModelHandle]) -> dict[str, Any]:
    """The provenance of a new store (``fingerprint`` from veff.fingerprint.run_fingerprint)."""
    inputs = {name: fingerprint[key] for key, name in INPUT_KEYS.items() if fingerprint.get(key)}
    models = []
    for h, given in zip(handles, spec.models):
        models.append({"name": h.name, "given": given, "path": _model_path(given),
                       "sha256": h.sha256, "arch": h.arch})
    return {
        "command": command_line(),
        "cwd": os.getcwd(),
        "started": now(),
        "finished": None,
        "inputs": inputs,
        "models": models,
        "versions": versions(),
        "devices": devices(),
    }


def _model_path(given: str) -> str:
    from veff.models.registry import resolve, split_spec

    try:
        return str(resolve(split_spec(given)[1])[0].resolve())
    except Exception:  # noqa: BLE001 - provenance never stops a run
        return given


def finish(store, *, resumed: bool) -> None:
    """Write the end time (and, after ``--resume``, that command) into the store's attrs."""
    prov = dict(store.root.attrs.get(ATTR) or {})
    if not prov:
        return
    if resumed:
        prov["resumed"] = [*prov.get("resumed", []), {"command": command_line(), "at": now()}]
    prov["finished"] = now()
    store.root.attrs[ATTR] = prov


def of_export(root_attrs: dict[str, Any], store_path: str | os.PathLike) -> dict[str, Any]:
    """What an export's header says: the export command, the store, and the store's run."""
    return {"export_command": command_line(), "exported": now(),
            "store": os.path.abspath(store_path), "veff_version": versions().get("veff", ""),
            "run": root_attrs.get(ATTR) or {}}


def flat_lines(prov: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, value)`` pairs, one per line of a text header: dotted keys, JSON values."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix.endswith("command") and isinstance(value, list):
            out.append((prefix, " ".join(_quote(a) for a in value)))
        else:
            out.append((prefix, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))

    walk("", prov)
    return out


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))
