"""veff Flashzoi (Borzoi with rotary grouped-query attention) vs borzoi-pytorch 0.5.x
``Borzoi(flashed=True)``, block by block, fp32, every weight re-randomised.

flash-attn (which borzoi-pytorch imports for Flashzoi's attention) is CUDA-only; the
reference's attention is the stand-in of ``tests/helpers_flashzoi.py`` built from the exact
arguments borzoi-pytorch passes. Widths are reduced, but the head size stays above
borzoi-pytorch's fixed 128 rotary dims (136: 8 dims pass through unrotated) and the grouped
query heads are kept (4 heads over 2 key/value heads; 2 over 1 at full length).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("borzoi_pytorch")

from helpers_flashzoi import MHA, install_mha_standin, torch_flashzoi, torch_forward  # noqa: E402

from veff.checkpoint import load_checkpoint  # noqa: E402
from veff.convert import convert  # noqa: E402
from veff.convert.borzoi_pytorch import (  # noqa: E402
    convert_borzoi_pytorch,
    infer_config,
    map_state_dict,
)
from veff.convert.common import ConvertError, assign  # noqa: E402
from veff.models import borzoi as bz  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

ABS_TOL = 2e-5  # per block, max |veff - ref| (block outputs are O(1)-O(10))
ROTARY = dict(attention="rotary", rotary_dim=128, rotary_base=20000.0)
SMALL = bz.BorzoiConfig.small(res_filters=(17, 19, 23, 29, 31, 544), num_heads=4,
                              num_kv_heads=2, key_size=136, value_size=136, ffn_dim=1088,
                              **ROTARY)
TINY = bz.BorzoiConfig.tiny(res_filters=(5, 7, 5, 7, 11, 272), num_heads=2, num_kv_heads=1,
                            key_size=136, value_size=136, ffn_dim=544, **ROTARY)


@pytest.fixture(autouse=True)
def _standin(monkeypatch):
    install_mha_standin(monkeypatch)
    MHA.calls.clear()


def _onehot(seed: int, batch: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(batch, length))]
    x[rng.random((batch, length)) < 0.01] = 0.0  # ~1% N
    return x


def _veff(ckpt_dir, x: np.ndarray, head: str = "human") -> dict[str, np.ndarray]:
    ckpt = load_checkpoint(ckpt_dir)
    cfg = bz.BorzoiConfig.from_dict(ckpt.config)
    params = bz.from_checkpoint(ckpt, head=head).params
    out = jax.jit(lambda p, x: bz.apply(cfg, p, x, head=head, return_intermediates=True))(
        params, x)
    res = {k: np.asarray(v) for k, v in out["intermediates"].items()}
    res["tracks"] = np.asarray(out["tracks"])
    return res


def _compare(label: str, ours: dict, ref: dict, tol: float = ABS_TOL) -> dict[str, float]:
    errs = {}
    for k, b in ref.items():
        a = np.asarray(ours[k])
        assert a.shape == b.shape, (k, a.shape, b.shape)
        errs[k] = float(np.max(np.abs(a - b)))
    print(f"\n[{label}] max |veff - ref| (max |ref|):")
    for k, e in errs.items():
        print(f"  {k:16s} {e:.2e}  ({float(np.max(np.abs(ref[k]))):.2e})")
    bad = {k: e for k, e in errs.items() if not e <= tol}
    assert not bad, f"{label}: blocks over {tol}: {bad}"
    return errs


def test_small_hf_directory_both_heads(tmp_path):
    """16,384 bp (128 positions), batch 2, 2 layers, 4 query / 2 key-value heads, from a
    save_pretrained directory (heads read from its config.json)."""
    model = torch_flashzoi(SMALL)
    call = MHA.calls[0]
    assert (call["num_heads_kv"], call["rotary_emb_dim"], call["rotary_emb_base"]) == \
        (SMALL.num_kv_heads, SMALL.rotary_dim, SMALL.rotary_base)
    assert call["softmax_scale"] == pytest.approx(SMALL.key_size ** -0.5, rel=1e-12)
    model.save_pretrained(tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["flashed"] is True
    convert_borzoi_pytorch(tmp_path / "hf", tmp_path / "ck", window_len=SMALL.window_len,
                           position_basis_length=None)
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())["config"]
    assert bz.BorzoiConfig.from_dict(saved) == SMALL
    x = _onehot(0, 2, SMALL.window_len)
    ref = torch_forward(model, x, SMALL.num_layers)
    _compare("flashzoi small, human", _veff(tmp_path / "ck", x), ref)
    ref_m = torch_forward(model, x, SMALL.num_layers, is_human=False)["tracks"]
    _compare("flashzoi small, mouse", {"tracks": _veff(tmp_path / "ck", x, "mouse")["tracks"]},
             {"tracks": ref_m})
    # the attention really contributes and the outputs vary
    assert np.std(ref["transformer/1"] - ref["transformer/0"]) > 1e-1
    assert np.std(ref["tracks"]) > 1e-2


def test_tiny_full_length_rotary_positions(tmp_path):
    """The position-dependent part at full length: 524,288 bp -> 4,096 transformer positions
    (rotary angles up to 4095 rad), 6,144 bins, from a plain state dict (num_heads given)."""
    model = torch_flashzoi(TINY, seed=5)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    convert_borzoi_pytorch(tmp_path / "sd.pt", tmp_path / "ck", num_heads=TINY.num_heads)
    x = _onehot(2, 1, TINY.window_len)
    ref = torch_forward(model, x, TINY.num_layers)
    ours = _veff(tmp_path / "ck", x)
    assert ours["tracks"].shape == (1, 6144, TINY.num_tracks("human"))
    _compare("flashzoi tiny 524,288 bp", ours, ref)
    # a wrong rotary base is not silently equal: the test sees the positions
    cfg = bz.BorzoiConfig.from_dict(load_checkpoint(tmp_path / "ck").config)
    params = bz.from_checkpoint(load_checkpoint(tmp_path / "ck")).params
    wrong = dataclasses.replace(cfg, rotary_base=10000.0)

    @jax.jit
    def layer0(p, x):
        h, _ = bz.trunk(wrong, p, x)
        return bz._transformer_layer(wrong, p["transformer"]["0"], h, None)

    assert np.max(np.abs(np.asarray(layer0(params, x)) - ref["transformer/0"])) > 100 * ABS_TOL


def test_full_size_layout_and_constants():
    """borzoi-pytorch's published Flashzoi layout maps 1:1 onto BorzoiConfig.flashzoi()."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig as TorchConfig

    with torch.device("meta"):
        model = Borzoi(TorchConfig(enable_mouse_head=True, flashed=True))
    call = MHA.calls[0]
    assert call == dict(use_flash_attn=True, embed_dim=1536, num_heads=8, num_heads_kv=4,
                        qkv_proj_bias=True, out_proj_bias=True, dropout=0.05,
                        softmax_scale=192 ** -0.5, causal=False, rotary_emb_dim=128,
                        rotary_emb_base=20000.0, rotary_emb_scale_base=None,
                        fused_bias_fc=False)
    sd = {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in
          model.state_dict().items()}
    cfg = infer_config(sd, {"flashed": True}, source="meta")
    assert cfg == bz.BorzoiConfig.flashzoi()
    tree = assign(bz.param_shapes(cfg), map_state_dict(sd, cfg.num_layers, cfg), source="meta")
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))
    assert n == sum(int(np.prod(v.shape)) for k, v in sd.items()
                    if not k.endswith("num_batches_tracked"))


def test_converter_is_strict_and_checks_inv_freq(tmp_path):
    model = torch_flashzoi(SMALL)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    del sd["transformer.1.0.fn.1.mha.Wqkv.bias"]
    sd["transformer.0.0.fn.1.mha.extra"] = torch.zeros(3)
    sd["transformer.0.0.fn.1.to_q.weight"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ConvertError) as e:
        convert_borzoi_pytorch(tmp_path / "bad.pt", tmp_path / "ck", num_heads=4,
                               window_len=SMALL.window_len, bins_to_return=SMALL.output_len)
    msg = str(e.value)
    assert "transformer/1/attn/qkv_bias" in msg
    assert "torch:transformer.0.0.fn.1.mha.extra" in msg
    assert "torch:transformer.0.0.fn.1.to_q.weight" in msg
    assert not (tmp_path / "ck").exists()
    # a stored inv_freq (older flash-attn persisted it) is checked, then dropped
    good = {k: v.clone() for k, v in model.state_dict().items()}
    inv = 1.0 / (20000.0 ** (torch.arange(0, 128, 2, dtype=torch.float32) / 128))
    for key, val, ok in (("inv_ok", inv, True), ("inv_bad", inv * 1.01, False)):
        good["transformer.0.0.fn.1.mha.rotary_emb.inv_freq"] = val
        torch.save(good, tmp_path / f"{key}.pt")
        kw = dict(num_heads=4, window_len=SMALL.window_len, bins_to_return=SMALL.output_len)
        if ok:
            convert_borzoi_pytorch(tmp_path / f"{key}.pt", tmp_path / key, **kw)
        else:
            with pytest.raises(ConvertError, match="rotary frequencies"):
                convert_borzoi_pytorch(tmp_path / f"{key}.pt", tmp_path / key, **kw)
    # heads that do not fit the shapes, and Borzoi given num_heads
    with pytest.raises(ConvertError, match="does not fit 3 heads"):
        convert_borzoi_pytorch(tmp_path / "inv_ok.pt", tmp_path / "h3", num_heads=3,
                               window_len=SMALL.window_len, bins_to_return=SMALL.output_len)


def test_four_replicates_as_one_fold_ensemble(tmp_path):
    """Four replicates -> one checkpoint with a fold axis; fold f reproduces replicate f."""
    cfg = dataclasses.replace(SMALL, num_layers=1)
    models = []
    for f in range(4):
        m = torch_flashzoi(cfg, seed=100 + f)
        m.save_pretrained(tmp_path / f"r{f}")
        models.append(m)
    convert([str(tmp_path / f"r{f}") for f in range(4)], "borzoi-pytorch", str(tmp_path / "ens"),
            window_len=cfg.window_len, position_basis_length=None)
    handle = bz.from_checkpoint(load_checkpoint(tmp_path / "ens"))
    assert handle.num_folds == 4
    x = _onehot(3, 1, cfg.window_len)
    per_fold = jax.jit(jax.vmap(handle.apply, in_axes=(0, None)))(handle.params, x)["tracks"]
    for f, m in enumerate(models):
        ref = torch_forward(m, x, cfg.num_layers)["tracks"]
        _compare(f"replicate {f}", {"tracks": np.asarray(per_fold[f])}, {"tracks": ref})


@pytest.mark.parametrize("heads,kv,block", [(4, 2, 32), (2, 1, 48), (3, 3, 96), (8, 4, 96)])
def test_gqa_attention_blocks_match_float64(heads, kv, block):
    """Query-blocked grouped attention == a float64 numpy softmax(q k^T s) v with k/v heads
    repeated (query head h reads key/value head h // (heads / kv))."""
    from veff.models import rotary

    rng = np.random.default_rng(heads * 10 + kv)
    q, k, v = (rng.standard_normal((2, 96, n, 16)) for n in (heads, kv, kv))
    got = np.asarray(rotary.gqa_attention(*(jax.numpy.asarray(a, "float32") for a in (q, k, v)),
                                          0.3, query_block=block))
    kk, vv = (np.repeat(a, heads // kv, axis=2) for a in (k, v))
    logits = np.einsum("bthd,bshd->bhts", q, kk) * 0.3
    w = np.exp(logits - logits.max(-1, keepdims=True))
    want = np.einsum("bhts,bshd->bthd", w / w.sum(-1, keepdims=True), vv)
    assert np.max(np.abs(got - want)) < 1e-5
