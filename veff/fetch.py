"""``veff fetch NAME``: download published weights and convert them into the models dir.

NAME is a key of ``configs/known_models.yaml`` (repo id, revision, files, converter format
and options, licence note). Files come from the Hugging Face hub through
``huggingface_hub`` into its ordinary cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``), so a cache filled on a machine with network can be copied
to one without. Offline (``HF_HUB_OFFLINE=1``, ``offline=True``, or the hub unreachable)
only that cache is used; what is missing is named in one line.

The checkpoint goes to ``<models dir>/NAME`` through :func:`veff.convert.convert`.
Fetching again is free when that checkpoint was converted from the same bytes (sha256 of
the weights file: for hub LFS files the cache's blob name, else hashed) by the same
converter version and format; anything else reconverts, into a temporary directory that
replaces the old one only when complete.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from veff.checkpoint import CONFIG, write_config
from veff.convert import convert
from veff.convert.common import CONVERTER_VERSION, file_sha256

__all__ = ["FetchError", "KnownModel", "fetch", "list_known", "known_models_path"]

_TRUTHY = {"1", "on", "yes", "true"}  # huggingface_hub's spelling of a set env flag
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchError(Exception):
    """A known model cannot be fetched or converted (one-line message)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnownModel:
    name: str
    repo_id: str
    revision: str
    weights: tuple[str, ...]
    files: tuple[str, ...]
    format: str
    options: dict[str, Any]
    license: str
    description: str = ""
    targets_from_package: str | None = None


def known_models_path() -> Path:
    """The registry shipped with veff (``configs/known_models.yaml`` beside the package)."""
    return Path(__file__).resolve().parents[1] / "configs" / "known_models.yaml"


def _load_registry(path: str | os.PathLike | None) -> dict[str, KnownModel]:
    import yaml

    path = Path(path) if path is not None else known_models_path()
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise FetchError(f"{path}: cannot read the known-models registry ({e})") from None
    except yaml.YAMLError as e:
        raise FetchError(f"{path}: invalid YAML ({e})".replace("\n", " ")) from None
    if not isinstance(doc, dict):
        raise FetchError(f"{path}: expected a mapping of model names")
    out = {}
    for name, e in doc.items():
        need = ("repo_id", "revision", "weights", "format", "license")
        if not isinstance(e, dict) or any(k not in e for k in need):
            raise FetchError(f"{path}: entry {name!r} needs {', '.join(need)}")
        unknown = set(e) - {f.name for f in dataclasses.fields(KnownModel)}
        if unknown:
            raise FetchError(f"{path}: entry {name!r} has unknown field(s) "
                             f"{', '.join(sorted(unknown))}")
        out[str(name)] = KnownModel(
            name=str(name), repo_id=str(e["repo_id"]), revision=str(e["revision"]),
            weights=tuple(e["weights"]), files=tuple(e.get("files") or ()),
            format=str(e["format"]), options=dict(e.get("options") or {}),
            license=str(e["license"]), description=str(e.get("description", "")),
            targets_from_package=e.get("targets_from_package"))
    return out


def list_known(known_models: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Known models for ``veff models --known``: [{name, repo_id, revision, format,
    license, description}], sorted by name."""
    reg = _load_registry(known_models)
    return [{"name": m.name, "repo_id": m.repo_id, "revision": m.revision,
             "format": m.format, "license": m.license, "description": m.description}
            for m in sorted(reg.values(), key=lambda m: m.name)]


# ----------------------------------------------------------------------------- download
def _hub_cache(cache_dir: str | os.PathLike | None) -> Path:
    # Read the environment now: huggingface_hub reads it once, at import.
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or
                                            Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def _missing_message(m: KnownModel, cache: Path, why: str) -> str:
    files = " ".join((m.weights[0], *m.files))
    return (f"{m.name}: {m.repo_id}@{m.revision} is not in the Hugging Face cache {cache} "
            f"({why}); on a machine with network run `veff fetch {m.name}` (or "
            f"`hf download {m.repo_id} {files} --revision {m.revision}`) and "
            "copy that cache here (HF_HUB_CACHE)")


def _from_cache(m: KnownModel, cache: Path, why: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snap = snapshot_download(m.repo_id, revision=m.revision, cache_dir=str(cache),
                                 local_files_only=True)
    except LocalEntryNotFoundError:
        raise FetchError(_missing_message(m, cache, why)) from None
    return Path(snap)


def _download(m: KnownModel, cache: Path, offline: bool) -> Path:
    """The snapshot directory holding one of ``m.weights`` and all of ``m.files``."""
    if offline:
        return _from_cache(m, cache, "offline: HF_HUB_OFFLINE is set")
    import requests
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        info = HfApi().model_info(m.repo_id, revision=m.revision)
        present = {s.rfilename for s in info.siblings or []}
        weights = next((w for w in m.weights if w in present), None)
        if weights is None:
            raise FetchError(f"{m.name}: {m.repo_id}@{m.revision} has none of "
                             f"{', '.join(m.weights)} (files: {', '.join(sorted(present))})")
        # revision (not info.sha) so that a branch gets its refs/ entry for offline reuse
        return Path(snapshot_download(m.repo_id, revision=m.revision, cache_dir=str(cache),
                                      allow_patterns=[weights, *m.files]))
    except (requests.ConnectionError, requests.Timeout, OfflineModeIsEnabled) as e:
        return _from_cache(m, cache, f"hub unreachable: {type(e).__name__}")
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status is not None and status >= 500:
            return _from_cache(m, cache, f"hub error {status}")
        raise FetchError(f"{m.name}: {m.repo_id}@{m.revision}: "
                         f"{str(e).splitlines()[0]}") from None


def _files(m: KnownModel, snap: Path, cache: Path) -> tuple[Path, list[Path]]:
    weights = next((snap / w for w in m.weights if (snap / w).is_file()), None)
    missing = [f for f in m.files if not (snap / f).is_file()]
    if weights is None or missing:
        what = ", ".join(([] if weights else [" or ".join(m.weights)]) + missing)
        raise FetchError(_missing_message(m, cache, f"snapshot {snap.name[:12]} lacks {what}"))
    return weights, [snap / f for f in m.files]


def _sha256(path: Path) -> str:
    # Hub LFS blobs are named by their sha256; small (git) files are hashed here.
    blob = path.resolve().name
    return blob if _SHA256.match(blob) else file_sha256(path)


def _up_to_date(out: Path, m: KnownModel, sha: str) -> bool:
    try:
        meta = json.loads((out / CONFIG).read_text()).get("metadata", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    return (meta.get("source_sha256") == [sha] and meta.get("format") == m.format
            and meta.get("converter_version") == CONVERTER_VERSION
            and meta.get("fetch", {}).get("options") == _plain(m.options))


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options, sort_keys=True, default=str))


def _package_file(spec: str | None) -> Path | None:
    """``"pkg/sub/file"`` inside an installed package, or None when it is not installed."""
    if not spec:
        return None
    package, _, rel = spec.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.origin:
        return None
    path = Path(found.origin).parent / rel
    return path if path.is_file() else None


# ----------------------------------------------------------------------------- entry point
def fetch(name: str, *, cache_dir: str | os.PathLike | None = None,
          models_dir: str | os.PathLike | None = None, offline: bool | None = None,
          force: bool = False, known_models: str | os.PathLike | None = None) -> Path:
    """Fetch the known model ``name`` and convert it; returns its checkpoint directory.

    ``cache_dir``: the Hugging Face hub cache (default as huggingface_hub: HF_HUB_CACHE,
    HF_HOME/hub, ~/.cache/huggingface/hub). ``models_dir``: where converted models live
    (default :func:`veff.models.registry.models_dir`). ``offline``: None follows
    HF_HUB_OFFLINE. ``force`` reconverts even when up to date. ``known_models``: another
    registry file (tests, site-local lists).
    """
    from veff.convert.common import ConvertError
    from veff.models.registry import models_dir as default_models_dir

    registry = _load_registry(known_models)
    if name not in registry:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(sorted(registry))}")
    m = registry[name]
    cache = _hub_cache(cache_dir)
    snap = _download(m, cache, _offline(offline))
    weights, _ = _files(m, snap, cache)
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    out = root / name
    sha = _sha256(weights)
    if not force and _up_to_date(out, m, sha):
        return out

    options = dict(m.options)
    targets = _package_file(m.targets_from_package)
    if targets is not None and "targets" not in options:
        options["targets"] = str(targets)
    tmp = root / f".{name}.fetch-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # the weights file, not the snapshot directory: convert() hashes its sources
        convert([str(weights)], m.format, str(tmp), name=name, **options)
        _stamp(tmp, m, snap)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except ConvertError as e:
        raise FetchError(f"{name}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _stamp(directory: Path, m: KnownModel, snap: Path) -> None:
    """Record where the weights came from in the checkpoint's metadata (config.json only;
    its digest covers config.json, so it is written again)."""
    path = directory / CONFIG
    doc = json.loads(path.read_text())
    doc["metadata"]["fetch"] = {"known_model": m.name, "repo_id": m.repo_id,
                                "revision": m.revision, "commit": snap.name,
                                "options": _plain(m.options), "license": m.license}
    write_config(directory, doc)
