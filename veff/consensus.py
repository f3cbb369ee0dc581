"""Cross-model consensus: track groups, normalisation against backgrounds, agreement metrics.

The rules (docs/consensus.md is the user-facing copy):

- **Normalisation** of a raw score x against the background sample b_1..b_n of the same model,
  track and statistic: unsigned statistics map to ``F(x) = #{b_j <= x} / n`` in [0, 1]; signed
  ones to ``sign(x) * #{|b_j| <= |x|} / n`` in [-1, 1]. NaN stays NaN.
- **Member score**: a group member (model, statistic, tracks) scores a variant with the mean of
  its tracks' normalised values.
- **Group kind**: a group is signed when all its members' statistics are signed; otherwise
  every member quantile is replaced by its absolute value and the group works in magnitude.
- **Consensus** per variant: ``score`` = mean of the member quantiles that are finite;
  ``num_models`` = how many are finite; ``num_strong`` = how many have ``|q| >= threshold``;
  ``sign_agreement`` = fraction of the finite members whose sign equals ``sign(score)`` (NaN
  when score is 0 or the group is unsigned); ``call``: ``weak`` (no strong member),
  ``conflict`` (strong members of both signs), ``single_model`` (exactly one strong member, or
  only one model scored it), ``agreed`` (two or more strong members, all of one sign), ``none``
  (no member scored it). ``disagree`` = call is conflict or single_model.
- **Agreement** per member pair over variants both scored: Spearman correlation of the
  quantiles; sign concordance = fraction of variants strong in both with equal signs (NaN for
  unsigned groups or when no variant is strong in both); top-k overlap = |top_k(a) ∩ top_k(b)| / k
  with k = min(top_k, variants both scored), top by |q| (ties broken by variant order).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veff import backgrounds as bgmod
from veff.store import Store
from veff.track_groups import (  # noqa: F401 - re-exported: the consensus API users see
    DEFAULT_GROUP,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    ConsensusError,
    GroupMember,
    GroupsConfig,
    TrackGroup,
    default_groups,
    list_tracks,
    load_groups,
    resolve_tracks,
    search_tracks,
    track_table,
)

# ---------------------------------------------------------------------------- numbers
def stat_is_signed(stat: str, kind: str) -> bool:
    if kind == "profile":
        from veff.scoring.profile import STAT_INFO

        if stat not in STAT_INFO:
            raise ConsensusError(f"unknown profile statistic {stat!r}")
        return STAT_INFO[stat].signed
    if kind == "cells":  # scBasset: every per-cell statistic is ALT - REF
        return True
    from veff.scoring.tracks import ScoreSpec

    try:
        return ScoreSpec.parse(stat).is_signed
    except ValueError as e:
        raise ConsensusError(str(e)) from None


def normalise(x: np.ndarray, background: np.ndarray, *, signed: bool) -> np.ndarray:
    """Raw scores -> empirical quantiles against ``background`` (1-D, NaNs ignored)."""
    bg = np.asarray(background, dtype=np.float64)
    bg = bg[np.isfinite(bg)]
    if bg.size == 0:
        raise ConsensusError("empty background: nothing to normalise against")
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xs = np.where(finite, x, 0.0)
    if signed:
        q = np.sign(xs) * np.searchsorted(np.sort(np.abs(bg)), np.abs(xs), side="right") / bg.size
    else:
        q = np.searchsorted(np.sort(bg), xs, side="right") / bg.size
    return np.where(finite, q, np.nan)


def member_quantiles(values: np.ndarray, background: np.ndarray, *, signed: bool) -> np.ndarray:
    """(V, T') raw scores and (N, T') background -> (V,) mean over tracks of the quantiles."""
    cols = [normalise(values[:, j], background[:, j], signed=signed) for j in range(values.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (non-ok variants)
        return np.nanmean(np.stack(cols, axis=1), axis=1)


CALLS = ("none", "weak", "single_model", "conflict", "agreed")


def consensus_scores(q: np.ndarray, *, signed: bool, threshold: float) -> dict[str, np.ndarray]:
    """(V, M) member quantiles -> per-variant consensus (module docstring has the rule)."""
    finite = np.isfinite(q)
    num_models = finite.sum(axis=1)
    qz = np.where(finite, q, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(num_models > 0, qz.sum(axis=1) / num_models, np.nan)
    strong = finite & (np.abs(qz) >= threshold)
    num_strong = strong.sum(axis=1)
    if signed:
        s = np.sign(np.nan_to_num(score))
        same = (finite & (np.sign(qz) == s[:, None])).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sign_agreement = np.where((num_models > 0) & (s != 0), same / num_models, np.nan)
        conflict = (strong & (qz > 0)).any(axis=1) & (strong & (qz < 0)).any(axis=1)
    else:
        sign_agreement = np.full(len(q), np.nan)
        conflict = np.zeros(len(q), dtype=bool)
    call = np.full(len(q), "agreed", dtype=object)
    call[(num_strong == 1) | ((num_strong >= 1) & (num_models == 1))] = "single_model"
    call[conflict] = "conflict"
    call[num_strong == 0] = "weak"
    call[num_models == 0] = "none"
    return {
        "score": score,
        "sign_agreement": sign_agreement,
        "num_strong": num_strong.astype(np.int32),
        "num_models": num_models.astype(np.int32),
        "call": call,
        "disagree": np.isin(call, ("conflict", "single_model")),
    }


def pair_agreement(
    qa: np.ndarray, qb: np.ndarray, *, signed: bool, threshold: float, top_k: int
) -> dict[str, float]:
    """Agreement of two members' (V,) quantiles (module docstring has the definitions)."""
    from scipy.stats import spearmanr

    common = np.isfinite(qa) & np.isfinite(qb)
    a, b = qa[common], qb[common]
    n = int(common.sum())
    rho = np.nan
    if n >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        rho = float(spearmanr(a, b).statistic)
    both = (np.abs(a) >= threshold) & (np.abs(b) >= threshold)
    concord = np.nan
    if signed and both.any():
        concord = float(np.mean(np.sign(a[both]) == np.sign(b[both])))
    k = min(top_k, n)
    overlap = np.nan
    if k > 0:
        top_a = np.argsort(-np.abs(a), kind="stable")[:k]
        top_b = np.argsort(-np.abs(b), kind="stable")[:k]
        overlap = len(np.intersect1d(top_a, top_b)) / k
    return {
        "spearman": rho,
        "sign_concordance": concord,
        "topk_overlap": overlap,
        "num_common": n,
        "num_both_strong": int(both.sum()),
        "k": k,
    }


# ---------------------------------------------------------------------------- store I/O
def _score_options(root, model: str):
    """The run's ScoreOptions (veff.settings.options_from_attrs: every option, as the run scored) as
    ``model``'s kind is scored with them, for its stored statistics (peak-only ones left out)."""
    from veff.settings import options_from_attrs

    g = root["scores"][model]
    kind = g.attrs.get("kind", "binned")
    stats = list(g.attrs.get("statistics", []))
    if kind == "profile":
        from veff.scoring.profile import STAT_INFO

        stats = [s for s in stats if not STAT_INFO[s].needs_peaks]
    options = options_from_attrs(root.attrs.get("run") or {})
    return dataclasses.replace(options.for_kind(kind), stats=tuple(stats))


def _model_spec(root, model: str, models: Mapping[str, str] | None) -> str:
    if models and model in models:
        return models[model]
    specs = list(root.attrs.get("run", {}).get("models", []))
    names = list(root.attrs["models"])
    if len(specs) == len(names):
        return str(specs[names.index(model)])
    raise ConsensusError(f"no checkpoint known for model {model!r}; pass it with models=")


def _check_background(root, model: str, bg: bgmod.Background, stats: Sequence[str]) -> None:
    g = root["scores"][model]
    tracks = [str(t) for t in g["track"][:]]
    if list(bg.tracks) != tracks:
        raise ConsensusError(f"background of {model} has other tracks than the store")
    sha = g.attrs.get("checkpoint_sha256")
    if sha and bg.checkpoint_sha256 and bg.checkpoint_sha256 != sha:
        raise ConsensusError(f"background of {model} comes from another checkpoint")
    missing = bgmod.required_stats(stats, bg)
    if missing:
        raise ConsensusError(f"background of {model} lacks statistic(s) {', '.join(missing)}")
    formulas = bg.meta.get("formulas") or {}
    for s in stats:
        if s in formulas and "formula" in g[s].attrs and formulas[s] != g[s].attrs["formula"]:
            raise ConsensusError(
                f"background {s} of {model} was computed with other settings than the run"
            )


def _spec_matches(bg: bgmod.Background, spec: bgmod.BackgroundSpec, genome) -> bool:
    m = bg.meta
    if spec.vcf:
        same = m.get("source") == f"vcf:{spec.vcf}"
    else:
        same = m.get("source") == "random_snvs" and m.get("num") == spec.num and m.get("seed") == spec.seed
    if genome is not None and same:
        same = m.get("genome_identity") == bgmod.genome_identity(genome)
    return same


def resolve_backgrounds(
    store: Store,
    needed: Mapping[str, Sequence[str]],
    *,
    given: Mapping[str, bgmod.Background] | None,
    genome,
    spec: bgmod.BackgroundSpec,
    models: Mapping[str, str] | None,
    cache: Path | None,
) -> dict[str, bgmod.Background]:
    """A background per needed model: given > the store's copy (same spec) > cache > compute.

    Every background used is (re)written to ``backgrounds/<model>/`` of the store."""
    from veff.io.genome import Genome

    root = store.root
    out: dict[str, bgmod.Background] = {}
    genome_obj = _maybe_genome(genome)
    for model, stats in needed.items():
        bg = (given or {}).get(model)
        if bg is None:
            stored = bgmod.read_from_store(root, model)
            if stored is not None and _spec_matches(stored, spec, genome_obj) and \
                    stored.meta.get("options") == bgmod._numeric_options(_score_options(root, model)):
                try:
                    _check_background(root, model, stored, stats)
                    bg = stored
                except ConsensusError:
                    bg = None
        if bg is None:
            from veff.models.registry import load_model

            if genome_obj is None:
                path = root.attrs.get("run", {}).get("genome")
                if not path:
                    raise ConsensusError("backgrounds need the genome: pass genome=")
                genome_obj = Genome(path)
            handle = load_model(_model_spec(root, model, models), name=model)
            sha = root["scores"][model].attrs.get("checkpoint_sha256")
            if sha and handle.sha256 != sha:
                raise ConsensusError(f"checkpoint of {model} differs from the one that was scored")
            bg, _ = bgmod.get_background(handle, genome_obj, spec, _score_options(root, model), cache=cache)
        bg = dataclasses.replace(bg, model=model)
        _check_background(root, model, bg, stats)
        bgmod.write_to_store(root, bg)
        out[model] = bg
    return out


def _maybe_genome(genome):
    if genome is None:
        return None
    from veff.io.genome import Genome

    return genome if isinstance(genome, Genome) else Genome(genome)


def _write_group(root, group: TrackGroup, cfg: GroupsConfig, bgs, chunk: int, extra: dict) -> None:
    variants_n = int(root.attrs["num_variants"])
    labels, quantiles, members_meta, signs = [], [], [], []
    for m in group.members:
        g = root["scores"][m.model]
        if m.stat not in g:
            raise ConsensusError(f"model {m.model} has no statistic {m.stat!r} in the store")
        idx = resolve_tracks(root, m)
        signed = stat_is_signed(m.stat, g.attrs.get("kind", "binned"))
        values = np.asarray(g[m.stat][:, idx], dtype=np.float64).reshape(variants_n, len(idx))
        bg = bgs[m.model].scores[m.stat][:, idx]
        quantiles.append(member_quantiles(values, bg, signed=signed))
        labels.append(m.label)
        signs.append(signed)
        names = [str(t) for t in g["track"][:]]
        members_meta.append(
            {"model": m.model, "stat": m.stat, "signed": signed, "tracks": [names[i] for i in idx],
             "background": {k: bgs[m.model].meta.get(k) for k in ("key", "source", "num", "seed")}}
        )
    signed = bool(signs) and all(signs)
    q = np.stack(quantiles, axis=1) if quantiles else np.zeros((variants_n, 0))
    if not signed:
        q = np.abs(q)
    cons = consensus_scores(q, signed=signed, threshold=cfg.threshold)

    parent = root.require_group("consensus")
    if group.slug in parent:
        del parent[group.slug]
    g = parent.create_group(group.slug)

    def put(name, values, dtype, dims, chunks=None):
        arr = g.create_array(name, shape=values.shape, dtype=dtype, dimension_names=dims,
                             chunks=chunks or values.shape or (1,))
        arr[...] = values

    c = max(1, min(chunk, variants_n))
    put("member", np.array(labels, dtype=object), str, ["member"], (max(1, len(labels)),))
    put("quantile", q.astype(np.float32), "float32", ["variant", "member"], (c, max(1, len(labels))))
    put("score", cons["score"].astype(np.float32), "float32", ["variant"], (c,))
    put("sign_agreement", cons["sign_agreement"].astype(np.float32), "float32", ["variant"], (c,))
    put("num_strong", cons["num_strong"], "int32", ["variant"], (c,))
    put("num_models", cons["num_models"], "int32", ["variant"], (c,))
    put("call", cons["call"], str, ["variant"], (c,))
    put("disagree", cons["disagree"], "bool", ["variant"], (c,))

    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    rows = [pair_agreement(q[:, i], q[:, j], signed=signed, threshold=cfg.threshold, top_k=cfg.top_k)
            for i, j in pairs]
    npair = max(1, len(pairs))
    put("pair", np.array([f"{labels[i]} vs {labels[j]}" for i, j in pairs], dtype=object), str, ["pair"], (npair,))
    put("pair_a", np.array([labels[i] for i, _ in pairs], dtype=object), str, ["pair"], (npair,))
    put("pair_b", np.array([labels[j] for _, j in pairs], dtype=object), str, ["pair"], (npair,))
    for key, dtype in (("spearman", "float64"), ("sign_concordance", "float64"),
                       ("topk_overlap", "float64"), ("num_common", "int64"), ("num_both_strong", "int64")):
        put(key, np.array([r[key] for r in rows], dtype=dtype), dtype, ["pair"], (npair,))
    g.attrs.update(
        {
            "name": group.name,
            "signed": signed,
            "threshold": cfg.threshold,
            "top_k": cfg.top_k,
            "members": members_meta,
            "rule": "score = mean of member quantiles (signed: sign(x)*F_|bg|(|x|); unsigned: "
            "F_bg(x)); a group with any unsigned member uses |quantile|; see docs/consensus.md",
            **extra,
        }
    )


def write_consensus(
    store_path: str | Path,
    *,
    groups_yaml: str | Path | None = None,
    genome: str | Path | None = None,
    background: bgmod.BackgroundSpec = bgmod.BackgroundSpec(),
    backgrounds: Mapping[str, bgmod.Background] | None = None,
    models: Mapping[str, str] | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    cache: Path | None = None,
) -> list[str]:
    """Normalise, combine and compare the models of a finished store; write ``consensus/``.

    ``groups_yaml`` None uses the default group (see ``default_groups``). Backgrounds come
    from ``backgrounds`` (model -> Background), else the store's copy when it has the same
    spec, else the cache, else are computed (needing the genome, default the run's, and each
    model's checkpoint, default the run's ``--model`` specs; ``models`` overrides by name).
    Returns the Zarr names of the groups written."""
    store = Store.open(store_path)
    try:
        root = store.root
        if groups_yaml is not None:
            cfg, skipped = load_groups(groups_yaml), []
            scored = set(root.attrs["models"])
            for g in cfg.groups:
                missing = [m.model for m in g.members if m.model not in scored]
                skipped += [f"{m}: not scored in this store" for m in missing]
            cfg = dataclasses.replace(cfg, groups=tuple(
                dataclasses.replace(g, members=tuple(m for m in g.members if m.model in scored))
                for g in cfg.groups))
        else:
            cfg, skipped = default_groups(root)
        if threshold is not None or top_k is not None:
            cfg = dataclasses.replace(cfg, threshold=threshold if threshold is not None else cfg.threshold,
                                      top_k=top_k if top_k is not None else cfg.top_k)
        needed: dict[str, set[str]] = {}
        for g in cfg.groups:
            for m in g.members:
                needed.setdefault(m.model, set()).add(m.stat)
        bgs = resolve_backgrounds(
            store, {m: sorted(s) for m, s in needed.items()}, given=backgrounds,
            genome=genome, spec=background, models=models, cache=cache,
        )
        extra = {"skipped": skipped, "default_group": groups_yaml is None}
        for g in cfg.groups:
            _write_group(root, g, cfg, bgs, store.chunk_size, extra)
        root.require_group("consensus").attrs.update(
            {"groups": {g.slug: g.name for g in cfg.groups}, "threshold": cfg.threshold,
             "top_k": cfg.top_k}
        )
        _consolidate(store.path)
        return [g.slug for g in cfg.groups]
    finally:
        store.close()


def _consolidate(path: Path) -> None:
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec; xarray reads it
        zarr.consolidate_metadata(str(path))


def read_consensus(store_path: str | Path) -> dict[str, dict[str, Any]]:
    """{group slug: {name, attrs, member, quantile, score, ..., agreement rows}} from a store."""
    out: dict[str, dict[str, Any]] = {}
    root = Store.open(store_path, mode="r").root  # reading takes no lock
    if "consensus" not in root:
        return out
    for slug in sorted(root["consensus"].group_keys()):
        g = root["consensus"][slug]
        d = {k: g[k][:] for k in g.array_keys()}
        d["attrs"] = dict(g.attrs)
        out[slug] = d
    return out
