"""gReLU Lightning checkpoints -> veff, against the torch modules they wrap.

gReLU itself is not installed (heavy, stale pins). Each test builds a gReLU-layout ``.ckpt``
from a re-randomised tiny enformer-pytorch / borzoi-pytorch module: the keys are renamed
the way gReLU's modules name them (``model.embedding.conv_tower.blocks.…``,
``model.head.channel_transform.conv.layer``, a 1x1 Conv1d head), with Lightning's
``hyper_parameters`` / ``data_params`` around them. The converted veff model must
reproduce the torch module (fp32, relative to max|torch| <= 1e-5) and carry the tasks.

For Borzoi, gReLU builds the central-mask basis for the current transformer length, while
borzoi-pytorch 0.5 uses 4096; the reference modules get the current-length basis set on
their attention layers, which is exactly gReLU's computation.
"""

from __future__ import annotations

import collections
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ep = pytest.importorskip("enformer_pytorch")

from helpers_torch import narrow_borzoi, rerandomise  # noqa: E402
from veff.checkpoint import save_checkpoint  # noqa: E402
from veff.convert import enformer_pytorch as efp  # noqa: E402
from veff.convert import grelu  # noqa: E402
from veff.convert.common import ConvertError  # noqa: E402
from veff.models import borzoi as bz  # noqa: E402
from veff.models.enformer import EnformerConfig  # noqa: E402
from veff.models.registry import load_model  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
REL_TOL = 1e-5


# ----------------------------------------------------------------------------- helpers
def _onehot(length: int, seed: int, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, (batch, length))
    tokens[rng.random((batch, length)) < 0.01] = 4  # N -> all-zero column
    return np.eye(5, 4, dtype=np.float32)[tokens]


def _rename(state: dict, rules: list[tuple[str, str]]) -> collections.OrderedDict:
    out = collections.OrderedDict()
    for k, v in state.items():
        for pat, rep in rules:
            if re.fullmatch(pat, k):
                out["model." + re.sub(pat, rep, k)] = v.detach().clone()
                break
        else:
            raise AssertionError(f"test rename has no rule for {k}")
    return out


# gReLU's module names (grelu.model.trunks.enformer / blocks / heads) for enformer-pytorch's
_ENFORMER_TO_GRELU = [
    (r"stem\.0\.(.+)", r"embedding.conv_tower.blocks.0.0.\1"),
    (r"stem\.1\.fn\.0\.(.+)", r"embedding.conv_tower.blocks.0.1.norm.layer.\1"),
    (r"stem\.1\.fn\.2\.(.+)", r"embedding.conv_tower.blocks.0.1.conv.\1"),
    (r"stem\.2\.(.+)", r"embedding.conv_tower.blocks.0.1.pool.layer.\1"),
    (r"transformer\.(\d+)\.0\.fn\.0\.(.+)", r"embedding.transformer_tower.blocks.\1.norm.layer.\2"),
    (r"transformer\.(\d+)\.0\.fn\.1\.(.+)", r"embedding.transformer_tower.blocks.\1.mha.\2"),
    (r"transformer\.(\d+)\.1\.fn\.0\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense1.norm.layer.\2"),
    (r"transformer\.(\d+)\.1\.fn\.1\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense1.linear.\2"),
    (r"transformer\.(\d+)\.1\.fn\.4\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense2.linear.\2"),
    (r"final_pointwise\.1\.0\.(.+)", r"embedding.pointwise_conv.norm.layer.\1"),
    (r"final_pointwise\.1\.2\.(.+)", r"embedding.pointwise_conv.conv.\1"),
    (r"_heads\.human\.0\.(.+)", r"head.channel_transform.conv.layer.\1"),
]


def enformer_grelu_state(model) -> collections.OrderedDict:
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("_heads.mouse")}
    sd = efp.canonical_keys({k: v.numpy() for k, v in sd.items()}, "test")  # no _trunk.*
    sd = {k: torch.from_numpy(v) for k, v in sd.items()}
    sd["stem.1.fn.0.num_batches_tracked"] = torch.tensor(7)
    tower = []
    for k in list(sd):
        if m := re.fullmatch(r"conv_tower\.(\d+)\.(.+)", k):
            i, rest = int(m.group(1)) + 1, m.group(2)
            new = (re.sub(r"^0\.0\.", "0.norm.layer.", rest) if rest.startswith("0.0.") else
                   re.sub(r"^0\.2\.", "0.conv.", rest) if rest.startswith("0.2.") else
                   re.sub(r"^1\.fn\.0\.", "1.norm.layer.", rest) if rest.startswith("1.fn.0.")
                   else re.sub(r"^1\.fn\.2\.", "1.conv.", rest) if rest.startswith("1.fn.2.")
                   else re.sub(r"^2\.", "1.pool.layer.", rest))
            tower.append((k, f"embedding.conv_tower.blocks.{i}.{new}"))
    out = _rename(sd, [(re.escape(a), b) for a, b in tower] + _ENFORMER_TO_GRELU)
    w = out["model.head.channel_transform.conv.layer.weight"]
    out["model.head.channel_transform.conv.layer.weight"] = w[:, :, None]  # Conv1d k=1
    return out


_BORZOI_TO_GRELU = [
    (r"conv_dna\.conv_layer\.(.+)", r"embedding.conv_tower.blocks.0.conv.\1"),
    *[(rf"{re.escape(t)}\.norm\.(.+)", rf"embedding.conv_tower.blocks.{i}.norm.layer.\1")
      for i, t in enumerate(("res_tower.0", "res_tower.2", "res_tower.4", "res_tower.6",
                             "res_tower.8", "unet1.1"), start=1)],
    *[(rf"{re.escape(t)}\.conv_layer\.(.+)", rf"embedding.conv_tower.blocks.{i}.conv.\1")
      for i, t in enumerate(("res_tower.0", "res_tower.2", "res_tower.4", "res_tower.6",
                             "res_tower.8", "unet1.1"), start=1)],
    (r"transformer\.(\d+)\.0\.fn\.0\.(.+)", r"embedding.transformer_tower.blocks.\1.norm.layer.\2"),
    (r"transformer\.(\d+)\.0\.fn\.1\.to_rel_k\.(.+)",
     r"embedding.transformer_tower.blocks.\1.mha.to_pos_k.\2"),
    (r"transformer\.(\d+)\.0\.fn\.1\.(.+)", r"embedding.transformer_tower.blocks.\1.mha.\2"),
    (r"transformer\.(\d+)\.1\.fn\.0\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense1.norm.layer.\2"),
    (r"transformer\.(\d+)\.1\.fn\.1\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense1.linear.\2"),
    (r"transformer\.(\d+)\.1\.fn\.4\.(.+)",
     r"embedding.transformer_tower.blocks.\1.ffn.dense2.linear.\2"),
    *[rule for j, (up, skip, sep) in enumerate((("upsampling_unet1.0", "horizontal_conv1",
                                                 "separable1"),
                                                ("upsampling_unet0.0", "horizontal_conv0",
                                                 "separable0")))
      for rule in (
          (rf"{re.escape(up)}\.norm\.(.+)", rf"embedding.unet_tower.blocks.{j}.conv.norm.layer.\1"),
          (rf"{re.escape(up)}\.conv_layer\.(.+)", rf"embedding.unet_tower.blocks.{j}.conv.conv.\1"),
          (rf"{skip}\.norm\.(.+)",
           rf"embedding.unet_tower.blocks.{j}.channel_transform.norm.layer.\1"),
          (rf"{skip}\.conv_layer\.(.+)",
           rf"embedding.unet_tower.blocks.{j}.channel_transform.conv.layer.\1"),
          (rf"{sep}\.conv_layer\.0\.(.+)", rf"embedding.unet_tower.blocks.{j}.sconv.depthwise.\1"),
          (rf"{sep}\.conv_layer\.1\.(.+)", rf"embedding.unet_tower.blocks.{j}.sconv.pointwise.\1"),
      )],
    (r"final_joined_convs\.0\.norm\.(.+)", r"embedding.pointwise_conv.norm.layer.\1"),
    (r"final_joined_convs\.0\.conv_layer\.(.+)", r"embedding.pointwise_conv.conv.\1"),
    (r"human_head\.(.+)", r"head.channel_transform.conv.layer.\1"),
]


def _lightning(state, model_params: dict, tasks: dict | None, seq_len: int,
               train_params: dict | None = None) -> dict:
    """Lightning's checkpoint dict as gReLU's LightningModel writes it."""
    return {
        "epoch": 3, "global_step": 1234, "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "hyper_parameters": {
            "model_params": model_params,
            "train_params": train_params or {"task": "regression", "loss": "mse", "lr": 1e-4},
        },
        "data_params": {"tasks": tasks or {},
                        "train": {"seq_len": seq_len, "genome": "hg38", "bin_size": 128}},
        # numpy scalars here break torch.load(weights_only=True) (gReLU issue #193)
        "performance": {"test": {"mse": np.float64(0.25), "n": np.int64(3)}},
    }


def _tasks(n: int, paired: bool = False) -> dict:
    tasks = {"name": [f"T{i}{'+-'[i % 2] if paired else ''}" for i in range(n)],
             "assay": ["CAGE" if i % 3 else "DNASE" for i in range(n)],
             "sample": [f"cell {i}" for i in range(n)],
             "scale": [np.float32(0.5 + i) for i in range(n)]}
    if paired:
        tasks["strand_pair"] = [i + 1 if i % 2 == 0 else i - 1 for i in range(n - 1)] + [n - 1]
    return tasks


def _compare(got: np.ndarray, want: np.ndarray, label: str) -> float:
    assert got.shape == want.shape, (label, got.shape, want.shape)
    err = float(np.max(np.abs(got - want)))
    rel = err / float(np.max(np.abs(want)))
    print(f"\n[{label}] max abs {err:.2e}, relative to max|torch| {rel:.2e}")
    assert rel <= REL_TOL, f"{label}: relative error {rel:.2e}"
    return rel


def _veff_tracks(conv, tmp_path, x: np.ndarray) -> np.ndarray:
    save_checkpoint(tmp_path / "ck", arch=conv.arch, config=conv.config, params=conv.params,
                    tracks=conv.tracks, metadata={"name": "g", **conv.facts})
    handle = load_model(str(tmp_path / "ck"))
    return np.asarray(jax.jit(handle.apply)(handle.params, x)["tracks"]), handle


# ----------------------------------------------------------------------------- enformer
@pytest.fixture(scope="module")
def enformer_torch():
    cfg = EnformerConfig.tiny()
    model = ep.Enformer.from_hparams(
        dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, attn_dim_key=cfg.attn_dim_key,
        num_downsamples=cfg.num_downsamples, dim_divisible_by=cfg.dim_divisible_by,
        output_heads=cfg.heads_dict, target_length=cfg.output_len, use_tf_gamma=False,
    ).eval()
    rerandomise(model, seed=5)
    x = _onehot(cfg.window_len, seed=6)
    with torch.no_grad():
        want = model(torch.from_numpy(x))["human"].numpy()
    crop = (cfg.num_bins - cfg.output_len) // 2
    return cfg, model, x, want, crop


def enformer_grelu_params(cfg, crop, **kw):
    return {"model_type": "EnformerModel", "n_tasks": cfg.heads_dict["human"],
            "n_conv": cfg.num_downsamples, "channels": cfg.dim, "n_transformers": cfg.depth,
            "n_heads": cfg.heads, "key_len": cfg.attn_dim_key, "crop_len": crop,
            "final_act_func": "softplus", "final_pool_func": None, **kw}


def test_enformer_ckpt_matches_torch(tmp_path, enformer_torch):
    cfg, model, x, want, crop = enformer_torch
    n = cfg.heads_dict["human"]
    path = tmp_path / "human.ckpt"
    torch.save(_lightning(enformer_grelu_state(model), enformer_grelu_params(cfg, crop),
                          _tasks(n), cfg.window_len), path)
    with pytest.raises(Exception):  # the file really needs the numpy allowance
        torch.load(path, weights_only=True)
    conv = grelu.read(path)
    assert conv.arch == "enformer"
    assert conv.facts["gamma_basis"] == "enformer_pytorch"  # gReLU: use_tf_gamma=False
    assert conv.facts["unpickled"] == "weights_only"
    assert (conv.facts["window_len"], conv.facts["output_len"]) == (cfg.window_len,
                                                                   cfg.output_len)
    assert [t["name"] for t in conv.tracks] == [f"T{i}" for i in range(n)]
    assert conv.tracks[4] == {"name": "T4", "assay": "CAGE", "sample": "cell 4", "scale": 4.5}
    got, handle = _veff_tracks(conv, tmp_path, x)
    assert handle.track_names == [f"T{i}" for i in range(n)]
    _compare(got, want, "gReLU Enformer tiny 2944 bp")


def test_enformer_strict_and_unsupported_heads(tmp_path, enformer_torch):
    cfg, model, _, _, crop = enformer_torch
    state = enformer_grelu_state(model)

    def read(st=state, mp=None, tp=None, tasks=None, **kw):
        p = tmp_path / "m.ckpt"
        torch.save(_lightning(st, mp or enformer_grelu_params(cfg, crop), tasks, cfg.window_len,
                              tp), p)
        return grelu.read(p, **kw)

    bad = collections.OrderedDict(state)
    bad["model.embedding.extra.weight"] = torch.zeros(3)
    del bad["model.embedding.transformer_tower.blocks.1.mha.to_q.weight"]
    del bad["model.embedding.pointwise_conv.conv.bias"]
    with pytest.raises(ConvertError, match=r"unexpected 1: model\.embedding\.extra\.weight"):
        read(bad)
    bad.pop("model.embedding.extra.weight")
    with pytest.raises(ConvertError) as e:
        read(bad)
    assert "missing 2" in str(e.value) and "transformer/1/attn/to_q/kernel" in str(e.value)
    assert "final/conv/bias" in str(e.value)
    with pytest.raises(ConvertError, match="pools the output"):
        read(mp=enformer_grelu_params(cfg, crop, final_pool_func="avg"))
    with pytest.raises(ConvertError, match=r"exp\(softplus\(linear\)\).*apply_task_activation"):
        read(tp={"task": "regression", "loss": "poisson"})
    with pytest.raises(ConvertError, match=r"sigmoid\(linear\)"):
        read(mp=enformer_grelu_params(cfg, crop, final_act_func=None), tp={"task": "binary"})
    with pytest.raises(ConvertError, match="model_type 'ConvGRUModel'"):
        read(mp={"model_type": "ConvGRUModel"})
    with pytest.raises(ConvertError, match="3 tasks in data_params but the head has 11"):
        read(tasks=_tasks(3))
    # the bare model output, and empty data_params (gReLU issue #116) -> generic names
    conv = read(tp={"task": "regression", "loss": "poisson"}, apply_task_activation=False)
    assert conv.facts["task_activation_applied"] is False
    assert [t["name"] for t in conv.tracks][:2] == ["human_0", "human_1"]


# ----------------------------------------------------------------------------- borzoi
def _torch_borzoi(cfg: bz.BorzoiConfig):
    """borzoi-pytorch's Borzoi with its fixed widths rebuilt at ``cfg``'s from its own
    ConvBlock, every tensor re-drawn, and gReLU's current-length position basis."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig as TorchConfig
    from borzoi_pytorch.pytorch_borzoi_transformer import get_positional_embed

    tc = TorchConfig(dim=cfg.dim, depth=cfg.num_layers, heads=cfg.num_heads,
                     attn_dim_key=cfg.key_size, attn_dim_value=cfg.value_size,
                     bins_to_return=cfg.output_len, enable_mouse_head=False)
    with torch.device("meta"):
        m = Borzoi(tc)
        narrow_borzoi(m, cfg)
    m.to_empty(device="cpu")
    rerandomise(m, seed=13)
    T = cfg.window_len // 128
    for mod in m.modules():
        if type(mod).__name__ == "Attention":
            mod.positions = get_positional_embed(T, T, cfg.num_position_features, "cpu")
    return m.eval()


def test_borzoi_ckpt_matches_torch(tmp_path):
    pytest.importorskip("borzoi_pytorch")
    cfg = bz.BorzoiConfig.small(heads=(("human", 47),))
    model = _torch_borzoi(cfg)
    x = _onehot(cfg.window_len, seed=8)
    with torch.no_grad():
        want = model(torch.from_numpy(x.transpose(0, 2, 1)), is_human=True).numpy()
    want = want.transpose(0, 2, 1)
    sd = {k: v for k, v in model.state_dict().items()}
    state = _rename(sd, _BORZOI_TO_GRELU)
    n = cfg.num_tracks("human")
    mp = {"model_type": "BorzoiModel", "n_tasks": n, "crop_len": cfg.crop_bins,
          "final_act_func": "softplus", "final_pool_func": None, "n_transformers": 2,
          "norm_kwargs": {"eps": 0.001}}
    path = tmp_path / "human_rep0.ckpt"
    torch.save(_lightning(state, mp, _tasks(n, paired=True), cfg.window_len), path)
    conv = grelu.read(path)
    assert conv.arch == "borzoi"
    assert bz.BorzoiConfig.from_dict(conv.config).position_basis_length is None
    assert conv.config == cfg.to_dict()
    assert conv.tracks[0]["strand_pair"] == 1 and conv.tracks[46]["strand_pair"] == 46
    got, handle = _veff_tracks(conv, tmp_path, x)
    assert handle.track_names[:2] == ["T0+", "T1-"]
    _compare(got, want, "gReLU Borzoi small 16,384 bp")

    with pytest.raises(ConvertError, match="eps 1e-3"):
        torch.save(_lightning(state, {**mp, "norm_kwargs": {"eps": 1e-5}}, None,
                              cfg.window_len), path)
        grelu.read(path)
    with pytest.raises(ConvertError, match="rotary"):
        torch.save(_lightning(state, {**mp, "flash_attn": True}, None, cfg.window_len), path)
        grelu.read(path)
    bad_pairs = _tasks(n, paired=True)
    bad_pairs["strand_pair"][0] = 2
    torch.save(_lightning(state, mp, bad_pairs, cfg.window_len), path)
    with pytest.raises(ConvertError, match="strand_pair is not a symmetric"):
        grelu.read(path)
