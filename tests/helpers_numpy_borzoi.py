"""An independent reference forward of a baskerville Keras h5, in plain numpy (float64).

It does not use veff's model or converter: it walks the Keras functional graph stored in
the h5's ``model_config`` layer by layer, reading each layer's weights by its own name, and
implements every layer from its Keras / baskerville semantics (inference mode). Used only
by tests to check veff's Borzoi end to end on real weights.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def _weights(group: Any) -> dict[str, np.ndarray]:
    out = {}
    for wn in group.attrs.get("weight_names", []):
        wn = wn.decode() if isinstance(wn, bytes) else str(wn)
        parts = wn.split(":")[0].split("/")
        out["/".join(parts[1:])] = np.asarray(group[wn], dtype=np.float64)
    return out


def _get(w: dict[str, np.ndarray], suffix: str) -> np.ndarray:
    hits = [v for k, v in w.items() if k == suffix or k.endswith("/" + suffix)]
    assert len(hits) == 1, (suffix, list(w))
    return hits[0]


def _conv1d_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Keras Conv1D padding='same', stride 1: x (B, L, I), kernel (K, I, O)."""
    k = kernel.shape[0]
    left = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    out = np.zeros(x.shape[:2] + (kernel.shape[2],), dtype=x.dtype)
    for t in range(k):  # sum of shifted matmuls: out[l] = sum_t xp[l + t] @ W[t]
        out += xp[:, t : t + x.shape[1]] @ kernel[t]
    return out


def _depthwise_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise (K, C, 1) 'same' conv."""
    k = kernel.shape[0]
    left = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    out = np.zeros_like(x)
    for t in range(k):
        out += xp[:, t : t + x.shape[1]] * kernel[t, :, 0]
    return out


def _maxpool_same(x: np.ndarray, pool: int, stride: int) -> np.ndarray:
    assert pool == stride
    B, L, C = x.shape
    n = -(-L // pool)
    xp = np.full((B, n * pool, C), -np.inf, dtype=x.dtype)
    xp[:, :L] = x
    return xp.reshape(B, n, pool, C).max(axis=2)


def _gelu(x: np.ndarray, approximate: bool) -> np.ndarray:
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    if name in ("linear", None):
        return x
    if name == "softplus":
        return np.logaddexp(0.0, x)
    if name == "relu":
        return np.maximum(x, 0.0)
    raise NotImplementedError(name)


def _tf_relative_shift(x: np.ndarray) -> np.ndarray:
    """baskerville ``relative_shift`` step by step (pad, reshape, slice, reshape, slice)."""
    to_pad = np.zeros_like(x[..., :1])
    x = np.concatenate([to_pad, x], -1)
    _, num_heads, t1, t2 = x.shape
    x = x.reshape(-1, num_heads, t2, t1)
    x = x[:, :, 1:, :]
    x = x.reshape(-1, num_heads, t1, t2 - 1)
    return x[..., : (t2 + 1) // 2]


def _central_mask(positions: np.ndarray, feature_size: int, seq_length: int) -> np.ndarray:
    pow_rate = np.float32(np.exp(np.log(seq_length + 1) / feature_size))
    widths = np.power(pow_rate, np.arange(1, feature_size + 1, dtype=np.float32)) - 1
    return (widths[None, :] > np.abs(positions)[:, None]).astype(np.float64)


def _mha(x: np.ndarray, w: dict[str, np.ndarray], key_size: int, value_size: int,
         ) -> np.ndarray:
    r_w, r_r = _get(w, "r_w_bias"), _get(w, "r_r_bias")  # (1, H, 1, K)
    H = r_w.shape[1]
    B, T, _ = x.shape

    def heads(y: np.ndarray) -> np.ndarray:  # [B, T, H*C] -> [B, H, T, C]
        return y.reshape(y.shape[0], y.shape[1], H, -1).transpose(0, 2, 1, 3)

    q = heads(x @ _get(w, "q_layer/kernel")) * key_size**-0.5
    k = heads(x @ _get(w, "k_layer/kernel"))
    v = heads(x @ _get(w, "v_layer/kernel"))
    content = (q + r_w) @ k.transpose(0, 1, 3, 2)
    r_k_kernel = _get(w, "r_k_layer/kernel")
    num_feat = r_k_kernel.shape[0]
    distances = np.arange(-T + 1, T, dtype=np.float64)
    emb = _central_mask(distances, num_feat // 2, T)
    emb = np.concatenate([emb, np.sign(distances)[:, None] * emb], axis=-1)[None]
    r_k = heads(emb @ r_k_kernel)  # [1, H, 2T-1, K]
    rel = (q + r_r) @ r_k.transpose(0, 1, 3, 2)
    logits = content + _tf_relative_shift(rel)
    logits = logits - logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    out = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, H * value_size)
    return out @ _get(w, "embedding_layer/kernel") + _get(w, "embedding_layer/bias")


def keras_forward(h5_path: str, onehot: np.ndarray) -> dict[str, np.ndarray]:
    """Run every layer of the saved Keras model on ``onehot`` (B, L, 4) in float64.

    Returns {layer name: output} (first output of multi-output layers); the model output is
    under the name of the last layer.
    """
    import h5py

    with h5py.File(h5_path, "r") as f:
        mc = json.loads(f.attrs["model_config"])
        root = f["model_weights"]
        weights = {name: _weights(root[name]) for name in root.keys()}
    layers = mc["config"]["layers"]
    outs: dict[str, list[Any]] = {}
    pending = list(layers)
    x0 = np.asarray(onehot, dtype=np.float64)
    while pending:
        progressed = False
        for layer in list(pending):
            nodes = layer["inbound_nodes"]
            inbound = nodes[0] if nodes else []
            if inbound and isinstance(inbound[0], str):  # TFOpLambda: one bare reference
                inbound = [inbound]
            if any(ref[0] not in outs for ref in inbound):
                continue
            ins = [outs[ref[0]][ref[2]] for ref in inbound]
            kwargs = inbound[0][3] if inbound and len(inbound[0]) > 3 else {}
            outs[layer["name"]] = _run(layer, ins, kwargs, weights.get(layer["name"], {}), x0)
            pending.remove(layer)
            progressed = True
        assert progressed, "graph has a cycle or an unknown input"
    return {k: v[0] for k, v in outs.items()}


def _run(layer: dict, ins: list, kwargs: dict, w: dict[str, np.ndarray],
         x0: np.ndarray) -> list[Any]:
    cls, cfg = layer["class_name"], layer["config"]
    if cls == "InputLayer":
        return [x0]
    x = ins[0] if ins else None
    if cls == "StochasticReverseComplement":  # inference: identity, "not reversed"
        return [x, False]
    if cls in ("StochasticShift", "Dropout"):
        return [x]
    if cls == "Conv1D":
        assert cfg["padding"] == "same" and cfg["strides"] == [1]
        assert cfg["dilation_rate"] == [1] and cfg.get("groups", 1) == 1
        y = _conv1d_same(x, _get(w, "kernel"))
        if cfg["use_bias"]:
            y = y + _get(w, "bias")
        return [_activation(y, cfg["activation"])]
    if cls == "MaxPooling1D":
        assert cfg["padding"] == "same"
        return [_maxpool_same(x, cfg["pool_size"][0], cfg["strides"][0])]
    if cls == "BatchNormalization":
        g, b = _get(w, "gamma"), _get(w, "beta")
        m, v = _get(w, "moving_mean"), _get(w, "moving_variance")
        return [(x - m) / np.sqrt(v + cfg["epsilon"]) * g + b]
    if cls == "LayerNormalization":
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return [(x - mu) / np.sqrt(var + cfg["epsilon"]) * _get(w, "gamma") + _get(w, "beta")]
    if cls == "TFOpLambda":
        assert cfg["function"] == "nn.gelu", cfg["function"]
        return [_gelu(x, bool(kwargs.get("approximate", False)))]
    if cls == "MultiheadAttention":
        return [_mha(x, w, cfg["key_size"], cfg["value_size"])]
    if cls == "Add":
        return [sum(ins[1:], ins[0])]
    if cls == "Dense":
        y = x @ _get(w, "kernel")
        if cfg["use_bias"]:
            y = y + _get(w, "bias")
        return [_activation(y, cfg["activation"])]
    if cls == "ReLU":
        assert cfg.get("max_value") is None and cfg.get("negative_slope", 0) == 0
        return [np.maximum(x, cfg.get("threshold", 0.0))]
    if cls == "UpSampling1D":
        return [np.repeat(x, cfg["size"], axis=1)]
    if cls == "SeparableConv1D":
        assert cfg["padding"] == "same" and cfg["depth_multiplier"] == 1
        y = _depthwise_same(x, _get(w, "depthwise_kernel"))
        y = y @ _get(w, "pointwise_kernel")[0]
        if cfg["use_bias"]:
            y = y + _get(w, "bias")
        return [_activation(y, cfg["activation"])]
    if cls == "Cropping1D":
        a, b = cfg["cropping"]
        return [x[:, a : x.shape[1] - b]]
    if cls == "SwitchReverse":  # inference: not reversed -> identity
        assert ins[1] is False
        return [x]
    raise NotImplementedError(f"layer class {cls}")
