"""Writer of synthetic chromBPNet Keras-layout HDF5 files (the test data generator).

The layout is the legacy TF-Keras 2.x ``model.save()`` format: root attributes
``keras_version``/``backend``/``model_config`` (JSON); ``model_weights`` with a
``layer_names`` attribute listing every layer (weightless ones included), one group per
layer with a ``weight_names`` attribute, and datasets ``<layer>/<layer>/kernel:0``.
The full ``chrombpnet.h5`` nests two models: ``model_weights/model_wo_bias/<layer>/kernel:0``
and ``model_weights/<bias model name>/<layer>/kernel:0``. An ``optimizer_weights`` group is
written too, since real files carry one and readers must ignore it.

Weights are random, scaled ~1/sqrt(fan_in) so the residual stack stays O(1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KINDS = ("bias", "nobias", "full")


def _random_bpnet(rng: np.random.Generator, filters: int, n_layers: int,
                  conv1_kernel: int = 21, profile_kernel: int = 75) -> dict[str, dict]:
    """{veff layer name: {"kernel", "bias"}} in Keras layout (K, in, out) / (in, out)."""
    def layer(shape):
        fan_in = int(np.prod(shape[:-1]))
        return {
            "kernel": (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32),
            "bias": (0.1 * rng.standard_normal(shape[-1])).astype(np.float32),
        }

    w = {"bpnet_1st_conv": layer((conv1_kernel, 4, filters))}
    for i in range(1, n_layers + 1):
        w[f"bpnet_{i}conv"] = layer((3, filters, filters))
    w["prof_out_precrop"] = layer((profile_kernel, filters, 1))
    w["logcount_predictions"] = layer((filters, 1))
    return w


def _keras_names(prefix: str) -> dict[str, str]:
    """veff layer name -> Keras layer name, for the bias ("") or no-bias ("wo_bias_") model."""
    if prefix:
        return {"prof_out_precrop": "wo_bias_bpnet_prof_out_precrop",
                "logcount_predictions": "wo_bias_bpnet_logcount_predictions"}
    return {}


def _layers(prefix: str, weights: dict[str, dict], input_len: int, output_len: int,
            conv1_kernel: int, profile_kernel: int) -> tuple[list[tuple[str, dict | None]], list]:
    """Ordered [(keras layer name, weights or None)] plus its model_config layer list."""
    n_layers = sum(k.startswith("bpnet_") and k.endswith("conv") and k != "bpnet_1st_conv"
                   for k in weights)
    rename = _keras_names(prefix)
    name = lambda k: rename.get(k, prefix + k)  # noqa: E731
    seq = [("sequence", None)]
    cfg = [{"class_name": "InputLayer", "name": "sequence",
            "config": {"batch_input_shape": [None, input_len, 4], "dtype": "float32",
                       "name": "sequence"}}]

    def add(kname, w, cls, extra=None):
        seq.append((kname, w))
        cfg.append({"class_name": cls, "name": kname, "config": {"name": kname, **(extra or {})}})

    add(name("bpnet_1st_conv"), weights["bpnet_1st_conv"], "Conv1D",
        {"kernel_size": [conv1_kernel], "padding": "valid"})
    length = input_len - (conv1_kernel - 1)
    for i in range(1, n_layers + 1):
        d = 2**i
        add(name(f"bpnet_{i}conv"), weights[f"bpnet_{i}conv"], "Conv1D",
            {"kernel_size": [3], "dilation_rate": [d], "padding": "valid"})
        add(f"{prefix}bpnet_{i}crop", None, "Cropping1D", {"cropping": [d, d]})
        add("add" if i == 1 else f"add_{i - 1}", None, "Add")
        length -= 2 * d
    add(name("prof_out_precrop"), weights["prof_out_precrop"], "Conv1D",
        {"kernel_size": [profile_kernel], "padding": "valid"})
    crop = (length - (profile_kernel - 1)) // 2 - output_len // 2
    pre = "wo_bias_bpnet_logitt_before_flatten" if prefix else "logits_profile_predictions_preflatten"
    add(pre, None, "Cropping1D", {"cropping": [crop, crop]})
    add("gap", None, "GlobalAveragePooling1D")
    add(f"{prefix}bpnet_logits_profile_predictions" if prefix else "logits_profile_predictions",
        None, "Flatten")
    add(name("logcount_predictions"), weights["logcount_predictions"], "Dense", {"units": 1})
    return seq, cfg


def _write_layers(group: h5py.Group, layers: list[tuple[str, dict | None]], nested: bool) -> list:
    """Write one model's layers into ``group``; returns all weight names (for nesting)."""
    names = []
    for kname, w in layers:
        g = group if nested else group.create_group(kname)
        wn = [] if w is None else [f"{kname}/kernel:0", f"{kname}/bias:0"]
        if w is not None:
            sub = g.create_group(kname)
            sub.create_dataset("kernel:0", data=w["kernel"])
            sub.create_dataset("bias:0", data=w["bias"])
        if not nested:
            g.attrs["weight_names"] = np.array(wn, dtype="S")
        names += wn
    return names


def _root_attrs(f: h5py.File, model_config: dict) -> None:
    f.attrs["keras_version"] = "2.8.0"
    f.attrs["backend"] = "tensorflow"
    f.attrs["model_config"] = json.dumps(model_config)
    f.attrs["training_config"] = json.dumps({"loss": ["multinomial_nll", "mse"]})
    opt = f.create_group("optimizer_weights")  # real files carry Adam slots; must be ignored
    opt.create_dataset("Adam/iter:0", data=np.int64(7))
    opt.create_dataset("Adam/bpnet_1st_conv/kernel/m:0", data=np.zeros(3, np.float32))


def write_chrombpnet_h5(
    path: str | Path,
    kind: str = "bias",
    filters: int = 128,
    n_layers: int = 4,
    seed: int = 0,
    *,
    input_len: int = 2114,
    output_len: int = 1000,
    bias_filters: int | None = None,
    bias_n_layers: int | None = None,
    bias_output_len: int | None = None,
    bias_group: str = "model_1",
    conv1_kernel: int = 21,
    profile_kernel: int = 75,
) -> dict[str, Any]:
    """Write a synthetic chromBPNet h5 and return the weights written.

    kind "bias": ``bias_model_scaled.h5`` layout (no prefix); "nobias": ``chrombpnet_nobias.h5``
    (``wo_bias_`` prefix); "full": ``chrombpnet.h5`` with the two models nested
    (``filters``/``n_layers`` for the accessibility model, ``bias_*`` for the bias model,
    whose group is named ``bias_group``). Returns {"accessibility": tree} / {"bias": tree}
    / both, each tree keyed by veff layer names.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng(seed)
    path = Path(path)
    ks = dict(conv1_kernel=conv1_kernel, profile_kernel=profile_kernel)

    if kind in ("bias", "nobias"):
        prefix = "wo_bias_" if kind == "nobias" else ""
        w = _random_bpnet(rng, filters, n_layers, **ks)
        layers, cfg = _layers(prefix, w, input_len, output_len, **ks)
        with h5py.File(path, "w") as f:
            _root_attrs(f, {"class_name": "Functional",
                            "config": {"name": "model", "layers": cfg}})
            mw = f.create_group("model_weights")
            mw.attrs["layer_names"] = np.array([n for n, _ in layers], dtype="S")
            mw.attrs["backend"] = "tensorflow"
            mw.attrs["keras_version"] = "2.8.0"
            _write_layers(mw, layers, nested=False)
        return {"accessibility" if prefix else "bias": w}

    bf = bias_filters or max(2, filters // 2 + 1)
    bn = bias_n_layers or max(1, n_layers - 1)
    acc = _random_bpnet(rng, filters, n_layers, **ks)
    bias = _random_bpnet(rng, bf, bn, **ks)
    acc_layers, acc_cfg = _layers("wo_bias_", acc, input_len, output_len, **ks)
    bias_layers, bias_cfg = _layers("", bias, input_len, bias_output_len or output_len, **ks)
    top = ["sequence", "model_wo_bias", bias_group, "concatenate",
           "logits_profile_predictions", "logcount_predictions"]
    model_config = {"class_name": "Functional", "config": {"name": "model_2", "layers": [
        {"class_name": "InputLayer", "name": "sequence",
         "config": {"batch_input_shape": [None, input_len, 4], "name": "sequence"}},
        {"class_name": "Functional", "name": "model_wo_bias",
         "config": {"name": "model_wo_bias", "layers": acc_cfg}},
        {"class_name": "Functional", "name": bias_group,
         "config": {"name": bias_group, "layers": bias_cfg}},
        {"class_name": "Concatenate", "name": "concatenate", "config": {"axis": -1}},
        {"class_name": "Add", "name": "logits_profile_predictions", "config": {}},
        {"class_name": "Lambda", "name": "logcount_predictions",
         "config": {"function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}},
    ]}}
    with h5py.File(path, "w") as f:
        _root_attrs(f, model_config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array(top, dtype="S")
        mw.attrs["backend"] = "tensorflow"
        mw.attrs["keras_version"] = "2.8.0"
        for name in top:
            g = mw.create_group(name)
            if name == "model_wo_bias":
                wn = _write_layers(g, acc_layers, nested=True)
            elif name == bias_group:
                wn = _write_layers(g, bias_layers, nested=True)
            else:
                wn = []
            g.attrs["weight_names"] = np.array(wn, dtype="S")
        # Keras also writes this for nested models; readers must ignore it.
        tl = f.create_group("top_level_model_weights")
        tl.attrs["weight_names"] = np.array([], dtype="S")
    return {"accessibility": acc, "bias": bias}
