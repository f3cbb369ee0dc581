"""bpnet-lite (PyTorch) models -> veff "bpnet" / "chrombpnet" params.

Sources: a file written by ``torch.save(model)`` holding a whole ``BPNet`` or ``ChromBPNet``
module (bpnet-lite's own way of saving), or a ``state_dict`` of one. Whole modules are
pickles that only a full unpickle can read, which runs code from the file: veff does that
only with ``trust_pickle=True`` (``veff convert --trust-pickle``); a ``state_dict`` file is
read with ``torch.load(weights_only=True)`` (see veff/convert/torch_files.py).

bpnet-lite's ``BPNet`` pads every convolution ("same") and trims afterwards; with its
default ``trimming = 47 + sum(2**i)`` that is exactly chromBPNet's valid-conv tower, so the
weights map 1:1 (``iconv`` -> stem, ``rconvs.{i-1}`` -> ``bpnet_{i}conv``, ``fconv`` ->
profile, ``linear`` -> count), kernels permuted from torch (out, in, K) to (K, in, out).
The input length is not stored in a bpnet-lite model; it is a converter option (2114), and
the output length is ``input_len - 2 * trimming`` as bpnet-lite computes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.convert.chrombpnet_h5 import to_converted
from veff.convert.common import ConvertError, Converted, assign
from veff.convert.torch_files import load_torch
from veff.models import bpnet
from veff.models.bpnet import ACCESSIBILITY, BIAS, BPNetConfig

FORMAT = "bpnet-lite"
_RCONV = re.compile(r"^rconvs\.(\d+)\.(weight|bias)$")


def _load(path: str, trust_pickle: bool) -> Any:
    return load_torch(path, trust_pickle=trust_pickle)


def _default_trimming(n_layers: int) -> int:
    return 47 + sum(2**i for i in range(1, n_layers + 1))


def _check_module(path: str, module: Any, where: str) -> None:
    """Refuse what veff's BPNet cannot reproduce, from the module's own attributes."""
    cls = type(module).__name__
    if cls != "BPNet":
        raise ConvertError(
            f"{path}: {where} is a {cls}, not a bpnet-lite BPNet"
            + (" (BasePairNet adds its residual before the ReLU; not supported)"
               if cls == "BasePairNet" else "")
        )
    n_ctl = getattr(module, "n_control_tracks", 0)
    if n_ctl:
        raise ConvertError(f"{path}: {where} uses {n_ctl} control tracks; veff supports "
                           "models without controls only (n_control_tracks=0)")
    n_out = getattr(module, "n_outputs", 1)
    if n_out != 1:
        raise ConvertError(f"{path}: {where} has n_outputs={n_out}; veff supports 1")
    n_layers = len(module.rconvs)
    if module.trimming != _default_trimming(n_layers):
        raise ConvertError(
            f"{path}: {where} uses trimming={module.trimming}, not the default "
            f"{_default_trimming(n_layers)}; only then is it chromBPNet's valid-conv tower"
        )


def _state_to_veff(path: str, where: str, sd: dict[str, Any],
                   input_len: int) -> tuple[BPNetConfig, dict[str, Any]]:
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
          for k, v in sd.items()}
    if "iconv.weight" not in sd or "fconv.weight" not in sd or "linear.weight" not in sd:
        raise ConvertError(f"{path}: {where} is not a bpnet-lite BPNet state "
                           f"(keys: {', '.join(sorted(sd)[:12])})")
    filters = sd["iconv.weight"].shape[0]
    n_out, fin, _ = sd["fconv.weight"].shape
    if fin != filters or sd["linear.weight"].shape[1] != filters:
        raise ConvertError(f"{path}: {where} uses control tracks (fconv takes {fin} channels, "
                           f"not {filters}); veff supports models without controls only")
    if n_out != 1:
        raise ConvertError(f"{path}: {where} has {n_out} profile outputs; veff supports 1")

    found: dict[str, np.ndarray] = {}
    unmapped = []
    leaf = {"weight": "kernel", "bias": "bias"}
    for k, v in sd.items():
        if (m := _RCONV.match(k)) is not None:
            layer = bpnet.dilated_name(int(m.group(1)) + 1)
            name = m.group(2)
        elif k.split(".")[0] in ("iconv", "fconv", "linear") and k.count(".") == 1:
            layer = {"iconv": bpnet.STEM, "fconv": bpnet.PROFILE,
                     "linear": bpnet.COUNT}[k.split(".")[0]]
            name = k.split(".")[1]
        else:
            unmapped.append(k)
            continue
        if name == "weight":
            v = v.T if v.ndim == 2 else np.transpose(v, (2, 1, 0))  # torch (out,in,K) -> (K,in,out)
        found[f"{layer}/{leaf[name]}"] = np.ascontiguousarray(v)
    if unmapped:
        raise ConvertError(f"{path}: {where} has weights veff does not map: "
                           f"{', '.join(sorted(unmapped))}")

    n_layers = sum(1 for k in found if k.endswith("/kernel") and k.startswith("bpnet_")
                   and k != f"{bpnet.STEM}/kernel")
    trimming = _default_trimming(n_layers)
    try:
        cfg = BPNetConfig(filters=filters, n_layers=n_layers, input_len=input_len,
                          output_len=input_len - 2 * trimming,
                          conv1_kernel=sd["iconv.weight"].shape[2],
                          profile_kernel=sd["fconv.weight"].shape[2])
    except ValueError as e:
        raise ConvertError(f"{path}: {where}: {e}") from None
    return cfg, assign(bpnet.abstract_params(cfg), found, source=f"{path} ({where})")


def _split_state(sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ChromBPNet state dict has ``bias.*`` and ``accessibility.*`` keys."""
    if any(k.startswith(("bias.", "accessibility.")) for k in sd):
        out: dict[str, dict[str, Any]] = {ACCESSIBILITY: {}, BIAS: {}}
        for k, v in sd.items():
            role, _, rest = k.partition(".")
            if role not in out:
                raise ConvertError(f"unexpected key {k!r} in a ChromBPNet state dict")
            out[role][rest] = v
        return out
    return {"model": sd}


def read(path: str | Path, *, input_len: int = 2114, trust_pickle: bool = False) -> Converted:
    """One bpnet-lite file (whole module or state dict) -> a "bpnet" or "chrombpnet" model;
    a whole module needs ``trust_pickle`` (a full unpickle runs code from the file)."""
    path = str(path)
    obj = _load(path, trust_pickle)
    if isinstance(obj, dict):
        try:
            parts = _split_state(obj)
        except ConvertError as e:
            raise ConvertError(f"{path}: {e}") from None
    elif type(obj).__name__ == "ChromBPNet":
        _check_module(path, obj.bias, "the bias model")
        _check_module(path, obj.accessibility, "the accessibility model")
        parts = {ACCESSIBILITY: obj.accessibility.state_dict(), BIAS: obj.bias.state_dict()}
    else:
        _check_module(path, obj, "the model")
        parts = {"model": obj.state_dict()}

    configs, params = {}, {}
    for role, sd in parts.items():
        where = "the model" if role == "model" else f"the {role} model"
        configs[role], params[role] = _state_to_veff(path, where, sd, input_len)
    if set(parts) == {"model"}:
        # A lone bpnet-lite BPNet does not say whether it is a bias or an accessibility model.
        configs = {ACCESSIBILITY: configs["model"]}
        params = {ACCESSIBILITY: params["model"]}
    return to_converted(path, configs, params)
