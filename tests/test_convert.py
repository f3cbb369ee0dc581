"""Converters: strict key assignment, fold stacking, bpnet-lite files, the model registry."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_h5 import write_chrombpnet_h5  # noqa: E402

from veff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from veff.convert import ConvertError, chrombpnet_h5, convert  # noqa: E402
from veff.convert.common import assign  # noqa: E402
from veff.models import bpnet, registry  # noqa: E402
from veff.models.bpnet import BPNetConfig  # noqa: E402

TINY = dict(input_len=300, output_len=100)


def x_batch(length: int, batch: int = 3, seed: int = 0) -> jnp.ndarray:
    tokens = np.random.default_rng(seed).integers(0, 5, (batch, length))
    return jnp.asarray(np.eye(5, 4, dtype=np.float32)[tokens])


# --------------------------------------------------------------------------- strictness


def test_assign_lists_missing_unexpected_and_bad_shapes():
    cfg = BPNetConfig.tiny()
    expected = bpnet.abstract_params(cfg)
    found = {f"{k}/{leaf}": np.zeros(v.shape, np.float32)
             for k, d in expected.items() for leaf, v in d.items()}
    del found["bpnet_2conv/bias"]
    del found["prof_out_precrop/kernel"]
    found["mystery_dense/kernel"] = np.zeros((3, 3), np.float32)
    found["bpnet_3conv/kernel"] = np.zeros((3, 7, 5), np.float32)
    with pytest.raises(ConvertError) as e:
        assign(expected, found, source="src.h5")
    msg = str(e.value)
    for key in ("bpnet_2conv/bias", "prof_out_precrop/kernel", "mystery_dense/kernel",
                "bpnet_3conv/kernel (3, 7, 5) (expected (3, 7, 7))", "src.h5"):
        assert key in msg, msg
    assert "missing 2" in msg and "unexpected 1" in msg and "wrong shape 1" in msg


def test_assign_accepts_exact_tree():
    cfg = BPNetConfig.tiny()
    params = bpnet.init(cfg, jax.random.key(0))
    flat = {f"{k}/{leaf}": np.asarray(v) for k, d in params.items() for leaf, v in d.items()}
    out = assign(bpnet.abstract_params(cfg), flat, source="x")
    np.testing.assert_array_equal(out["bpnet_2conv"]["kernel"], params["bpnet_2conv"]["kernel"])


def test_h5_missing_and_extra_layer_are_both_reported(tmp_path):
    path = tmp_path / "bias.h5"
    write_chrombpnet_h5(path, "bias", 7, 3, seed=0, **TINY)
    with h5py.File(path, "a") as f:
        del f["model_weights/bpnet_2conv/bpnet_2conv/bias:0"]
        g = f["model_weights"].create_group("mystery_dense/mystery_dense")
        g.create_dataset("kernel:0", data=np.zeros((7, 2), np.float32))
    with pytest.raises(ConvertError) as e:
        chrombpnet_h5.read(path)
    msg = str(e.value)
    assert "bpnet_2conv/bias" in msg and "mystery_dense/kernel" in msg, msg


def test_h5_ignores_optimizer_and_reads_weights_only_file(tmp_path):
    path = tmp_path / "nobias.h5"
    written = write_chrombpnet_h5(path, "nobias", 7, 3, seed=1, **TINY)
    with h5py.File(path) as f:
        assert "optimizer_weights" in f  # the writer includes it; the reader must skip it
    conv = chrombpnet_h5.read(path)
    np.testing.assert_array_equal(conv.params["bpnet_3conv"]["kernel"],
                                  written["accessibility"]["bpnet_3conv"]["kernel"])
    # A save_weights() file: layer groups at the root, no model_config (-> 2114/1000 unless
    # the caller says input_len).
    wpath = tmp_path / "weights_only.h5"
    with h5py.File(path) as src, h5py.File(wpath, "w") as dst:
        for k in src["model_weights"]:
            src.copy(src["model_weights"][k], dst, name=k)
        dst.attrs["layer_names"] = src["model_weights"].attrs["layer_names"]
    with pytest.raises(ConvertError, match="shorter than output_len 1000"):
        chrombpnet_h5.read(wpath, input_len=300)
    conv2 = chrombpnet_h5.read(wpath, input_len=300, output_len=100)
    assert conv2.config == conv.config
    for k, v in conv.params.items():
        np.testing.assert_array_equal(conv2.params[k]["kernel"], v["kernel"])
    with pytest.raises(ConvertError, match="input_len"):
        chrombpnet_h5.read(path, input_len=2114)  # the file says 300
    with pytest.raises(ConvertError, match="output_len"):
        chrombpnet_h5.read(path, output_len=102)  # the file says 100
    with pytest.raises(ConvertError, match="does not take"):
        convert([str(path)], "chrombpnet-h5", str(tmp_path / "o"), trimming=3)


def test_not_an_h5(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    with pytest.raises(ConvertError, match="HDF5"):
        convert([str(bad)], "chrombpnet-h5", str(tmp_path / "out"))
    with pytest.raises(ConvertError, match="unknown format"):
        convert([str(bad)], "keras3", str(tmp_path / "out"))
    with pytest.raises(ConvertError, match="no such file"):
        convert([str(tmp_path / "nope.h5")], "chrombpnet-h5", str(tmp_path / "out"))


# --------------------------------------------------------------------------- folds


def test_fold_stacking_matches_each_fold(tmp_path):
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"fold_{k}.h5"))
        write_chrombpnet_h5(paths[-1], "nobias", 7, 3, seed=10 + k, **TINY)
    ckpt = convert(paths, "chrombpnet-h5", str(tmp_path / "folds"), name="acc5")
    assert ckpt.metadata["num_folds"] == 3 and ckpt.metadata["format"] == "chrombpnet-h5"
    assert len(ckpt.metadata["source_sha256"]) == 3
    handle = registry.load_model(str(tmp_path / "folds"))
    assert handle.num_folds == 3
    assert handle.params["bpnet_1st_conv"]["kernel"].shape == (3, 21, 4, 7)

    x = x_batch(300)
    stacked = jax.jit(jax.vmap(handle.apply, in_axes=(0, None)))(handle.params, x)
    for k, p in enumerate(paths):
        single = convert([p], "chrombpnet-h5", str(tmp_path / f"single_{k}"))
        h1 = registry.load_model(str(single.path))
        assert h1.num_folds == 1
        out = jax.jit(h1.apply)(h1.params, x)
        for key in ("logits", "logcounts"):
            np.testing.assert_allclose(stacked[key][k], out[key], rtol=0, atol=1e-6)
    assert not np.allclose(stacked["logits"][0], stacked["logits"][1])


def test_fold_configs_must_agree(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_chrombpnet_h5(a, "nobias", 7, 3, seed=0, **TINY)
    write_chrombpnet_h5(b, "nobias", 11, 3, seed=0, **TINY)
    with pytest.raises(ConvertError, match="share one config"):
        convert([str(a), str(b)], "chrombpnet-h5", str(tmp_path / "out"))
    with pytest.raises(ConvertError, match="twice"):
        convert([str(a), str(a)], "chrombpnet-h5", str(tmp_path / "out"))


def test_checkpoint_with_wrong_tree_is_refused(tmp_path):
    cfg = BPNetConfig.tiny()
    params = jax.tree.map(np.asarray, bpnet.init(cfg, 1))
    del params["bpnet_2conv"]
    save_checkpoint(tmp_path / "ck", arch="bpnet", config=cfg.to_dict(), params=params)
    with pytest.raises(CheckpointError, match="bpnet_2conv/kernel"):
        registry.load_model(str(tmp_path / "ck"))
    save_checkpoint(tmp_path / "ck2", arch="nonesuch", config={}, params={})
    with pytest.raises(CheckpointError, match="unknown architecture"):
        registry.load_model(str(tmp_path / "ck2"))


# --------------------------------------------------------------------------- bpnet-lite


@pytest.fixture(scope="module")
def bpnetlite():
    pytest.importorskip("torch")
    return pytest.importorskip("bpnetlite.bpnet"), pytest.importorskip("bpnetlite.chrombpnet")


def _random_torch(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # re-randomise every tensor, biases included
            fan_in = max(1, int(np.prod(p.shape[1:]))) if p.ndim > 1 else 10
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return model.eval()


def _torch_out(model, x):
    import torch

    with torch.no_grad():
        prof, counts = model.double()(torch.from_numpy(np.asarray(x, np.float64)).transpose(1, 2))
    return prof[:, 0].numpy(), counts[:, 0].numpy()


def test_bpnet_lite_module_and_state_dict_round_trip(tmp_path, bpnetlite):
    import torch

    bp, _ = bpnetlite
    model = _random_torch(bp.BPNet(n_filters=7, n_layers=3, n_outputs=1, n_control_tracks=0,
                                   verbose=False), seed=0)
    torch.save(model, tmp_path / "model.torch")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    x = x_batch(300)
    ref_prof, ref_counts = _torch_out(model, x)  # (B, 300 - 2 * 61 = 178)
    with pytest.raises(ConvertError, match="--trust-pickle"):  # a whole module is code
        convert([str(tmp_path / "model.torch")], "bpnet-lite", str(tmp_path / "no"), input_len=300)
    for src in ("model.torch", "model.pt"):
        ckpt = convert([str(tmp_path / src)], "bpnet-lite", str(tmp_path / src.replace(".", "_")),
                       input_len=300, trust_pickle=src.endswith(".torch"))
        assert ckpt.arch == "bpnet" and ckpt.config["output_len"] == 178
        h = registry.load_model(str(ckpt.path))
        with jax.default_matmul_precision("highest"):
            out = jax.jit(h.apply)(h.params, x)
        assert np.abs(np.asarray(out["logits"]) - ref_prof).max() <= 1e-5
        assert np.abs(np.asarray(out["logcounts"]) - ref_counts).max() <= 1e-5


def test_bpnet_lite_chrombpnet_round_trip(tmp_path, bpnetlite):
    import torch

    bp, cb = bpnetlite
    bias = _random_torch(bp.BPNet(n_filters=5, n_layers=2, n_outputs=1, n_control_tracks=0,
                                  verbose=False), seed=1)
    acc = _random_torch(bp.BPNet(n_filters=11, n_layers=3, n_outputs=1, n_control_tracks=0,
                                 verbose=False), seed=2)
    model = cb.ChromBPNet(bias, acc).eval()
    torch.save(model, tmp_path / "cb.torch")
    ckpt = convert([str(tmp_path / "cb.torch")], "bpnet-lite", str(tmp_path / "cb"),
                   input_len=300, trust_pickle=True)
    assert ckpt.arch == "chrombpnet"
    # bias profile 300 - 2 * 53 = 194 is centre-cropped to the accessibility's 178
    assert ckpt.config["bias"]["output_len"] == 194
    assert ckpt.config["accessibility"]["output_len"] == 178
    x = x_batch(300, seed=5)
    ref_prof, ref_counts = _torch_out(model, x)
    h = registry.load_model(str(ckpt.path))
    with jax.default_matmul_precision("highest"):
        out = jax.jit(h.apply)(h.params, x)
    assert np.abs(np.asarray(out["logits"]) - ref_prof).max() <= 1e-5
    assert np.abs(np.asarray(out["logcounts"]) - ref_counts).max() <= 1e-5


@pytest.mark.parametrize("kw,match", [
    (dict(n_outputs=1, n_control_tracks=2), "control tracks"),
    (dict(n_outputs=2, n_control_tracks=0), "n_outputs=2"),
    (dict(n_outputs=1, n_control_tracks=0, trimming=100), "trimming=100"),
])
def test_bpnet_lite_refusals(tmp_path, bpnetlite, kw, match):
    import torch

    bp, _ = bpnetlite
    model = bp.BPNet(n_filters=5, n_layers=2, verbose=False, **kw)
    torch.save(model, tmp_path / "m.torch")
    with pytest.raises(ConvertError, match=match):
        convert([str(tmp_path / "m.torch")], "bpnet-lite", str(tmp_path / "out"),
                trust_pickle=True)
    if "trimming" not in kw:  # a state dict says it through its shapes
        torch.save(model.state_dict(), tmp_path / "m.pt")
        with pytest.raises(ConvertError, match="control tracks|profile outputs"):
            convert([str(tmp_path / "m.pt")], "bpnet-lite", str(tmp_path / "out2"))


# --------------------------------------------------------------------------- registry


def test_registry_lists_and_loads_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VEFF_MODELS", str(tmp_path / "models"))
    assert registry.list_models() == []
    src = tmp_path / "b.h5"
    write_chrombpnet_h5(src, "bias", 7, 3, seed=2, **TINY)
    convert([str(src)], "chrombpnet-h5", str(tmp_path / "models" / "k562_bias"))
    (tmp_path / "models" / "not_a_model").mkdir()
    listed = registry.list_models()
    assert listed == [{"name": "k562_bias", "arch": "bpnet", "window": 300,
                       "tracks": ["k562_bias"], "path": str(tmp_path / "models" / "k562_bias")}]
    convert([str(src)], "chrombpnet-h5", str(tmp_path / "models" / "second"), name="other")
    assert registry.load_model("second").name == "second"  # the registered name wins
    assert registry.load_model(str(tmp_path / "models" / "second")).name == "other"
    h = registry.load_model("k562_bias", name="renamed")
    assert h.name == "renamed" and h.window_len == 300 and h.output_len == 100
    assert load_checkpoint(tmp_path / "models" / "k562_bias").metadata["role"] == "bias"
    with pytest.raises(CheckpointError, match="k562_bias"):
        registry.load_model("nonesuch")
