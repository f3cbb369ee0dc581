"""chromBPNet Keras HDF5 files -> veff "bpnet" / "chrombpnet" params (h5py only, no TF).

Reads the three files the chromBPNet pipeline writes:

- ``bias.h5`` / ``bias_model_scaled.h5``: layers ``bpnet_1st_conv``, ``bpnet_{i}conv``,
  ``prof_out_precrop``, ``logcount_predictions`` (no prefix) -> a single "bias" BPNet;
- ``chrombpnet_nobias.h5``: the same with prefix ``wo_bias_`` (head layers
  ``wo_bias_bpnet_prof_out_precrop`` / ``wo_bias_bpnet_logcount_predictions``) -> a single
  "accessibility" BPNet;
- ``chrombpnet.h5``: both models nested one group down (``model_wo_bias`` and the bias
  model, whose group name varies and is never relied on) -> the combined "chrombpnet".

Layers are found by walking ``model_weights`` for ``kernel:0``/``bias:0`` datasets: the group
holding a dataset is its layer. ``optimizer_weights`` and ``top_level_model_weights`` are
never read. Filters, layer count and kernel sizes come from the weights; input/output
lengths from ``model_config`` when present (else 2114/1000).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.convert.common import ConvertError, Converted, assign
from veff.models import bpnet
from veff.models.bpnet import ACCESSIBILITY, BIAS, BPNetConfig

FORMAT = "chrombpnet-h5"
ACC_PREFIX = "wo_bias_"
_DILATED = re.compile(r"^bpnet_(\d+)conv$")
# Keras layer name (prefix stripped) -> veff layer name, for the head layers.
_HEADS = {
    "bpnet_1st_conv": bpnet.STEM,
    "prof_out_precrop": bpnet.PROFILE,
    "bpnet_prof_out_precrop": bpnet.PROFILE,
    "logcount_predictions": bpnet.COUNT,
    "bpnet_logcount_predictions": bpnet.COUNT,
}
_DATASETS = {"kernel:0": "kernel", "bias:0": "bias"}


def _collect_layers(path: str, f) -> dict[str, dict[str, np.ndarray]]:
    """{keras layer name: {"kernel": array, "bias": array}} from every weight dataset."""
    import h5py

    if "model_weights" in f:
        root = f["model_weights"]
    elif "layer_names" in f.attrs:  # a save_weights() file: layers at the root
        root = f
    else:
        raise ConvertError(f"{path}: not a Keras HDF5 model (no 'model_weights' group)")

    layers: dict[str, dict[str, np.ndarray]] = {}
    others: list[str] = []

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        parts = name.split("/")
        if parts[0] in ("optimizer_weights", "top_level_model_weights"):
            return
        leaf = _DATASETS.get(parts[-1])
        if leaf is None or len(parts) < 2:
            others.append(name)
            return
        layer = parts[-2]
        if leaf in layers.setdefault(layer, {}):
            raise ConvertError(f"{path}: layer {layer!r} appears twice in the file")
        layers[layer][leaf] = np.asarray(obj[()], dtype=np.float32)

    root.visititems(visit)
    if others:
        raise ConvertError(f"{path}: unexpected weights {sorted(others)[:20]}")
    if not layers:
        raise ConvertError(f"{path}: no layer weights found")
    return layers


def _veff_name(stripped: str) -> str | None:
    if stripped in _HEADS:
        return _HEADS[stripped]
    if _DILATED.match(stripped):
        return stripped  # veff uses the Keras name bpnet_{i}conv
    return None


def _split_roles(layers: dict[str, dict]) -> dict[str, dict[str, np.ndarray]]:
    """Keras layers -> {role: flat {"veff_layer/kernel": array}}.

    Roles are decided by the layers veff knows (``wo_bias_`` prefix: accessibility). A layer
    veff does not know keeps its Keras name and joins its prefix's role (or the only role
    present), so the strict assignment reports it as unexpected together with whatever is
    missing.
    """
    roles: dict[str, dict[str, np.ndarray]] = {}
    unknown: dict[str, tuple[str, dict]] = {}
    for kname, tensors in layers.items():
        role = ACCESSIBILITY if kname.startswith(ACC_PREFIX) else BIAS
        vname = _veff_name(kname[len(ACC_PREFIX):] if role == ACCESSIBILITY else kname)
        if vname is None:
            unknown[kname] = (role, tensors)
            continue
        for leaf, arr in tensors.items():
            roles.setdefault(role, {})[f"{vname}/{leaf}"] = arr
    for kname, (role, tensors) in unknown.items():
        if role not in roles:
            role = next(iter(roles)) if len(roles) == 1 else role
        for leaf, arr in tensors.items():
            roles.setdefault(role, {})[f"{kname}/{leaf}"] = arr
    return roles


def _walk_model_config(cfg: Any):
    """Yield every layer dict in a (possibly nested) Keras model_config."""
    if isinstance(cfg, dict):
        if "class_name" in cfg and isinstance(cfg.get("config"), dict):
            yield cfg
        for v in cfg.values():
            yield from _walk_model_config(v)
    elif isinstance(cfg, list):
        for v in cfg:
            yield from _walk_model_config(v)


def _lengths(f) -> tuple[int | None, dict[str, int]]:
    """(input_len, {role: profile crop per side}) from model_config, where present."""
    raw = f.attrs.get("model_config")
    if raw is None:
        return None, {}
    try:
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, {}
    input_len = None
    crops: dict[str, int] = {}
    for layer in _walk_model_config(cfg):
        c = layer["config"]
        name = layer.get("name") or c.get("name") or ""
        if layer["class_name"] == "InputLayer":
            shape = c.get("batch_input_shape") or c.get("batch_shape")
            if shape and len(shape) == 3 and shape[1]:
                input_len = int(shape[1])
        elif layer["class_name"] == "Cropping1D" and "logit" in name:
            crop = c.get("cropping")
            crop = crop[0] if isinstance(crop, (list, tuple)) else crop
            role = ACCESSIBILITY if name.startswith(ACC_PREFIX) else BIAS
            crops[role] = int(crop)
    return input_len, crops


def _config_for(path: str, flat: dict[str, np.ndarray], input_len: int, crop: int | None,
                output_len: int | None, role: str) -> BPNetConfig:
    def shape(key):
        if key not in flat:
            raise ConvertError(f"{path}: the {role} model has no {key} weights "
                               f"(found: {', '.join(sorted(flat))})")
        return flat[key].shape

    stem = shape(f"{bpnet.STEM}/kernel")
    prof = shape(f"{bpnet.PROFILE}/kernel")
    idx = [int(m.group(1)) for k in flat if (m := _DILATED.match(k.split("/")[0]))]
    n_layers = max(idx, default=0)
    profile_len = (input_len - (stem[0] - 1) - sum(2 * 2**i for i in range(1, n_layers + 1))
                   - (prof[0] - 1))
    # Keras: output = profile_len - 2 * crop; without a model_config assume chromBPNet's 1000.
    if crop is not None:
        if output_len is not None and output_len != profile_len - 2 * crop:
            raise ConvertError(f"{path}: the {role} model outputs {profile_len - 2 * crop} "
                               f"positions, not output_len {output_len}")
        output_len = profile_len - 2 * crop
    output_len = output_len or 1000
    try:
        return BPNetConfig(filters=int(stem[2]), n_layers=n_layers, input_len=input_len,
                           output_len=int(output_len), conv1_kernel=int(stem[0]),
                           profile_kernel=int(prof[0]))
    except ValueError as e:
        raise ConvertError(f"{path}: {e}") from None


def to_converted(path: str, configs: dict[str, BPNetConfig], params: dict[str, Any]) -> Converted:
    """{role: config}, {role: params} of one source -> a single "bpnet" (one role) or the
    combined "chrombpnet" (both roles). Shared with the bpnet-lite reader."""
    if len(configs) == 1:
        ((role, cfg),) = configs.items()
        return Converted(arch=bpnet.ARCH_SINGLE, config=cfg.to_dict(), params=params[role],
                         facts={"role": role, "window_len": cfg.input_len,
                                "output_len": cfg.output_len})
    if set(configs) != set(bpnet.ROLES):
        raise ConvertError(f"{path}: expected the roles {bpnet.ROLES}, found {sorted(configs)}")
    acc = configs[ACCESSIBILITY]
    try:
        bpnet.check_combinable(acc, configs[BIAS])
    except ValueError as e:
        raise ConvertError(f"{path}: {e}") from None
    return Converted(arch=bpnet.ARCH_COMBINED,
                     config={r: configs[r].to_dict() for r in bpnet.ROLES},
                     params={r: params[r] for r in bpnet.ROLES},
                     facts={"role": "chrombpnet", "window_len": acc.input_len,
                            "output_len": acc.output_len})


def read(path: str | Path, *, input_len: int | None = None,
         output_len: int | None = None) -> Converted:
    """One chromBPNet h5 -> a "bpnet" (bias or accessibility file) or "chrombpnet" (full).

    ``input_len``/``output_len`` are only needed for files without a model_config
    (save_weights() files; default 2114/1000); where the file states them, a different
    value is an error.
    """
    import h5py

    path = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})") from None
    with f:
        layers = _collect_layers(path, f)
        file_len, crops = _lengths(f)
    roles = _split_roles(layers)
    if file_len and input_len and file_len != input_len:
        raise ConvertError(f"{path}: the model takes {file_len} bp, not input_len {input_len}")
    input_len = file_len or input_len or 2114

    configs, params = {}, {}
    for role, flat in roles.items():
        configs[role] = _config_for(path, flat, input_len, crops.get(role), output_len, role)
        params[role] = assign(bpnet.abstract_params(configs[role]), flat,
                              source=f"{path} ({role} model)")
    return to_converted(path, configs, params)
