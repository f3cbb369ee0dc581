"""veff's BPNet / chromBPNet vs bpnet-lite 1.1.0 on synthetic Keras-layout h5 files.

Every file has random weights (~1/sqrt(fan_in)); both sides read the SAME file (veff through
its converter, bpnet-lite through ``BPNet.from_chrombpnet``). The reference runs in float64
so that it is the exact answer: veff in float32 (precision "highest") must be within 1e-5
of it, veff in float64 within 1e-9 (that one checks the architecture with no fp32 noise).
bpnet-lite pads ("same") and trims, so its profile is longer than chromBPNet's cropped one
(1960 vs 1000 for the bias model); veff's output is compared with its centre.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")
torch = pytest.importorskip("torch")
bpnetlite_bpnet = pytest.importorskip("bpnetlite.bpnet")
bpnetlite_chrombpnet = pytest.importorskip("bpnetlite.chrombpnet")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_h5 import write_chrombpnet_h5  # noqa: E402

from veff.checkpoint import CheckpointError  # noqa: E402
from veff.convert import chrombpnet_h5, convert  # noqa: E402
from veff.models import bpnet  # noqa: E402
from veff.models.bpnet import BPNetConfig  # noqa: E402
from veff.models.registry import load_model  # noqa: E402

F32_TOL = 1e-5
F64_TOL = 1e-9
BPNet = bpnetlite_bpnet.BPNet
ChromBPNet = bpnetlite_chrombpnet.ChromBPNet


def onehot_inputs(length: int, batch: int, seed: int) -> np.ndarray:
    """(B, L, 4) float32: random bases with runs of N (all-zero columns), the last row being
    the reverse complement of the one before it."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, (batch, length))
    tokens[:, :7] = 4
    tokens[0, length // 2 - 5 : length // 2 + 6] = 4
    tokens[-2 if batch > 1 else 0, length - 13 : length - 4] = 4
    x = np.eye(5, 4, dtype=np.float32)[tokens]
    if batch > 1:
        x[-1] = x[-2][::-1, ::-1]  # reverse complement: flip positions and A<->T, C<->G
    return x


def torch_forward(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """bpnet-lite in float64 (the exact reference)."""
    model = model.eval().double()
    with torch.no_grad():
        prof, counts = model(torch.from_numpy(x).double().transpose(1, 2))
    return {"logits": prof[:, 0].numpy(), "logcounts": counts[:, 0].numpy()}


def centre(a: np.ndarray, n: int) -> np.ndarray:
    w = (a.shape[1] - n) // 2
    return a[:, w : w + n]


def veff_forward(apply, params, x, dtype):
    if dtype == np.float64:
        with jax.enable_x64(True):
            p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), params)
            out = jax.jit(apply)(p64, jnp.asarray(x, jnp.float64))
            return jax.tree.map(np.asarray, out)
    with jax.default_matmul_precision("highest"):
        return jax.tree.map(np.asarray, jax.jit(apply)(params, jnp.asarray(x)))


def assert_parity(apply, params, ref: dict[str, np.ndarray], x: np.ndarray, *, f64: bool = True):
    dtypes = (np.float32, np.float64) if f64 else (np.float32,)
    for dtype, tol in zip(dtypes, (F32_TOL, F64_TOL)):
        out = veff_forward(apply, params, x, dtype)
        assert out["logits"].dtype == dtype
        logits_ref = centre(ref["logits"], out["logits"].shape[1])
        d_logits = np.abs(out["logits"] - logits_ref).max()
        d_counts = np.abs(out["logcounts"] - ref["logcounts"]).max()
        assert d_logits <= tol and d_counts <= tol, (dtype.__name__, d_logits, d_counts)
    # The test must be able to fail: the logits are far from trivial.
    assert np.abs(ref["logits"]).max() > 0.1 and np.ptp(ref["logcounts"]) > 1e-3


def torch_bpnet_from_tree(tree: dict) -> torch.nn.Module:
    """A bpnet-lite BPNet holding the given veff/Keras-layout weights (independent of veff's
    converters)."""
    n_layers = sum(k.startswith("bpnet_") and k.endswith("conv") for k in tree) - 1
    filters = tree[bpnet.STEM]["kernel"].shape[2]
    m = BPNet(n_filters=filters, n_layers=n_layers, n_outputs=1, n_control_tracks=0,
              verbose=False)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    sd = {"iconv.weight": t(tree[bpnet.STEM]["kernel"].transpose(2, 1, 0)),
          "iconv.bias": t(tree[bpnet.STEM]["bias"]),
          "fconv.weight": t(tree[bpnet.PROFILE]["kernel"].transpose(2, 1, 0)),
          "fconv.bias": t(tree[bpnet.PROFILE]["bias"]),
          "linear.weight": t(tree[bpnet.COUNT]["kernel"].T),
          "linear.bias": t(tree[bpnet.COUNT]["bias"])}
    for i in range(1, n_layers + 1):
        sd[f"rconvs.{i - 1}.weight"] = t(tree[f"bpnet_{i}conv"]["kernel"].transpose(2, 1, 0))
        sd[f"rconvs.{i - 1}.bias"] = t(tree[f"bpnet_{i}conv"]["bias"])
    m.load_state_dict(sd, strict=True)
    return m


def single_apply(cfg: BPNetConfig):
    return lambda p, x: bpnet.forward(cfg, p, x)


# kind, filters, n_layers, input_len, output_len, batch
SINGLE_CASES = [
    pytest.param("bias", 128, 4, 2114, 1000, 3, id="bias-128x4"),
    pytest.param("nobias", 512, 8, 2114, 1000, 2, id="nobias-512x8"),
    pytest.param("nobias", 7, 3, 300, 100, 3, id="nobias-tiny-7x3"),
    pytest.param("bias", 11, 4, 401, 171, 3, id="bias-tiny-11x4"),
]


@pytest.mark.parametrize("kind,filters,n_layers,input_len,output_len,batch", SINGLE_CASES)
def test_single_model_matches_bpnet_lite(tmp_path, kind, filters, n_layers, input_len,
                                         output_len, batch):
    path = tmp_path / f"{kind}.h5"
    write_chrombpnet_h5(path, kind, filters, n_layers, seed=filters + n_layers,
                        input_len=input_len, output_len=output_len)
    conv = chrombpnet_h5.read(path)
    cfg = BPNetConfig.from_dict(conv.config)
    assert (cfg.filters, cfg.n_layers, cfg.input_len, cfg.output_len) == (
        filters, n_layers, input_len, output_len)
    assert conv.facts["role"] == ("bias" if kind == "bias" else "accessibility")

    x = onehot_inputs(input_len, batch, seed=1)
    ref = torch_forward(BPNet.from_chrombpnet(str(path)), x)
    if kind == "bias" and filters == 128:
        assert ref["logits"].shape[1] == 1960 and cfg.profile_crop == 480
    # float64 for the 512-filter model costs as much as the rest together; its architecture
    # is the same code path as the tiny ones, checked in float64 there.
    assert_parity(single_apply(cfg), conv.params, ref, x, f64=filters != 512)


def test_bias_plus_accessibility_files_match_chrombpnet(tmp_path):
    """bias_model_scaled.h5 + chrombpnet_nobias.h5 -> combined model vs bpnet-lite ChromBPNet."""
    write_chrombpnet_h5(tmp_path / "bias.h5", "bias", 13, 4, seed=5)
    write_chrombpnet_h5(tmp_path / "acc.h5", "nobias", 17, 6, seed=6)
    bias, acc = chrombpnet_h5.read(tmp_path / "bias.h5"), chrombpnet_h5.read(tmp_path / "acc.h5")
    acc_cfg, bias_cfg = BPNetConfig.from_dict(acc.config), BPNetConfig.from_dict(bias.config)
    params = {"accessibility": acc.params, "bias": bias.params}
    ref_model = ChromBPNet(BPNet.from_chrombpnet(str(tmp_path / "bias.h5")),
                           BPNet.from_chrombpnet(str(tmp_path / "acc.h5")))
    x = onehot_inputs(2114, 3, seed=2)
    ref = torch_forward(ref_model, x)
    assert_parity(lambda p, x: bpnet.forward_chrombpnet(acc_cfg, bias_cfg, p, x), params, ref, x)


def test_full_nested_file_matches_chrombpnet(tmp_path):
    """chrombpnet.h5 (nested model_wo_bias + a bias group of arbitrary name) through the
    converter and the native checkpoint vs bpnet-lite ChromBPNet of the same weights."""
    path = tmp_path / "chrombpnet.h5"
    written = write_chrombpnet_h5(path, "full", 13, 5, seed=7, bias_filters=7, bias_n_layers=3,
                                  bias_group="model_3")
    ckpt = convert([str(path)], "chrombpnet-h5", str(tmp_path / "ckpt"), name="full")
    assert ckpt.arch == "chrombpnet"
    handle = load_model(str(tmp_path / "ckpt"))
    assert (handle.kind, handle.window_len, handle.output_len, handle.num_folds) == (
        "profile", 2114, 1000, 1)
    ref_model = ChromBPNet(torch_bpnet_from_tree(written["bias"]),
                           torch_bpnet_from_tree(written["accessibility"]))
    x = onehot_inputs(2114, 3, seed=3)
    assert_parity(handle.apply, handle.params, torch_forward(ref_model, x), x)


def test_native_round_trip_and_tamper(tmp_path):
    path = tmp_path / "nobias.h5"
    write_chrombpnet_h5(path, "nobias", 11, 4, seed=9, input_len=400, output_len=120)
    conv = chrombpnet_h5.read(path)
    cfg = BPNetConfig.from_dict(conv.config)
    x = jnp.asarray(onehot_inputs(400, 3, seed=4))
    direct = jax.jit(single_apply(cfg))(conv.params, x)

    convert([str(path)], "chrombpnet-h5", str(tmp_path / "ck"), name="acc")
    handle = load_model(str(tmp_path / "ck"))
    assert handle.name == "acc" and handle.track_names == ["acc"]
    loaded = jax.jit(handle.apply)(handle.params, x)
    for k in ("logits", "logcounts"):
        np.testing.assert_array_equal(np.asarray(loaded[k]), np.asarray(direct[k]))

    # The exact incremental ALT path agrees with two full passes.
    x_alt = np.array(x)
    x_alt[:, 200] = np.roll(x_alt[:, 200], 1, axis=-1)
    ref_out, alt_out = jax.jit(handle.apply_pair, static_argnums=3)(
        handle.params, x, jnp.asarray(x_alt), 200)
    alt_full = jax.jit(handle.apply)(handle.params, jnp.asarray(x_alt))
    for k in ("logits", "logcounts"):
        np.testing.assert_allclose(ref_out[k], direct[k], rtol=0, atol=1e-5)
        np.testing.assert_allclose(alt_out[k], alt_full[k], rtol=0, atol=1e-5)
    assert np.abs(np.asarray(alt_full["logits"] - direct["logits"])).max() > 1e-4

    # Edit one weight in place (same size, valid safetensors): the digest must catch it.
    w = tmp_path / "ck" / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-3] ^= 0x10
    w.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(str(tmp_path / "ck"))
