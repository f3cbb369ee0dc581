"""scBasset weights -> veff "scbasset" params. Two sources:

- ``scbasset-keras``: the Keras h5 calico/scBasset's ``make_model`` + ``model.save`` writes
  (h5py only, no TensorFlow). Layers are auto-named (``conv1d``, ``conv1d_1``, …,
  ``batch_normalization_*``, ``dense``, ``dense_1``); they are taken in the file's
  ``layer_names`` order (the model's topological order): the Conv1D kernels are the stem, the
  tower blocks and the 1x1 pre-bottleneck conv; the batch norms follow them plus the
  bottleneck's; the bias-free Dense is the bottleneck and the Dense with a bias the per-cell
  projection. Cell names are not in the file: ``cells`` (a text file, one name a line) or
  ``cell_0 …``.
- ``scbasset-scvi``: a scvi-tools ``SCBASSET.save()`` directory (or its ``model.pt``):
  ``model_state_dict`` read with torch's restricted loader only (veff/convert/torch_files.py);
  ``attr.pkl`` is never opened. Cell names: ``cells``, else ``var_names.csv`` (plain text,
  legacy saves), else the file's ``var_names`` when it is a plain list of strings. A batch
  embedding (``batch_ids`` + ``batch_emdedding.weight``) is folded into the projection, as
  ``generative`` adds it: W = cell_embedding + E[batch_ids].T.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.convert.common import ConvertError, Converted, assign
from veff.models import scbasset as sb

_BN = {"gamma:0": "gamma", "beta:0": "beta", "moving_mean:0": "mean", "moving_variance:0": "var"}


def _cell_names(path: str, cells: str | None, n: int, found: list[str] | None = None) -> list[str]:
    if cells is not None:
        try:
            names = [ln.strip() for ln in Path(cells).read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConvertError(f"{cells}: cannot read cell names ({e})") from None
    elif found is not None:
        names = found
    else:
        return [f"cell_{i}" for i in range(n)]
    if len(names) != n:
        raise ConvertError(f"{cells or path}: {len(names)} cell names for a model of {n} cells")
    if len(set(names)) != n:
        raise ConvertError(f"{cells or path}: cell names repeat")
    return names


def _converted(path: str, cfg: sb.ScBassetConfig, flat: dict[str, np.ndarray],
               names: list[str], layout: str, extra: dict | None = None) -> Converted:
    params = assign(sb.abstract_params(cfg), flat, source=path)
    return Converted(arch=sb.ARCH, config=cfg.to_dict(), params=params,
                     tracks=[{"name": c} for c in names],
                     facts={"window_len": cfg.window_len, "output_len": 1, "n_cells": cfg.n_cells,
                            "layout": layout, **(extra or {})})


def _config(path: str, conv_kernels: list[np.ndarray], bottleneck: np.ndarray, n_cells: int,
            window_len: int, pool: str) -> sb.ScBassetConfig:
    if len(conv_kernels) < 3:
        raise ConvertError(f"{path}: {len(conv_kernels)} conv layers; scBasset has a stem, a "
                           "tower and a pre-bottleneck conv")
    stem, *tower, pre = conv_kernels
    if pre.shape[0] != 1 or stem.shape[1] != 4:
        raise ConvertError(f"{path}: conv layers {[k.shape for k in conv_kernels]} are not "
                           "scBasset's (stem on 4 bases ... 1x1 pre-bottleneck conv)")
    try:
        cfg = sb.ScBassetConfig(
            n_cells=n_cells, window_len=window_len, stem_filters=stem.shape[2],
            stem_kernel=stem.shape[0], tower_filters=tuple(k.shape[2] for k in tower),
            tower_kernel=tower[0].shape[0], pre_filters=pre.shape[2],
            bottleneck=bottleneck.shape[1], pool=pool)
    except ValueError as e:
        raise ConvertError(f"{path}: {e}") from None
    if cfg.final_len * cfg.pre_filters != bottleneck.shape[0]:
        raise ConvertError(f"{path}: the bottleneck takes {bottleneck.shape[0]} inputs, but a "
                           f"{window_len}-bp window gives {cfg.final_len} x {cfg.pre_filters}")
    return cfg


# --------------------------------------------------------------------------- Keras h5
def _keras_layers(path: str, f) -> list[tuple[str, dict[str, np.ndarray]]]:
    import h5py

    if "model_weights" not in f:
        raise ConvertError(f"{path}: not a Keras HDF5 model (no 'model_weights' group)")
    root = f["model_weights"]
    layers: dict[str, dict[str, np.ndarray]] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            parts = name.split("/")
            layers.setdefault(parts[0], {})[parts[-1]] = np.asarray(obj[()], np.float32)

    root.visititems(visit)
    order = [n.decode() if isinstance(n, bytes) else str(n)
             for n in root.attrs.get("layer_names", [])]
    if not order:  # fall back to Keras' creation order: name, name_1, name_2, ...
        def key(n):
            m = re.match(r"^(.*?)(?:_(\d+))?$", n)
            return (m.group(1), int(m.group(2) or 0))
        order = sorted(layers, key=key)
    return [(n, layers[n]) for n in order if n in layers]


def _keras_window(f) -> int | None:
    raw = f.attrs.get("model_config")
    if raw is None:
        return None
    try:
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        for layer in cfg["config"]["layers"]:
            if layer.get("class_name") == "InputLayer":
                shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
                return int(shape[1])
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None


def read_keras(path: str | Path, *, cells: str | None = None,
               input_len: int | None = None) -> Converted:
    import h5py

    path = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})") from None
    with f:
        layers = _keras_layers(path, f)
        window = _keras_window(f)
    if window and input_len and window != input_len:
        raise ConvertError(f"{path}: the model takes {window} bp, not input_len {input_len}")
    convs, bns, dense_nb, dense_b, other = [], [], [], [], []
    for name, t in layers:
        keys = set(t)
        if keys == {"kernel:0"} and t["kernel:0"].ndim == 3:
            convs.append(t["kernel:0"])
        elif keys == set(_BN):
            bns.append({_BN[k]: v for k, v in t.items()})
        elif keys == {"kernel:0"} and t["kernel:0"].ndim == 2:
            dense_nb.append(t["kernel:0"])
        elif keys == {"kernel:0", "bias:0"} and t["kernel:0"].ndim == 2:
            dense_b.append(t)
        else:
            other.append(f"{name} ({', '.join(sorted(keys))})")
    if other or len(dense_nb) != 1 or len(dense_b) != 1 or len(bns) != len(convs) + 1:
        raise ConvertError(
            f"{path}: not scBasset's layers: {len(convs)} conv, {len(bns)} batch norm, "
            f"{len(dense_nb)} bias-free dense, {len(dense_b)} dense"
            + (f"; unexpected {other[:10]}" if other else ""))
    final = dense_b[0]
    cfg = _config(path, convs, dense_nb[0], final["kernel:0"].shape[1],
                  window or input_len or 1344, "keras")
    flat: dict[str, np.ndarray] = {}
    for (name, *_), kernel, bn in zip(cfg.blocks, convs, bns):
        flat[f"{name}/kernel"] = kernel
        flat.update({f"{name}/{k}": v for k, v in bn.items()})
    flat["bottleneck/kernel"] = dense_nb[0]
    flat.update({f"bottleneck/{k}": v for k, v in bns[-1].items()})
    flat["cells/kernel"] = final["kernel:0"]
    flat["cells/bias"] = final["bias:0"]
    return _converted(path, cfg, flat, _cell_names(path, cells, cfg.n_cells), "keras")


# --------------------------------------------------------------------------- scvi-tools
_TORCH_BN = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}
_SKIPPED = ("num_batches_tracked",)  # counters, not weights


def _scvi_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        for name in ("model.pt", "model_params.pt"):
            if (path / name).is_file():
                csv = path / "var_names.csv"
                return path / name, csv if csv.is_file() else None
        raise ConvertError(f"{path}: no model.pt (a scvi-tools SCBASSET.save() directory)")
    csv = path.parent / "var_names.csv"
    return path, csv if csv.is_file() else None


def _plain_names(v: Any) -> list[str] | None:
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return list(v)
    return None


def read_scvi(path: str | Path, *, cells: str | None = None, input_len: int | None = None,
              trust_pickle: bool = False) -> Converted:
    from veff.convert.torch_files import load_torch

    model_file, csv = _scvi_files(Path(path))
    obj = load_torch(model_file, trust_pickle=bool(trust_pickle))
    names = _plain_names(obj.get("var_names")) if isinstance(obj, dict) else None
    sd = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or "cell_embedding" not in sd:
        raise ConvertError(f"{model_file}: no scBasset state dict (expected 'model_state_dict' "
                           "with 'cell_embedding')")
    if names is None and csv is not None and cells is None:
        names = [ln.strip() for ln in csv.read_text().splitlines() if ln.strip()]
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
          for k, v in sd.items() if k != "pyro_param_store"}
    src = str(model_file)
    blocks = ["stem"] + sorted({k.split(".")[1] for k in sd if k.startswith("tower.")},
                               key=int) + ["pre_bottleneck"]
    bname = {"stem": "stem", "pre_bottleneck": "pre"}
    flat: dict[str, np.ndarray] = {}
    used: set[str] = set()
    convs = []
    for i, b in enumerate(blocks):
        prefix = b if b in bname else f"tower.{b}"
        veff = bname.get(b, f"tower_{i - 1}")
        w = sd.get(f"{prefix}.conv.weight")
        if w is None:
            raise ConvertError(f"{src}: missing {prefix}.conv.weight")
        convs.append(np.transpose(w, (2, 1, 0)))  # (out, in, K) -> (K, in, out)
        flat[f"{veff}/kernel"] = convs[-1]
        used.add(f"{prefix}.conv.weight")
        for tk, vk in _TORCH_BN.items():
            key = f"{prefix}.batch_norm.{tk}"
            if key in sd:
                flat[f"{veff}/{vk}"] = sd[key]
                used.add(key)
    dense = sd.get("bottleneck.dense.weight")
    if dense is None:
        raise ConvertError(f"{src}: missing bottleneck.dense.weight")
    emb, bias = sd["cell_embedding"], sd.get("cell_bias")
    window = input_len or 1344
    cfg = _config(src, convs, dense.T, emb.shape[1], window, "scvi")
    # torch flattens (C, P) channel-major; veff's kernel rows are position-major (p * C + c)
    units, C, P = dense.shape[0], cfg.pre_filters, cfg.final_len
    flat["bottleneck/kernel"] = dense.reshape(units, C, P).transpose(2, 1, 0).reshape(P * C, units)
    used.add("bottleneck.dense.weight")
    for tk, vk in _TORCH_BN.items():
        key = f"bottleneck.batch_norm.{tk}"
        if key in sd:
            flat[f"bottleneck/{vk}"] = sd[key]
            used.add(key)
    extra = {}
    if "batch_ids" in sd or "batch_emdedding.weight" in sd:
        ids, table = sd.get("batch_ids"), sd.get("batch_emdedding.weight")
        if ids is None or table is None:
            raise ConvertError(f"{src}: a batch embedding needs both batch_ids and "
                               "batch_emdedding.weight")
        emb = emb + table[np.asarray(ids, np.int64).reshape(-1)].T
        used |= {"batch_ids", "batch_emdedding.weight"}
        extra["batch_embedding_folded"] = True
    flat["cells/kernel"] = emb
    used.add("cell_embedding")
    if bias is not None:
        flat["cells/bias"] = bias
        used.add("cell_bias")
    left = sorted(k for k in sd if k not in used and k.rsplit(".", 1)[-1] not in _SKIPPED)
    if left:
        raise ConvertError(f"{src}: unexpected weights {left[:20]}")
    return _converted(src, cfg, flat, _cell_names(src, cells, cfg.n_cells, names), "scvi", extra)
