"""Track groups: which (model, tracks, statistic) measure one thing, e.g. "K562 accessibility".

A group comes from a YAML file (configs/track_groups.example.yaml) or, without one, from
the default rule (each profile model's logfc, plus the DNase/ATAC tracks of binned models).
Also the track metadata helpers behind ``list_tracks`` / ``search_tracks``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from veff.store import Store

DEFAULT_THRESHOLD = 0.95  # |quantile| at or above which a member counts as strong
DEFAULT_TOP_K = 100
DEFAULT_GROUP = "accessibility"
ACCESSIBILITY = r"dnase|atac"  # default-group track pattern for binned models (case-insensitive)
# Binned statistics the default group uses, in order of preference (the first one scored).
_DEFAULT_BINNED_STATS = ("logSUM", "DIFF_LOG2_SUM", "logSED", "SUM")


class ConsensusError(Exception):
    """A group config or a store that consensus cannot work with."""


# ---------------------------------------------------------------------------- groups
@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupMember:
    """One model's contribution to a group: a statistic over some of its tracks.

    ``tracks`` lists exact track names; ``match`` is a case-insensitive regex searched in each
    track's name and description. Both empty: every track of the model."""

    model: str
    stat: str
    tracks: tuple[str, ...] = ()
    match: str | None = None

    def __post_init__(self):
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as e:
                raise ConsensusError(f"bad track pattern {self.match!r} for {self.model}: {e}") from None

    @property
    def label(self) -> str:
        return f"{self.model}:{self.stat}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrackGroup:
    name: str
    members: tuple[GroupMember, ...]

    @property
    def slug(self) -> str:
        """The Zarr group name: runs of characters other than [A-Za-z0-9_.-] become '_'."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_") or "group"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupsConfig:
    groups: tuple[TrackGroup, ...]
    threshold: float = DEFAULT_THRESHOLD
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ConsensusError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.top_k < 1:
            raise ConsensusError(f"top_k must be ≥ 1, got {self.top_k}")
        slugs = [g.slug for g in self.groups]
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise ConsensusError(f"two groups map to the same name {dupes[0]!r}")


def load_groups(path: str | Path) -> GroupsConfig:
    """Read a track-group YAML (configs/track_groups.example.yaml shows the format)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConsensusError(f"cannot read track groups {path}: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConsensusError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ConsensusError(f"{path}: expected a mapping with a 'groups' list")
    groups = []
    for i, g in enumerate(doc["groups"]):
        if not isinstance(g, dict) or "name" not in g or not isinstance(g.get("members"), list):
            raise ConsensusError(f"{path}: group {i} needs 'name' and a 'members' list")
        members = []
        for m in g["members"]:
            if not isinstance(m, dict) or "model" not in m or "stat" not in m:
                raise ConsensusError(f"{path}: every member of {g['name']!r} needs 'model' and 'stat'")
            unknown = set(m) - {"model", "stat", "tracks", "match"}
            if unknown:
                raise ConsensusError(f"{path}: unknown member key(s) {sorted(unknown)} in {g['name']!r}")
            tracks = m.get("tracks") or []
            tracks = [tracks] if isinstance(tracks, str) else tracks
            if not isinstance(tracks, list) or not all(isinstance(t, (str, int)) for t in tracks):
                raise ConsensusError(f"{path}: 'tracks' of {g['name']!r} must be a list of track names")
            if m.get("match") is not None and not isinstance(m["match"], str):
                raise ConsensusError(f"{path}: 'match' of {g['name']!r} must be a string (a regex)")
            try:
                members.append(GroupMember(model=str(m["model"]), stat=str(m["stat"]),
                                           tracks=tuple(str(t) for t in tracks), match=m.get("match")))
            except ConsensusError as e:
                raise ConsensusError(f"{path}: {e}") from None
        groups.append(TrackGroup(name=str(g["name"]), members=tuple(members)))
    try:
        threshold = float(doc.get("threshold", DEFAULT_THRESHOLD))
        top_k = int(doc.get("top_k", DEFAULT_TOP_K))
    except (TypeError, ValueError):
        raise ConsensusError(f"{path}: 'threshold' must be a number and 'top_k' an integer") from None
    try:
        return GroupsConfig(groups=tuple(groups), threshold=threshold, top_k=top_k)
    except ConsensusError as e:
        raise ConsensusError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------- track metadata
def _checkpoint_descriptions(root, model: str, num: int) -> list[str]:
    """Track descriptions from the model's checkpoint config.json, when it can be found."""
    try:
        from veff.models.registry import resolve

        specs = list(root.attrs.get("run", {}).get("models", []))
        names = list(root.attrs["models"])
        if len(specs) != len(names) or model not in names:
            return [""] * num
        directory, _ = resolve(str(specs[names.index(model)]))
        tracks = json.loads((directory / "config.json").read_text()).get("tracks", [])
        if len(tracks) != num:
            return [""] * num
        return [str(t.get("description", "")) if isinstance(t, dict) else "" for t in tracks]
    except Exception:  # descriptions are a convenience for matching; names always work
        return [""] * num


def track_table(root, model: str) -> list[dict[str, Any]]:
    """[{index, name, description}] for one scored model of an open store root."""
    if "scores" not in root or model not in root["scores"]:
        raise ConsensusError(f"model {model!r} is not in the store")
    g = root["scores"][model]
    names = [str(t) for t in g["track"][:]]
    if "track_description" in g:
        desc = [str(d) for d in g["track_description"][:]]
    else:
        desc = _checkpoint_descriptions(root, model, len(names))
    return [{"index": i, "name": n, "description": d} for i, (n, d) in enumerate(zip(names, desc))]


def list_tracks(store_path: str | Path, model: str | None = None) -> list[dict[str, Any]]:
    """Every track of every scored model (or of ``model``): [{model, index, name, description}]."""
    root = Store.open(store_path, mode="r").root  # reading takes no lock
    models = [model] if model else list(root.attrs["models"])
    return [{"model": m, **t} for m in models for t in track_table(root, m)]


def search_tracks(store_path: str | Path, pattern: str, model: str | None = None) -> list[dict[str, Any]]:
    """Tracks whose name or description matches the case-insensitive regex ``pattern``."""
    rx = re.compile(pattern, re.IGNORECASE)
    return [t for t in list_tracks(store_path, model) if rx.search(t["name"]) or rx.search(t["description"])]


def resolve_tracks(root, member: GroupMember) -> list[int]:
    """Track indices of ``member`` in the store; a member that selects nothing is an error."""
    table = track_table(root, member.model)
    if not member.tracks and member.match is None:
        return [t["index"] for t in table]
    by_name = {t["name"]: t["index"] for t in table}
    missing = [n for n in member.tracks if n not in by_name]
    if missing:
        raise ConsensusError(f"model {member.model} has no track named {missing[0]!r}")
    idx = {by_name[n] for n in member.tracks}
    if member.match is not None:
        rx = re.compile(member.match, re.IGNORECASE)
        idx |= {t["index"] for t in table if rx.search(t["name"]) or rx.search(t["description"])}
        if not idx:
            raise ConsensusError(f"no track of {member.model} matches {member.match!r}")
    return sorted(idx)


def default_groups(root) -> tuple[GroupsConfig, list[str]]:
    """The group used without a config: every profile model's ``logfc`` and the DNase/ATAC
    tracks of every binned model (first scored of logSUM, DIFF_LOG2_SUM*, logSED, SUM).
    Returns the config and the models left out (with why)."""
    members, skipped = [], []
    rx = re.compile(ACCESSIBILITY, re.IGNORECASE)
    for m in root.attrs["models"]:
        g = root["scores"][m]
        stats = list(g.attrs.get("statistics", []))
        if g.attrs.get("kind") == "profile":
            if "logfc" in stats:
                members.append(GroupMember(model=m, stat="logfc"))
            else:
                skipped.append(f"{m}: logfc not scored")
            continue
        stat = next(
            (s for want in _DEFAULT_BINNED_STATS for s in stats if s.partition("@")[0] == want), None
        )
        has_tracks = any(rx.search(t["name"]) or rx.search(t["description"]) for t in track_table(root, m))
        if stat is None or not has_tracks:
            skipped.append(f"{m}: no DNase/ATAC track" if stat else f"{m}: no logSUM-like statistic")
            continue
        members.append(GroupMember(model=m, stat=stat, match=ACCESSIBILITY))
    return GroupsConfig(groups=(TrackGroup(name=DEFAULT_GROUP, members=tuple(members)),)), skipped


