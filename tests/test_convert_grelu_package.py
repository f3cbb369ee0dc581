"""gReLU's own Lightning models -> veff: the converter against the real package.

test_convert_grelu.py checks the converter on checkpoints laid out the way gReLU names its
modules; this file builds the models with gReLU itself (``grelu.lightning.LightningModel``
with ``EnformerModel`` / ``BorzoiModel``), re-draws every parameter and BatchNorm
statistic, writes the Lightning checkpoint dict (and checks that gReLU loads it back), and
requires the converted veff model to reproduce gReLU's forward (fp32, relative to
max|gReLU| <= 1e-5). Skipped where grelu is not installed.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("grelu")

from grelu.lightning import LightningModel  # noqa: E402
from helpers_torch import rerandomise  # noqa: E402

from veff.checkpoint import save_checkpoint  # noqa: E402
from veff.convert import grelu as gconv  # noqa: E402
from veff.models.registry import load_model  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
REL_TOL = 1e-5

# Small widths that gReLU's constructors accept: Enformer's tower channels are multiples of
# 128 and its positional features (channels / heads) a multiple of 6.
ENFORMER = {"model_type": "EnformerModel", "n_tasks": 11, "n_conv": 7, "channels": 384,
            "n_transformers": 2, "n_heads": 4, "key_len": 16, "crop_len": 2,
            "final_act_func": "softplus", "final_pool_func": None}
BORZOI = {"model_type": "BorzoiModel", "n_tasks": 7, "stem_channels": 32, "init_channels": 40,
          "channels": 64, "n_conv": 7, "n_transformers": 2, "n_heads": 2, "key_len": 8,
          "value_len": 16, "n_pos_features": 8, "crop_len": 4, "final_act_func": "softplus",
          "final_pool_func": None}


def _grelu_ckpt(tmp_path, model_params: dict, seq_len: int, seed: int):
    lm = LightningModel(model_params=model_params,
                        train_params={"task": "regression", "loss": "mse"})
    n = model_params["n_tasks"]
    lm.data_params = {"tasks": {"name": [f"T{i}" for i in range(n)],
                                "sample": [f"cell {i}" for i in range(n)]},
                      "train": {"seq_len": seq_len}}
    rerandomise(lm.model, seed=seed)
    lm.eval()
    path = tmp_path / "model.ckpt"
    # What Lightning's checkpoint connector writes, plus LightningModel.on_save_checkpoint.
    torch.save({"state_dict": lm.state_dict(), "hyper_parameters": dict(lm.hparams),
                "data_params": lm.data_params, "performance": {},
                "pytorch-lightning_version": "2.6.6", "epoch": 0, "global_step": 0}, path)
    back = LightningModel.load_from_checkpoint(str(path))
    assert type(back.model) is type(lm.model)
    return lm, path


def _parity(tmp_path, model_params: dict, seq_len: int, seed: int, label: str):
    lm, path = _grelu_ckpt(tmp_path, model_params, seq_len, seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, (2, seq_len))
    tokens[rng.random((2, seq_len)) < 0.01] = 4  # N -> all-zero column
    x = np.eye(5, 4, dtype=np.float32)[tokens]
    with torch.no_grad():  # gReLU: (B, 4, L) in, (B, T, bins) out
        want = lm(torch.from_numpy(x.transpose(0, 2, 1).copy())).numpy().transpose(0, 2, 1)

    conv = gconv.read(path)
    save_checkpoint(tmp_path / "ck", arch=conv.arch, config=conv.config, params=conv.params,
                    tracks=conv.tracks, metadata={"name": "g", **conv.facts})
    handle = load_model(str(tmp_path / "ck"))
    got = np.asarray(jax.jit(handle.apply)(handle.params, x)["tracks"])
    assert got.shape == want.shape, (got.shape, want.shape)
    rel = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
    print(f"\n[{label}] relative to max|gReLU| {rel:.2e}")
    assert rel <= REL_TOL, f"{label}: relative error {rel:.2e}"
    assert handle.track_names == [f"T{i}" for i in range(model_params["n_tasks"])]
    return conv


def test_grelu_enformer_model(tmp_path):
    conv = _parity(tmp_path, ENFORMER, 6144, seed=3, label="gReLU EnformerModel 6,144 bp")
    assert conv.arch == "enformer"
    assert conv.facts["gamma_basis"] == "enformer_pytorch"
    assert conv.facts["output_len"] == 6144 // 128 - 2 * ENFORMER["crop_len"]


def test_grelu_borzoi_model(tmp_path):
    conv = _parity(tmp_path, BORZOI, 16384, seed=4, label="gReLU BorzoiModel 16,384 bp")
    assert conv.arch == "borzoi"
    assert conv.facts["output_len"] == 16384 // 32 - 2 * BORZOI["crop_len"]


def test_grelu_layout_of_the_offline_tests():
    """test_convert_grelu.py writes gReLU-layout checkpoints without gReLU; its renaming of
    an enformer-pytorch model must load strictly into gReLU's EnformerModel and compute the
    same forward, or those tests would check the converter against a wrong layout."""
    ep = pytest.importorskip("enformer_pytorch")
    from test_convert_grelu import enformer_grelu_params, enformer_grelu_state

    from veff.models.enformer import EnformerConfig

    cfg = EnformerConfig.small(dim_divisible_by=128, depth=1, window_len=128 * 48,
                               output_heads=(("human", 11),))
    model = ep.Enformer.from_hparams(
        dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, attn_dim_key=cfg.attn_dim_key,
        num_downsamples=cfg.num_downsamples, dim_divisible_by=cfg.dim_divisible_by,
        output_heads=cfg.heads_dict, target_length=cfg.output_len, use_tf_gamma=False).eval()
    rerandomise(model, seed=9)
    lm = LightningModel(model_params=enformer_grelu_params(cfg, (cfg.num_bins - cfg.output_len)
                                                           // 2),
                        train_params={"task": "regression", "loss": "mse"})
    lm.load_state_dict(enformer_grelu_state(model), strict=True)
    lm.eval()
    x = torch.from_numpy(np.eye(4, dtype=np.float32)[
        np.random.default_rng(9).integers(0, 4, (2, cfg.window_len))])
    with torch.no_grad():
        want = model(x, head="human").numpy()
        got = lm(x.transpose(1, 2).contiguous()).numpy().transpose(0, 2, 1)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_a_trained_grelu_checkpoint_loads_without_unpickling(tmp_path):
    """What Lightning really writes when gReLU trains (``train_on_dataset``, then
    ``test_on_dataset``): callbacks, loops, optimizer state and per-task numpy metrics in
    ``performance``. torch's weights_only loader plus exactly veff's numpy allow-list reads
    it; the plain weights_only loader does not, so the list is needed and is enough."""
    import glob

    import pandas as pd
    from grelu.data.dataset import LabeledSeqDataset

    from veff.convert.common import ConvertError
    from veff.convert.torch_files import load_torch, numpy_scalar_globals

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 32)) for _ in range(8)]
    tasks = pd.DataFrame({"assay": ["x", "y"]}, index=pd.Index(["a", "b"], name="name"))
    ds = LabeledSeqDataset(seqs, labels=rng.random((8, 2, 1)).astype(np.float32), tasks=tasks)
    lm = LightningModel(
        model_params={"model_type": "ConvModel", "n_tasks": 2, "n_conv": 1, "stem_channels": 4,
                      "channel_init": 4, "final_pool_func": "avg"},
        train_params={"task": "regression", "loss": "mse", "max_epochs": 1, "batch_size": 8,
                      "num_workers": 0, "logger": None, "save_dir": str(tmp_path),
                      "devices": "cpu", "checkpoint": True})
    trainer = lm.train_on_dataset(ds, ds)
    lm.test_on_dataset(ds, devices="cpu", batch_size=8, num_workers=0)
    trainer.save_checkpoint(tmp_path / "tested.ckpt")
    paths = sorted(glob.glob(str(tmp_path / "**" / "*.ckpt"), recursive=True))
    assert len(paths) >= 2
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in numpy_scalar_globals()}
    for path in paths:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        assert needed and needed <= allowed, needed - allowed
        with pytest.raises(ConvertError, match="--trust-pickle"):
            load_torch(path)
        ckpt, how = gconv.load_ckpt(path)
        assert how == "weights_only" and isinstance(ckpt["performance"]["val"], dict)
