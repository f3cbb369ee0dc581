"""Exact incremental ALT for Enformer and Borzoi equals the full ALT forward.

For SNVs at both engine centres (forward L//2 and reverse-complement L-1-L//2), with rows
N-padded at one end, on tiny configs at reduced length and at full length: the spliced ALT
trunk (and Borzoi's U-net skips) equal the full ALT forward's, ALT equals REF outside the
planned spans and differs at their edges (the spans are tight), and the tracks match
``apply`` within 1e-5 relative (fp32, matmul precision "highest").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from veff.checkpoint import load_checkpoint, save_checkpoint
from veff.models import borzoi, borzoi_incremental, enformer, enformer_incremental
from veff.models.borzoi import BorzoiConfig
from veff.models.enformer import EnformerConfig
from veff.models.enformer_incremental import plan_slice

EYE = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])
REL = 1e-5


def _random_params(shapes, seed: int):
    """Random params for an abstract tree, in numpy (no per-leaf jax compiles): kernels
    N(0, 1/fan_in), norm scales U(0.5, 1.5), running variances U(0.5, 2), the rest
    N(0, 0.1²)."""
    rng = np.random.default_rng(seed)

    def leaf(path, sd):
        name, shape = str(getattr(path[-1], "key", path[-1])), tuple(sd.shape)
        if name == "var":
            v = rng.uniform(0.5, 2.0, shape)
        elif name == "scale":
            v = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1 and "bias" not in name:
            fan_in = shape[0] if name == "depthwise" else int(np.prod(shape[:-1]))
            v = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:
            v = 0.1 * rng.standard_normal(shape)
        return jnp.asarray(v, jnp.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _centres(length: int) -> list[int]:
    return [length // 2, length - 1 - length // 2]


def _windows(length: int, edits: list[tuple[int, int]], seed: int, pad: int, rows: int = 2):
    """REF one-hot (rows, L, 4), row 0 N-padded on the left and row 1 (if any) on the right,
    and one ALT per edit ``(center, width)`` with every base of ``[center, center + width)``
    changed."""
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, 4, (rows, length))
    tok[0, :pad] = 4
    tok[1:, length - pad :] = 4
    alts = []
    for center, width in edits:
        alt = tok.copy()
        e = slice(center, center + width)
        alt[:, e] = np.where(tok[:, e] == 4, rng.integers(0, 4, (rows, width)),
                             (tok[:, e] + rng.integers(1, 4, (rows, width))) % 4)
        alts.append(jnp.asarray(EYE[alt]))
    return jnp.asarray(EYE[tok]), alts


def _close(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.abs(got - want).max())
    assert err <= REL * max(float(np.abs(want).max()), 1e-6), f"{what}: max abs error {err:.3g}"


def _check_tap(name: str, spliced, alt, ref, span: tuple[int, int], tight: bool) -> None:
    """Spliced ALT == full ALT, and full ALT == REF outside ``span`` (else the span would be
    too narrow). With ``tight``, also ALT != REF at both ends of the span (it is not wider
    than needed); only for smooth pools: a max pool may block a change.

    REF and ALT come from one batched call, whose rows may round differently in the last
    bit, hence "equal" is within 1e-6 relative and "differs" is above 1e-5 relative (the
    outermost bins of a span see the edit only through the outer kernel taps: ~3e-5)."""
    _close(spliced, alt, name)
    alt, ref = np.asarray(alt), np.asarray(ref)
    diff = np.abs(alt - ref).max(axis=(0, 2)) / float(np.abs(ref).max())
    a, b = span
    outside = np.concatenate([diff[:a], diff[b:]])
    assert outside.max(initial=0) <= 1e-6, f"{name}: ALT differs from REF outside {span}"
    if tight:
        assert min(diff[a], diff[b - 1]) > 1e-5, f"{name}: the span {span} is not tight"


def _moved(alt, ref) -> None:
    """The edit moves the tracks well past the tolerance, so the checks are not vacuous."""
    assert float(jnp.abs(alt - ref).max()) > 3 * REL * float(jnp.abs(ref).max())


# --------------------------------------------------------------------------- span algebra


def test_plan_slice_by_hand():
    # conv k3, pool, conv k5, pool: an edit of [20, 21) of 32
    layers = (("conv", 1), ("pool", 2), ("conv", 2), ("tap", "t"), ("pool", 2), ("tap", "out"))
    plan = plan_slice(layers, 32, 20, 21)
    # conv [19, 22) -> pool [9, 11) -> conv [7, 13) = t -> pool [3, 7) = out
    assert plan.spans == {"t": (7, 13), "out": (3, 7)}
    assert plan.strides == {"t": 2, "out": 4}
    # out [3, 7) needs t [6, 14) ⊇ t's own [7, 13) -> [4, 16) -> [8, 32) -> [7, 33) ∩ [0, 32)
    # -> rounded out to multiples of 4: [4, 32)
    assert (plan.start, plan.stop) == (4, 32) and plan.offset("t") == 2
    assert plan_slice(layers, 32, 0, 1).start == 0  # clipped at the true window edge
    with pytest.raises(ValueError, match="multiple"):
        plan_slice(layers, 30, 20, 21)
    with pytest.raises(ValueError, match="inside"):
        plan_slice(layers, 32, 31, 33)


def test_original_spans():
    e = enformer_incremental.slice_plan(EnformerConfig.original(), 98_304)
    assert e.spans == {"trunk": (765, 771)} and (e.start, e.stop) == (97_536, 99_072)
    for c in _centres(524_288):
        b = borzoi_incremental.slice_plan(BorzoiConfig.original(), c)
        assert b.spans == {"res_tower/4": (8187, 8197), "res_tower/5": (4091, 4101),
                           "trunk": (2045, 2051)}
        assert (b.start, b.stop) == (261_376, 262_912)


# --------------------------------------------------------------------------- Enformer


def _enformer_case(cfg: EnformerConfig, edits: list[tuple[int, int]], pad: int, seed: int):
    with jax.default_matmul_precision("highest"):
        p = _random_params(enformer.abstract_params(cfg), seed)
        xr, xas = _windows(cfg.window_len, edits, seed, pad)

        @jax.jit  # one compile per config: the CI machine is small
        def run(p, xr, xas):
            hs = enformer.trunk(p, jnp.concatenate([xr, *xas]), config=cfg)
            full = enformer.head_from_trunk(p, hs, config=cfg)["tracks"]
            h_ref, tr_ref = hs[:2], full[:2]
            out = []
            for k, ((c, w), xa) in enumerate(zip(edits, xas)):
                spliced = enformer_incremental.alt_trunk(cfg, p, h_ref, xa, c, w)
                ref, alt = enformer_incremental.forward_pair(cfg, p, xr, xa, c, w)
                rows = slice(2 * k + 2, 2 * k + 4)
                out.append((hs[rows], spliced, full[rows], ref["tracks"], alt["tracks"]))
            return h_ref, tr_ref, out

        h_ref, tr_ref, out = run(p, xr, xas)
    for (c, w), (h_alt, spliced, tr_alt, ref, alt) in zip(edits, out):
        plan = enformer_incremental.slice_plan(cfg, c, w)
        _check_tap(f"trunk @{c}", spliced, h_alt, h_ref, plan.spans["trunk"], tight=True)
        _close(ref, tr_ref, f"REF tracks @{c}")
        _close(alt, tr_alt, f"ALT tracks @{c}")
        if c in _centres(cfg.window_len):  # an edit at the edge barely reaches the crop
            _moved(tr_alt, tr_ref)


def test_enformer_tiny_reduced_length():
    cfg = EnformerConfig.tiny()  # 2,944 bp, 23 bins: the N runs reach into the slices
    assert _centres(cfg.window_len) == [1472, 1471]
    _enformer_case(cfg, [(1472, 1), (1471, 1), (2941, 3)], pad=1000, seed=1)


def test_enformer_tiny_full_length():
    cfg = EnformerConfig.tiny(window_len=196_608)
    assert cfg.output_len == 896
    _enformer_case(cfg, [(c, 1) for c in _centres(cfg.window_len)], pad=50_000, seed=2)


# --------------------------------------------------------------------------- Borzoi


def _borzoi_case(cfg: BorzoiConfig, edits: list[tuple[int, int]], pad: int, seed: int,
                 rows: int = 2):
    with jax.default_matmul_precision("highest"):
        p = _random_params(borzoi.param_shapes(cfg), seed)
        xr, xas = _windows(cfg.window_len, edits, seed, pad, rows)
        n = rows

        @jax.jit  # one compile per config: the CI machine is small
        def run(p, xr, xas):
            ts = borzoi.trunk(cfg, p, jnp.concatenate([xr, *xas]))
            full = borzoi.head_from_trunk(cfg, p, *ts)
            t_ref = jax.tree.map(lambda a: a[:n], ts)
            out = []
            for k, ((c, w), xa) in enumerate(zip(edits, xas)):
                spliced = borzoi_incremental.alt_trunk(cfg, p, t_ref, xa, c, w)
                ref, alt = borzoi_incremental.forward_pair(cfg, p, xr, xa, c, w)
                rows_k = slice(n * (k + 1), n * (k + 2))
                t_alt = jax.tree.map(lambda a: a[rows_k], ts)
                out.append((t_alt, spliced, full[rows_k], ref["tracks"], alt["tracks"]))
            return t_ref, full[:n], out

        t_ref, tr_ref, out = run(p, xr, xas)
    for (c, w), (t_alt, (h, skips), tr_alt, ref, alt) in zip(edits, out):
        plan = borzoi_incremental.slice_plan(cfg, c, w)
        _check_tap(f"trunk @{c}", h, t_alt[0], t_ref[0], plan.spans["trunk"], tight=False)
        assert len(skips) == cfg.num_unet == 2
        for j in range(cfg.num_unet):
            tap = borzoi_incremental.skip_tap(cfg, j)
            _check_tap(f"{tap} @{c}", skips[j], t_alt[1][j], t_ref[1][j], plan.spans[tap],
                       tight=False)
        _close(ref, tr_ref, f"REF tracks @{c}")
        _close(alt, tr_alt, f"ALT tracks @{c}")
        if c in _centres(cfg.window_len):  # an edit at the edge barely reaches the crop
            _moved(tr_alt, tr_ref)


def test_borzoi_small_reduced_length():
    cfg = BorzoiConfig.small(window_len=8192, crop_bins=11)  # 64 transformer positions
    assert _centres(cfg.window_len) == [4096, 4095]
    _borzoi_case(cfg, [(4096, 1), (4095, 1), (0, 2)], pad=3700, seed=3)


def test_borzoi_tiny_full_length():
    cfg = BorzoiConfig.tiny()
    assert cfg.window_len == 524_288
    # one row (N-padded on the left) keeps the 4,096² attention logits within ~3 GB
    _borzoi_case(cfg, [(c, 1) for c in _centres(cfg.window_len)], pad=100_000, seed=4, rows=1)


FLASHZOI = dict(attention="rotary", num_kv_heads=2, key_size=11, value_size=11,
                rotary_dim=8, rotary_base=20000.0)


def test_flashzoi_small_reduced_length():
    """Flashzoi's attention is global like Borzoi's: the same slice plan, rotary from there."""
    cfg = BorzoiConfig.small(window_len=8192, crop_bins=11, res_filters=(17, 19, 23, 29, 31, 44),
                             num_heads=4, ffn_dim=88, **FLASHZOI)
    _borzoi_case(cfg, [(4096, 1), (4095, 1), (4000, 3), (0, 2)], pad=3700, seed=13)


def test_flashzoi_tiny_full_length():
    cfg = BorzoiConfig.tiny(res_filters=(5, 7, 5, 7, 11, 22), num_heads=2, ffn_dim=44,
                            **{**FLASHZOI, "num_kv_heads": 1})
    _borzoi_case(cfg, [(c, 1) for c in _centres(cfg.window_len)], pad=100_000, seed=14, rows=1)


# --------------------------------------------------------------------------- handles


def test_borzoi_handle_has_apply_pair(tmp_path):
    cfg = BorzoiConfig.small(window_len=8192, crop_bins=11)
    save_checkpoint(tmp_path / "b", arch="borzoi", config=cfg.to_dict(),
                    params=jax.tree.map(np.asarray, _random_params(borzoi.param_shapes(cfg), 5)))
    handle = borzoi.from_checkpoint(load_checkpoint(tmp_path / "b"), head="mouse")
    c = _centres(cfg.window_len)[1]
    xr, (xa,) = _windows(cfg.window_len, [(c, 1)], seed=6, pad=1000)

    @jax.jit
    def run(p, xr, xa):
        return handle.apply_pair(p, xr, xa, c), handle.apply(p, jnp.concatenate([xr, xa]))

    (ref, alt), full = run(handle.params, xr, xa)
    assert alt["tracks"].shape == (2, cfg.output_len, cfg.num_tracks("mouse"))
    _close(ref["tracks"], full["tracks"][:2], "handle REF")  # the non-default head
    _close(alt["tracks"], full["tracks"][2:], "handle ALT")


@pytest.mark.parametrize("arch", ["enformer", "flashzoi"])
def test_engine_pair_step_matches_full_step(tmp_path, arch):
    """A from_checkpoint Enformer (or Flashzoi) handle scores SNVs through ModelScorer's
    incremental step (REF, ALT and their reverse complements) as its full step does."""
    from veff.engine import ModelScorer, ScoreOptions
    from veff.io.windows import WindowBatch

    if arch == "enformer":
        cfg = EnformerConfig.tiny()
        shapes, mod = enformer.abstract_params(cfg), enformer
    else:
        cfg = BorzoiConfig.small(window_len=8192, crop_bins=11, num_heads=4, ffn_dim=88,
                                 res_filters=(17, 19, 23, 29, 31, 44), **FLASHZOI)
        shapes, mod = borzoi.param_shapes(cfg), borzoi
    save_checkpoint(tmp_path / "e", arch=mod.ARCH, config=cfg.to_dict(), params=jax.tree.map(
        np.asarray, _random_params(shapes, 7)))
    handle = mod.from_checkpoint(load_checkpoint(tmp_path / "e"))
    assert handle.apply_pair is not None
    rng = np.random.default_rng(9)
    L, c = cfg.window_len, cfg.window_len // 2
    ref = rng.integers(0, 4, (3, L)).astype(np.uint8)
    ref[2, :700] = 4
    alt = ref.copy()
    alt[:, c] = (ref[:, c] + 1 + rng.integers(0, 3, 3)) % 4
    w = WindowBatch(ref=ref, alt=alt, ref_len=np.ones(3, np.int32),
                    alt_len=np.ones(3, np.int32), padded=np.array([False, False, True]))
    opts = ScoreOptions(batch_size=4)
    inc = ModelScorer(handle, opts).score(w)
    full = ModelScorer(dataclasses.replace(handle, apply_pair=None), opts).score(w)
    assert inc.keys() == full.keys() and len(inc) > 0
    for k in full:  # scores are ALT − REF reductions of O(1) tracks, up to ~1e-3 here
        np.testing.assert_allclose(inc[k], full[k], rtol=0, atol=1e-5)


def test_enformer_stem_in_tiles_equals_the_untiled_stem(monkeypatch):
    """The stem runs in tiles of STEM_TILE positions (cache-sized) with its conv halo taken
    from the padded input; any tiling gives the untiled result."""
    import sys

    cfg = enformer.EnformerConfig.tiny()
    params = _random_params(enformer.abstract_params(cfg), seed=3)
    x = jnp.asarray(np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (1, cfg.window_len))])
    with jax.default_matmul_precision("highest"):
        monkeypatch.setattr(enformer, "STEM_TILE", sys.maxsize)
        whole = enformer.apply(params, x, config=cfg, return_intermediates=True)
        monkeypatch.setattr(enformer, "STEM_TILE", 736)
        assert enformer._stem_tile(cfg.window_len) < cfg.window_len  # really tiled
        tiled = enformer.apply(params, x, config=cfg, return_intermediates=True)
    for key in ("stem", "tracks"):
        scale = float(jnp.abs(whole[key]).max())
        assert float(jnp.abs(tiled[key] - whole[key]).max()) <= 1e-5 * scale, key
