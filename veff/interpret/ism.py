"""In-silico saturation mutagenesis (ISM): every alternative base at each of W positions
centred on a variant, scored against the unmutated background with the engine's statistics.

For a background window ``x`` (the variant's REF window, or its ALT window with ``on_alt``)
and an edit "base b at window index c + o" (c = L // 2, o in [-W//2, W//2]) the map holds
``stat(x, x with base b at c + o)`` for every statistic of ``veff score`` (REF = x, ALT = the
edited window, same RC averaging, shift ensemble and fold mean). At the variant's own
position and ALT base on the REF background this is exactly the SNV's ``veff score`` value.

How it runs: one jitted step per batch of backgrounds and chunk of offsets. Where the model
has an exact incremental ALT path (``handle.apply_pair``: chromBPNet/BPNet, Enformer,
Borzoi) every edit goes through it with its static centre; the REF half of every pair is the
same expression (the background tiled over the 3 bases), which XLA's common-subexpression
pass computes once for the whole chunk, so the map costs one REF forward plus the short ALT
recomputations. Without ``apply_pair`` each offset runs full forwards of the 3 edited
windows inside a ``lax.map`` over the offsets (REF once, outside it).

Shape letters: B backgrounds, W positions, K = 3 substitutions, T tracks, L window.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from veff import engine
from veff.engine import ScoreOptions, ScoringError
from veff.models.base import ModelHandle

BASES = ("A", "C", "G", "T")
PROFILE_STATS = ("logfc", "jsd")
BINNED_STATS = ("SUM",)


def default_stats(handle: ModelHandle) -> tuple[str, ...]:
    """One statistic set per model kind: logfc and jsd for profile models, SUM for binned."""
    return PROFILE_STATS if handle.kind == "profile" else BINNED_STATS


def offsets_for(width: int) -> np.ndarray:
    """Window offsets of a map of ``width`` positions centred on the variant (odd width)."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"--width must be a positive odd number, got {width}")
    return np.arange(width, dtype=np.int64) - width // 2


def substituted_bases(ref_base: np.ndarray) -> np.ndarray:
    """(…,) REF tokens -> (…, 3) the substituted bases, in the order the map computes them:
    ``(ref + k) % 4`` for k = 1, 2, 3; at an N position (token 4) A, C, G (T is not scored)."""
    ref_base = np.asarray(ref_base, np.int64)[..., None]
    k = np.arange(1, 4)
    return np.where(ref_base < 4, (ref_base + k) % 4, k - 1)


@dataclasses.dataclass
class IsmScorer:
    """ISM maps of one model. ``tracks``: indices into the model's tracks to keep (binned
    models; None keeps all)."""

    handle: ModelHandle
    options: ScoreOptions
    width: int = 101
    tracks: tuple[int, ...] | None = None
    offset_chunk: int | None = None  # offsets per compiled step (None: the whole map)

    def __post_init__(self):
        h, opts = self.handle, self.options
        if opts.stats is None:
            opts = dataclasses.replace(opts, stats=default_stats(h))
            self.options = opts
        if h.kind == "profile":
            if opts.shifts != (0,):
                raise ScoringError(f"{h.name}: shift ensembles apply to binned models")
            self.stats, self.formulas, self._reduce = engine._profile_reducer(h, opts, None)
            self._post, names = None, [h.name]
        else:  # ``_post``: the strand merge of paired tracks, after the means (as veff score)
            self.stats, self.formulas, self._reduce, self._post, names = engine._binned_reducer(h, opts)
        if self.tracks is not None and not self.tracks:
            raise ScoringError("no tracks selected")
        self.track_names = [names[i] for i in self.tracks] if self.tracks is not None else names
        self.offsets = offsets_for(self.width)
        half = self.width // 2
        shifts = opts.shifts
        if h.window_len // 2 - half + min(shifts) < 0 or h.window_len // 2 + half + max(shifts) >= h.window_len:
            raise ScoringError(f"--width {self.width} does not fit {h.name}'s {h.window_len}-bp window")
        self._steps: dict[tuple[int, ...], Callable] = {}

    # ------------------------------------------------------------------ public
    def map(self, tokens: np.ndarray, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """(B, L) uint8 background windows -> {stat: (B, W, 4, T) float32}; the background's
        own base at each position is NaN."""
        tokens = np.asarray(tokens, np.uint8)
        n, L = tokens.shape
        if L != self.handle.window_len:
            raise ValueError(f"windows of {L} bp for a {self.handle.window_len}-bp model")
        W, T = self.width, len(self.track_names)
        out = {s: np.full((n, W, 4, T), np.nan, np.float32) for s in self.stats}
        bs = batch_size or self.options.batch_size
        if not isinstance(bs, int):  # "auto" sizes veff score's steps; ISM maps use 8 rows
            bs = 8
        chunk = self.offset_chunk or W
        centre = L // 2
        for start in range(0, n, bs):
            rows = tokens[start : start + bs]
            m = len(rows)
            if m < bs and n > bs:  # one static batch shape: pad with all-N windows
                rows = np.concatenate([rows, np.full((bs - m, L), 4, np.uint8)])
            for o0 in range(0, W, chunk):
                offs = tuple(int(o) for o in self.offsets[o0 : o0 + chunk])
                res = self._step(offs)(self.handle.params, jnp.asarray(rows))
                # res[s]: (G, 3, B, T) -> scatter the 3 substitutions into the A/C/G/T axis
                bases = substituted_bases(rows[:m, [centre + o for o in offs]])  # (m, G, 3)
                b_idx = np.arange(m)[:, None, None]
                w_idx = (o0 + np.arange(len(offs)))[None, :, None]
                for s in self.stats:
                    v = np.asarray(res[s])[:, :, :m]
                    v = np.transpose(v, (2, 0, 1, 3))  # (m, G, 3, T)
                    out[s][start + b_idx, w_idx, bases] = v
        return out

    # ------------------------------------------------------------------ steps
    def _step(self, offsets: tuple[int, ...]) -> Callable:
        if offsets not in self._steps:
            self._steps[offsets] = jax.jit(self._make_step(offsets))
        return self._steps[offsets]

    def _make_step(self, offsets: tuple[int, ...]) -> Callable:
        h, opts = self.handle, self.options
        dtype = jnp.bfloat16 if opts.precision == "bf16" else jnp.float32
        L = h.window_len
        rc = opts.rc
        keep = None if self.tracks is None else jnp.asarray(self.tracks, jnp.int32)
        reduce = self._reduce

        def edits(tok, index):
            """(B, L) -> (3B, L): the 3 substitutions at window index ``index``."""
            base = tok[:, index].astype(jnp.int32)
            k = jnp.arange(1, 4, dtype=jnp.int32)[:, None]
            new = jnp.where(base[None] < 4, (base[None] + k) % 4, k - 1).astype(tok.dtype)
            tiled = jnp.tile(tok, (3, 1))
            return tiled.at[:, index].set(new.reshape(-1))

        post = self._post

        def finish(scores):
            # {stat: (G, 3B, T)} -> strand merge -> {stat: (G, 3, B, T)} with the kept tracks
            if post is not None:
                scores = post(scores)
            res = {}
            for s in self.stats:
                v = scores[s]
                G = v.shape[0]
                v = v.reshape(G, 3, -1, 1) if v.ndim == 2 else v.reshape(G, 3, -1, v.shape[-1])
                res[s] = v if keep is None else jnp.take(v, keep, axis=-1)
            return res

        def pair_parts(params, tok, shift):
            """Incremental path: per offset, [ref, alt, (rc ref, rc alt)] through apply_pair."""
            tok = engine.shift_device(tok, shift)
            ref3 = jnp.tile(tok, (3, 1))
            per = []
            for o in offsets:
                c = L // 2 + o + shift
                alt3 = edits(tok, c)
                parts = list(h.apply_pair(
                    params, engine.one_hot_device(ref3, dtype), engine.one_hot_device(alt3, dtype), c
                ))
                if rc:
                    parts += h.apply_pair(
                        params,
                        engine.one_hot_device(engine.reverse_complement_device(ref3), dtype),
                        engine.one_hot_device(engine.reverse_complement_device(alt3), dtype),
                        L - 1 - c,
                    )
                per.append([jax.tree.map(lambda a: a.astype(jnp.float32), q) for q in parts])
            return per

        def full_parts(params, tok, shift):
            """Full path: REF once, each offset's 3 edited windows in full (lax.map)."""
            tok = engine.shift_device(tok, shift)

            def fwd(t):
                out = h.apply(params, engine.one_hot_device(t, dtype))
                return jax.tree.map(lambda a: a.astype(jnp.float32), out)

            def tile3(out):
                return jax.tree.map(lambda a: jnp.tile(a, (3,) + (1,) * (a.ndim - 1)), out)

            ref = tile3(fwd(tok))
            rref = tile3(fwd(engine.reverse_complement_device(tok))) if rc else None
            cs = jnp.asarray([L // 2 + o + shift for o in offsets], jnp.int32)

            def one(c):
                base = jax.lax.dynamic_index_in_dim(tok, c, axis=1, keepdims=False).astype(jnp.int32)
                k = jnp.arange(1, 4, dtype=jnp.int32)[:, None]
                new = jnp.where(base[None] < 4, (base[None] + k) % 4, k - 1).astype(tok.dtype)
                alt3 = jax.lax.dynamic_update_slice_in_dim(
                    jnp.tile(tok, (3, 1)), new.reshape(-1, 1), c, axis=1)
                outs = [fwd(alt3)]
                if rc:
                    outs.append(fwd(engine.reverse_complement_device(alt3)))
                return outs

            alts = jax.lax.map(one, cs)
            per = []
            for g in range(len(offsets)):
                a = [jax.tree.map(lambda x: x[g], q) for q in alts]
                per.append([ref, a[0]] + ([rref, a[1]] if rc else []))
            return per

        parts_fn = pair_parts if h.apply_pair is not None else full_parts

        def one_fold(params, tok):
            params = engine._compute_dtype_params(params, dtype)
            n3 = 3 * tok.shape[0]
            lens = jnp.ones((n3,), jnp.int32)
            per_shift = []
            for s in opts.shifts:
                per_shift.append([reduce(p, lens, lens, s, None) for p in parts_fn(params, tok, s)])
            per_off = []
            for g in range(len(offsets)):
                sc = [ps[g] for ps in per_shift]
                sc = sc[0] if len(sc) == 1 else jax.tree.map(
                    lambda *a: jnp.mean(jnp.stack(a), axis=0), *sc)
                per_off.append(sc)
            return {s: jnp.stack([p[s] for p in per_off]) for s in self.stats}  # (G, 3B, T)

        def step(params, tok):
            if h.num_folds == 1:
                return finish(one_fold(params, tok))
            per_fold = jax.vmap(one_fold, in_axes=(0, None))(params, tok)
            return finish(jax.tree.map(lambda a: a.mean(axis=0), per_fold))

        return step


# ---------------------------------------------------------------------------- run
def resolve_tracks(handle: ModelHandle, spec: str | None) -> tuple[int, ...] | None:
    """``--tracks NAME,…`` (or 0-based indices) -> track indices of a binned model."""
    if not spec:
        return None
    if handle.kind == "profile":
        raise ScoringError(f"{handle.name}: --tracks applies to binned models")
    names = handle.track_names
    pairs = [t.get("strand_pair", i) for i, t in enumerate(handle.tracks)]
    if any(p != i for i, p in enumerate(pairs)):  # scores merge strand pairs (veff score's default)
        from veff.scoring.tracks import collapsed_track_names

        names = collapsed_track_names(names, pairs)
    out = []
    for t in (x.strip() for x in spec.split(",") if x.strip()):
        if t in names:
            out.append(names.index(t))
        elif t.isdigit() and int(t) < len(names):
            out.append(int(t))
        else:
            raise ScoringError(f"{handle.name} has no track {t!r}")
    return tuple(out)


def run_ism(variants_path: str, genome_path: str, model: str, out: str, *, width: int = 101,
            on_alt: bool = False, tracks: str | None = None, options: ScoreOptions | None = None,
            overwrite: bool = False, ref_mismatch: str = "skip", max_indel_len: int = 50) -> int:
    """Write the ISM store; returns the number of variants mapped (status ok)."""
    from veff.interpret import store as istore
    from veff.io.genome import Genome
    from veff.io.vcf import read_variants
    from veff.models.registry import load_model
    from veff.pipeline import oriented_windows

    options = options or ScoreOptions()
    genome = Genome(genome_path)
    handle = load_model(model)
    scorer = IsmScorer(handle, options, width=width, tracks=resolve_tracks(handle, tracks))
    variants = list(read_variants(variants_path, genome, ref_mismatch=ref_mismatch,
                                  max_indel_len=max_indel_len))
    ok = np.array([str(v.status) == "ok" for v in variants], bool)
    w = oriented_windows(genome, variants, handle.window_len)
    root = istore.create(out, overwrite=overwrite, kind="ism", attrs={
        "model": handle.name, "width": width, "rc": options.rc, "precision": options.precision,
        "shifts": list(options.shifts), "on_alt": on_alt,
        "convention": "value = stat(background, background with base b at genomic_pos); "
                      "ALT vs REF as veff score; the background's own base is NaN",
    })
    istore.write_variants(root, variants)
    n = len(variants)
    pos = np.array([v.pos1 for v in variants], np.int64)[:, None] + scorer.offsets[None, :]
    istore.write_array(root, "genomic_pos", pos, ["variant", "position"],
                       {"meaning": "1-based genome position of each map column"})
    istore.write_array(root, "position", scorer.offsets, ["position"],
                       {"meaning": "offset from the variant (window index - L // 2)"})
    istore.write_array(root, "base", np.array(BASES), ["base"])
    group = root.require_group("scores").create_group(handle.name)
    istore.write_array(group, "track", np.array(scorer.track_names), ["track"])
    group.attrs.update({"model": handle.name, "sha256": handle.sha256, "statistics": list(scorer.stats)})
    backgrounds = [("", w.ref)] + ([("_on_alt", w.alt)] if on_alt else [])
    for suffix, toks in backgrounds:
        maps = {s: np.full((n, width, 4, len(scorer.track_names)), np.nan, np.float32)
                for s in scorer.stats}
        rows = np.flatnonzero(ok)
        if len(rows):
            got = scorer.map(toks[rows])
            for s in scorer.stats:
                maps[s][rows] = got[s]
        for s in scorer.stats:
            istore.write_array(group, s + suffix, maps[s], ["variant", "position", "base", "track"],
                               {"formula": scorer.formulas[s],
                                "background": "ALT window" if suffix else "REF window"})
    return int(ok.sum())
