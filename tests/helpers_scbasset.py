"""Synthetic scBasset Keras h5 files (calico make_model + model.save layout, no TensorFlow)
and an independent numpy forward of the Keras model, for the scBasset tests.

Layer names are Keras' auto names in creation order: per conv block ``gelu_k``,
``conv1d_k``, ``batch_normalization_k``, ``max_pooling1d_k``; then the bottleneck's
``gelu``/``reshape``/``dense``/``batch_normalization``/``dropout``, a ``gelu``, and
``dense_1`` (the per-cell projection, with bias). ``offset`` shifts every suffix, as a
second model built in one Python session gets (``conv1d_8`` ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def _sfx(base: str, k: int) -> str:
    return base if k == 0 else f"{base}_{k}"


def random_weights(rng, *, window_len=97, stem=(5, 7), tower=(7, 6), tower_kernel=5,
                   pre=3, bottleneck=13, n_cells=11, pools=(3, 2)):
    """Keras-layout weights: [(kind, arrays)] in layer order, plus the sizes used."""
    convs, bns = [], []
    cin, length = 4, window_len
    blocks = [(stem[0], stem[1], pools[0])] + [(f, tower_kernel, pools[1]) for f in tower] + [(pre, 1, 1)]
    for f, k, p in blocks:
        convs.append((rng.standard_normal((k, cin, f)) / np.sqrt(k * cin)).astype(np.float32))
        bns.append(_bn(rng, f))
        cin = f
        length = -(-length // p)
    dense = (rng.standard_normal((length * pre, bottleneck)) / np.sqrt(length * pre)).astype(np.float32)
    return {"convs": convs, "bns": bns + [_bn(rng, bottleneck)], "dense": dense,
            "final": (rng.standard_normal((bottleneck, n_cells)).astype(np.float32) / 3,
                      (0.3 * rng.standard_normal(n_cells)).astype(np.float32)),
            "window_len": window_len, "pools": [p for _, _, p in blocks]}


def _bn(rng, n):
    return {"gamma:0": rng.uniform(0.5, 1.5, n).astype(np.float32),
            "beta:0": (0.2 * rng.standard_normal(n)).astype(np.float32),
            "moving_mean:0": (0.2 * rng.standard_normal(n)).astype(np.float32),
            "moving_variance:0": rng.uniform(0.05, 0.2, n).astype(np.float32)}


def write_keras_h5(path: str | Path, w: dict, *, offset: int = 0, extra_layer: bool = False) -> Path:
    layers: list[tuple[str, dict]] = [("sequence", {})]
    cfg = [{"class_name": "InputLayer", "name": "sequence",
            "config": {"batch_input_shape": [None, w["window_len"], 4], "name": "sequence"}}]
    n_gelu = 0

    def add(name, arrays, cls):
        layers.append((name, arrays))
        cfg.append({"class_name": cls, "name": name, "config": {"name": name}})

    for i, (k, bn, p) in enumerate(zip(w["convs"], w["bns"], w["pools"])):
        add(_sfx("gelu", n_gelu + offset), {}, "GELU")
        n_gelu += 1
        add(_sfx("conv1d", i + offset), {"kernel:0": k}, "Conv1D")
        add(_sfx("batch_normalization", i + offset), w["bns"][i], "BatchNormalization")
        if p > 1:
            add(_sfx("max_pooling1d", i + offset), {}, "MaxPooling1D")
    n = len(w["convs"])
    add(_sfx("gelu", n_gelu + offset), {}, "GELU")
    add(_sfx("reshape", offset), {}, "Reshape")
    add(_sfx("dense", offset), {"kernel:0": w["dense"]}, "Dense")
    add(_sfx("batch_normalization", n + offset), w["bns"][n], "BatchNormalization")
    add(_sfx("dropout", offset), {}, "Dropout")
    add(_sfx("gelu", n_gelu + 1 + offset), {}, "GELU")
    add(_sfx("dense", 1 + offset), {"kernel:0": w["final"][0], "bias:0": w["final"][1]}, "Dense")
    if extra_layer:
        add("dense_extra", {"kernel:0": np.zeros((2, 2), np.float32),
                            "bias:0": np.zeros(2, np.float32)}, "Dense")
    add(_sfx("flatten", offset), {}, "Flatten")
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Functional",
                                              "config": {"name": "model", "layers": cfg}})
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([n for n, _ in layers], dtype="S")
        for name, arrays in layers:
            g = mw.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/{k}" for k in arrays], dtype="S")
            if arrays:
                sub = g.create_group(name)
                for k, a in arrays.items():
                    sub.create_dataset(k, data=a)
        f.create_group("optimizer_weights").create_dataset("Adam/iter:0", data=np.int64(3))
    return Path(path)


# --------------------------------------------------------------------------- numpy forward
def _gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def _conv_same(x, k):  # x (L, Cin), k (K, Cin, Cout); TF SAME: extra pad at the end
    K = k.shape[0]
    lo = (K - 1) // 2
    xp = np.concatenate([np.zeros((lo, x.shape[1])), x, np.zeros((K - 1 - lo, x.shape[1]))])
    return np.stack([np.tensordot(xp[i:i + K], k, axes=([0, 1], [0, 1])) for i in range(len(x))])


def _pool_same(x, p):  # TF SAME max-pool: ceil(L/p) windows, padding split as TF does
    n = -(-len(x) // p)
    total = max((n - 1) * p + p - len(x), 0)
    xp = np.concatenate([np.full((total // 2, x.shape[1]), -np.inf), x,
                         np.full((total - total // 2, x.shape[1]), -np.inf)])
    return np.stack([xp[i * p:(i + 1) * p].max(axis=0) for i in range(n)])


def _bn_np(x, bn, eps=1e-3):
    return (x - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + eps) * bn["gamma:0"] + bn["beta:0"]


def numpy_forward(w: dict, onehot: np.ndarray) -> dict[str, np.ndarray]:
    """float64 forward of one (L, 4) window: {"blocks": [each block's output], "embedding",
    "logits" (with intercept), "normalized" (without)}."""
    h = onehot.astype(np.float64)
    blocks = []
    for k, bn, p in zip(w["convs"], w["bns"], w["pools"]):
        h = _bn_np(_conv_same(_gelu(h), k.astype(np.float64)), bn)
        if p > 1:
            h = _pool_same(h, p)
        blocks.append(h)
    z = _gelu(h).reshape(-1) @ w["dense"].astype(np.float64)
    z = _gelu(_bn_np(z, w["bns"][-1]))
    kernel, bias = w["final"]
    return {"blocks": blocks, "embedding": z, "normalized": z @ kernel, "logits": z @ kernel + bias}
