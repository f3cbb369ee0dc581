"""gReLU (Genentech/gReLU >= 0.5) Lightning ``.ckpt`` of an Enformer or Borzoi -> veff.

A gReLU checkpoint is a PyTorch Lightning pickle: ``state_dict`` (keys ``model.embedding.…``
and ``model.head.…``), ``hyper_parameters`` (``model_params`` with ``model_type`` and the
constructor arguments, ``train_params`` with ``task``/``loss``) and, at the top level (from
``LightningModel.on_save_checkpoint``), ``data_params`` whose ``tasks`` is a dict of columns
(``name``, ``assay``, ``sample``, ``strand_pair``, …) and ``train`` holds ``seq_len``.

gReLU's Enformer and Borzoi are its own modules (``grelu.model.trunks``), built from the
same layers as enformer-pytorch and borzoi-pytorch. Their keys are renamed onto those
packages' key spaces and then go through those converters' key maps:

    Enformer (EnformerModel, EnformerPretrainedModel)    -> enformer-pytorch
      embedding.conv_tower.blocks.0.0                     stem.0
      embedding.conv_tower.blocks.0.1.{norm.layer,conv}   stem.1.fn.{0,2}
      embedding.conv_tower.blocks.0.1.pool.layer          stem.2
      embedding.conv_tower.blocks.{i}.0.{norm.layer,conv} conv_tower.{i-1}.0.{0,2}
      embedding.conv_tower.blocks.{i}.1.{norm.layer,conv} conv_tower.{i-1}.1.fn.{0,2}
      embedding.conv_tower.blocks.{i}.1.pool.layer        conv_tower.{i-1}.2
      embedding.transformer_tower.blocks.{i}.norm.layer   transformer.{i}.0.fn.0
      ….mha / .ffn.dense1.norm.layer / .ffn.dense1.linear / .ffn.dense2.linear
                                                          transformer.{i}.0.fn.1 / .1.fn.{0,1,4}
      embedding.pointwise_conv.{norm.layer,conv}          final_pointwise.1.{0,2}
      head.channel_transform.conv.layer  (T, 2C, 1)       _heads.<head>.0  (T, 2C)
    (the mapping gReLU's own ``grelu.io.update_ckpt`` documents for its older layout).

    Borzoi (BorzoiModel, BorzoiPretrainedModel)          -> borzoi-pytorch
      embedding.conv_tower.blocks.0.conv                  conv_dna.conv_layer
      embedding.conv_tower.blocks.{1..5}.{norm.layer,conv}
                                                          res_tower.{0,2,4,6,8}.{norm,conv_layer}
      embedding.conv_tower.blocks.6.…                     unet1.1.…
      embedding.transformer_tower.blocks.{i}.…            transformer.{i}.… (mha.to_pos_k = to_rel_k)
      embedding.unet_tower.blocks.{0,1}.conv.…            upsampling_unet{1,0}.0.…
      ….channel_transform.{norm.layer,conv.layer}         horizontal_conv{1,0}.{norm,conv_layer}
      ….sconv.{depthwise,pointwise}                       separable{1,0}.conv_layer.{0,1}
      embedding.pointwise_conv.…                          final_joined_convs.0.…
      head.channel_transform.conv.layer                   <head>_head

Numerics that the keys do not carry, and what is checked:
- Enformer: gReLU builds enformer-pytorch's ``Attention`` with ``use_tf_gamma=False``, so
  the gamma basis is ``"enformer_pytorch"`` (``gamma_basis`` overrides it).
- Borzoi: gReLU's central-mask basis is built for the current transformer length
  (``position_basis_length=None``); BatchNorm/LayerNorm eps must be 1e-3 and the
  activation ``gelu_borzoi`` (tanh GELU); Flash attention (RoPE) is refused.
- The output: gReLU predicts ``task_activation(head_activation(conv(x)))`` then pools over
  length (``final_pool_func``). veff's heads are softplus per bin, so the checkpoint must
  have ``final_act_func="softplus"``, ``final_pool_func=None`` and an identity task
  activation (``task="regression", loss="mse"``); ``apply_task_activation=False`` converts
  the bare ``LightningModel.model`` output instead (gReLU's ``logits=True``).
- The crop: ``crop_len`` bins per side, so ``output_len = bins - 2 * crop_len``.

Loading: ``torch.load(weights_only=True)`` plus, by exact name, the numpy scalar and dtype
globals that metrics in ``performance`` need (gReLU issue #193; see
veff/convert/torch_files.py). A checkpoint that needs anything else is refused unless
``trust_pickle`` (``veff convert --trust-pickle``): a full unpickle runs code from the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.convert import borzoi_pytorch as bzp
from veff.convert import enformer_pytorch as efp
from veff.convert.common import ConvertError, Converted, assign
from veff.convert.torch_files import load_torch, numpy_scalar_globals
from veff.models import borzoi, enformer
from veff.models.borzoi import BorzoiConfigError
from veff.models.enformer import EnformerConfig

FORMAT = "grelu"
_ARCH = {
    "EnformerModel": enformer.ARCH,
    "EnformerPretrainedModel": enformer.ARCH,
    "BorzoiModel": borzoi.ARCH,
    "BorzoiPretrainedModel": borzoi.ARCH,
}
# gReLU's constructor defaults for what shapes do not reveal (grelu.model.models).
_DEFAULT_CROP = {"EnformerModel": 0, "EnformerPretrainedModel": 0, "BorzoiModel": 16,
                 "BorzoiPretrainedModel": 0}
_DEFAULT_WINDOW = {enformer.ARCH: efp.SEQUENCE_LENGTH, borzoi.ARCH: bzp.WINDOW_LEN}
# LightningModel.initialize_activation: (task, loss) -> activation after the model
_TASK_ACTIVATION = {("regression", "poisson"): "exp", ("regression", "poisson_multinomial"): "exp",
                    ("regression", "mse"): None, ("binary", None): "sigmoid",
                    ("multiclass", None): "softmax"}
_TRAIN_DEFAULTS = {"task": "binary", "loss": "bce"}  # grelu.lightning.default_train_params


# ----------------------------------------------------------------------------- loading
def load_ckpt(path: str | Path, trust_pickle: bool = False) -> tuple[dict[str, Any], str]:
    """(the checkpoint dict, how it was unpickled: "weights_only" or "full")."""
    path = str(path)
    if trust_pickle:
        obj, how = load_torch(path, trust_pickle=True), "full"
    else:
        obj, how = load_torch(path, allow=numpy_scalar_globals()), "weights_only"
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ConvertError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = obj.get("hyper_parameters")
    if not isinstance(hp, dict) or not isinstance(hp.get("model_params"), dict):
        raise ConvertError(f"{path}: not a gReLU checkpoint (no hyper_parameters.model_params)")
    return obj, how


def _numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        return v.detach().cpu().float().numpy()
    return np.asarray(v)


# ----------------------------------------------------------------------------- key maps
def _enformer_key(k: str) -> str | None:
    """gReLU Enformer key (without ``model.``) -> enformer-pytorch key, head as ``<HEAD>``."""
    rules = [
        (r"embedding\.conv_tower\.blocks\.0\.0\.(weight|bias)", r"stem.0.\1"),
        (r"embedding\.conv_tower\.blocks\.0\.1\.norm\.layer\.(.+)", r"stem.1.fn.0.\1"),
        (r"embedding\.conv_tower\.blocks\.0\.1\.conv\.(.+)", r"stem.1.fn.2.\1"),
        (r"embedding\.conv_tower\.blocks\.0\.1\.pool\.layer\.(.+)", r"stem.2.\1"),
        (r"embedding\.pointwise_conv\.norm\.layer\.(.+)", r"final_pointwise.1.0.\1"),
        (r"embedding\.pointwise_conv\.conv\.(.+)", r"final_pointwise.1.2.\1"),
        (r"embedding\.transformer_tower\.blocks\.(\d+)\.norm\.layer\.(.+)",
         r"transformer.\1.0.fn.0.\2"),
        (r"embedding\.transformer_tower\.blocks\.(\d+)\.mha\.(.+)", r"transformer.\1.0.fn.1.\2"),
        (r"embedding\.transformer_tower\.blocks\.(\d+)\.ffn\.dense1\.norm\.layer\.(.+)",
         r"transformer.\1.1.fn.0.\2"),
        (r"embedding\.transformer_tower\.blocks\.(\d+)\.ffn\.dense1\.linear\.(.+)",
         r"transformer.\1.1.fn.1.\2"),
        (r"embedding\.transformer_tower\.blocks\.(\d+)\.ffn\.dense2\.linear\.(.+)",
         r"transformer.\1.1.fn.4.\2"),
        (r"head\.channel_transform\.conv\.layer\.(weight|bias)", r"_heads.<HEAD>.0.\1"),
    ]
    for pat, rep in rules:
        if re.fullmatch(pat, k):
            return re.sub(pat, rep, k)
    m = re.fullmatch(r"embedding\.conv_tower\.blocks\.(\d+)\.([01])\.(.+)", k)
    if m and int(m.group(1)) >= 1:
        i, sub, rest = int(m.group(1)) - 1, m.group(2), m.group(3)
        for pat, rep in ((r"norm\.layer\.(.+)", "0.{}"), (r"conv\.(.+)", "2.{}")):
            r = re.fullmatch(pat, rest)
            if r:
                return f"conv_tower.{i}.{sub}.{rep.format(r.group(1))}" if sub == "0" else \
                    f"conv_tower.{i}.1.fn.{rep.format(r.group(1))}"
        r = re.fullmatch(r"pool\.layer\.(.+)", rest)
        if r and sub == "1":
            return f"conv_tower.{i}.2.{r.group(1)}"
    return None


_BZ_RES = {1: "res_tower.0", 2: "res_tower.2", 3: "res_tower.4", 4: "res_tower.6",
           5: "res_tower.8", 6: "unet1.1"}
_BZ_UNET = {0: ("upsampling_unet1.0", "horizontal_conv1", "separable1"),
            1: ("upsampling_unet0.0", "horizontal_conv0", "separable0")}


def _borzoi_key(k: str) -> str | None:
    """gReLU Borzoi key (without ``model.``) -> borzoi-pytorch key, head as ``<HEAD>``."""
    if m := re.fullmatch(r"embedding\.conv_tower\.blocks\.0\.conv\.(weight|bias)", k):
        return f"conv_dna.conv_layer.{m.group(1)}"
    if m := re.fullmatch(r"embedding\.conv_tower\.blocks\.(\d+)\.(norm\.layer|conv)\.(.+)", k):
        block = _BZ_RES.get(int(m.group(1)))
        part = "norm" if m.group(2) == "norm.layer" else "conv_layer"
        return f"{block}.{part}.{m.group(3)}" if block else None
    if m := re.fullmatch(r"embedding\.transformer_tower\.blocks\.(\d+)\.(.+)", k):
        i, rest = m.group(1), m.group(2)
        for pat, rep in ((r"norm\.layer\.(.+)", "0.fn.0.{}"),
                         (r"mha\.to_pos_k\.(.+)", "0.fn.1.to_rel_k.{}"),
                         (r"mha\.(to_q|to_k|to_v|to_out)\.(.+)", None),
                         (r"mha\.(rel_content_bias|rel_pos_bias)", "0.fn.1.{}"),
                         (r"ffn\.dense1\.norm\.layer\.(.+)", "1.fn.0.{}"),
                         (r"ffn\.dense1\.linear\.(.+)", "1.fn.1.{}"),
                         (r"ffn\.dense2\.linear\.(.+)", "1.fn.4.{}")):
            if r := re.fullmatch(pat, rest):
                if rep is None:
                    return f"transformer.{i}.0.fn.1.{r.group(1)}.{r.group(2)}"
                return f"transformer.{i}." + rep.format(r.group(1))
        return None
    if m := re.fullmatch(r"embedding\.unet_tower\.blocks\.(\d+)\.(.+)", k):
        names = _BZ_UNET.get(int(m.group(1)))
        if names is None:
            return None
        up, skip, sep = names
        rest = m.group(2)
        for pat, rep in ((r"conv\.norm\.layer\.(.+)", f"{up}.norm.{{}}"),
                         (r"conv\.conv\.(.+)", f"{up}.conv_layer.{{}}"),
                         (r"channel_transform\.norm\.layer\.(.+)", f"{skip}.norm.{{}}"),
                         (r"channel_transform\.conv\.layer\.(.+)", f"{skip}.conv_layer.{{}}"),
                         (r"sconv\.depthwise\.(weight)", f"{sep}.conv_layer.0.{{}}"),
                         (r"sconv\.pointwise\.(.+)", f"{sep}.conv_layer.1.{{}}")):
            if r := re.fullmatch(pat, rest):
                return rep.format(r.group(1))
        return None
    if m := re.fullmatch(r"embedding\.pointwise_conv\.(norm\.layer|conv)\.(.+)", k):
        part = "norm" if m.group(1) == "norm.layer" else "conv_layer"
        return f"final_joined_convs.0.{part}.{m.group(2)}"
    if m := re.fullmatch(r"head\.channel_transform\.conv\.layer\.(weight|bias)", k):
        return f"<HEAD>_head.{m.group(1)}"
    return None


def rename_state_dict(state: dict[str, Any], arch: str, head: str, source: str
                      ) -> dict[str, np.ndarray]:
    """gReLU ``state_dict`` -> the enformer-pytorch / borzoi-pytorch key space. Every key
    that does not map is listed in one error."""
    keymap = _enformer_key if arch == enformer.ARCH else _borzoi_key
    out: dict[str, np.ndarray] = {}
    unexpected = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # BatchNorm training counter
        name = keymap(key[len("model."):]) if key.startswith("model.") else None
        if name is None:
            unexpected.append(key)
            continue
        out[name.replace("<HEAD>", head)] = _numpy(value)
    if unexpected:
        raise ConvertError(f"{source}: weights do not match a gReLU {arch}; unexpected "
                           f"{len(unexpected)}: {', '.join(sorted(unexpected))}")
    # gReLU's ConvHead is a 1x1 Conv1d; enformer-pytorch's head is a Linear
    w = f"_heads.{head}.0.weight"
    if arch == enformer.ARCH and w in out and out[w].ndim == 3 and out[w].shape[2] == 1:
        out[w] = out[w][:, :, 0]
    return out


# ----------------------------------------------------------------------------- metadata
def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _task_columns(tasks: Any, source: str) -> dict[str, list[Any]]:
    """``data_params["tasks"]`` (dict of columns; a list of row dicts also accepted)."""
    if isinstance(tasks, list) and all(isinstance(r, dict) for r in tasks):
        keys = list(dict.fromkeys(k for r in tasks for k in r))
        tasks = {k: [r.get(k) for r in tasks] for k in keys}
    if not isinstance(tasks, dict):
        raise ConvertError(f"{source}: data_params['tasks'] is a {type(tasks).__name__}, "
                           "expected a dict of columns")
    cols = {str(k): list(v) for k, v in tasks.items()}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ConvertError(f"{source}: data_params['tasks'] columns differ in length {lengths}")
    return cols


def tracks_from_tasks(tasks: Any, num_tracks: int, head: str, source: str
                      ) -> list[dict[str, Any]]:
    """Task table -> veff track dicts (``name`` plus every other column)."""
    if not tasks:  # gReLU issue #116: checkpoints saved with empty data_params
        return [{"name": f"{head}_{i}"} for i in range(num_tracks)]
    cols = _task_columns(tasks, source)
    if "name" not in cols:
        raise ConvertError(f"{source}: data_params['tasks'] has no 'name' column "
                           f"(columns: {', '.join(cols)})")
    n = len(cols["name"])
    if n != num_tracks:
        raise ConvertError(f"{source}: {n} tasks in data_params but the head has "
                           f"{num_tracks} outputs")
    tracks = []
    for i in range(n):
        t = {"name": str(_jsonable(cols["name"][i]))}
        t.update({k: _jsonable(v[i]) for k, v in cols.items() if k != "name"})
        tracks.append(t)
    if "strand_pair" in cols:
        # Row positions (gReLU copies baskerville's targets index, which is 0..n-1 in order);
        # the engine swaps paired tracks under reverse complement, so it must be exact.
        try:
            pair = [int(t["strand_pair"]) for t in tracks]
        except (TypeError, ValueError):
            raise ConvertError(f"{source}: task column strand_pair is not integer") from None
        if any(not 0 <= p < n for p in pair) or any(pair[p] != i for i, p in enumerate(pair)):
            raise ConvertError(f"{source}: task column strand_pair is not a symmetric pairing "
                               f"of rows 0..{n - 1}")
        for t, p in zip(tracks, pair):
            t["strand_pair"] = p
    return tracks


def _default_head(data_params: dict[str, Any]) -> str:
    genome = str((data_params.get("train") or {}).get("genome") or "").lower()
    return "mouse" if genome.startswith(("mm", "grcm")) else "human"


def _output_activation(model_type: str, mp: dict[str, Any], tp: dict[str, Any],
                       apply_task_activation: bool, source: str) -> str:
    pretrained = model_type.endswith("PretrainedModel")
    head_act = None if pretrained else mp.get("final_act_func")
    pool = mp.get("final_pool_func", "avg")
    task = str(tp.get("task", _TRAIN_DEFAULTS["task"])).lower()
    loss = str(tp.get("loss", _TRAIN_DEFAULTS["loss"])).lower()
    task_act = _TASK_ACTIVATION.get((task, loss if task == "regression" else None), "?")
    if task_act == "?":
        raise ConvertError(f"{source}: unknown gReLU task/loss {task}/{loss}")
    if not apply_task_activation:
        task_act = None
    if pool is not None:
        raise ConvertError(f"{source}: final_pool_func={pool!r} pools the output over its "
                           "whole length; veff's heads predict per bin (final_pool_func=None)")
    parts = [a for a in (task_act, head_act) if a is not None]
    if parts != ["softplus"]:
        desc = "linear"
        for a in reversed(parts):
            desc = f"{a}({desc})"
        hint = (" (or convert with apply_task_activation=False for the bare model output)"
                if task_act is not None and head_act == "softplus" else "")
        raise ConvertError(f"{source}: the output is {desc} (final_act_func={head_act!r}, "
                           f"task={task}, loss={loss}); veff's {_ARCH[model_type]} head is "
                           f"softplus(linear){hint}")
    return "softplus"


# ----------------------------------------------------------------------------- entry
def read(path: str | Path, *, head: str | None = None, window_len: int | None = None,
         gamma_basis: str | None = None, apply_task_activation: bool = True,
         trust_pickle: bool = False) -> Converted:
    """One gReLU Lightning checkpoint (Enformer or Borzoi family) -> Converted.

    ``head``: the veff head name (default from ``data_params.train.genome``: "mouse" for
    mm*/GRCm*, else "human"; Borzoi allows only those two). ``window_len`` defaults to
    ``data_params.train.seq_len``, else the architecture's published length.
    ``gamma_basis`` (Enformer only) overrides gReLU's "enformer_pytorch". ``trust_pickle``:
    unpickle fully, which runs code from the file (only for checkpoints you trust).
    """
    src = str(path)
    ckpt, how = load_ckpt(path, trust_pickle)
    hp = ckpt["hyper_parameters"]
    mp = hp["model_params"]
    tp = hp.get("train_params") or {}
    dp = ckpt.get("data_params") or hp.get("data_params") or {}
    model_type = str(mp.get("model_type"))
    if model_type not in _ARCH:
        raise ConvertError(f"{src}: gReLU model_type {model_type!r} is not supported "
                           f"(supported: {', '.join(_ARCH)})")
    arch = _ARCH[model_type]
    head = head or _default_head(dp)
    activation = _output_activation(model_type, mp, tp, apply_task_activation, src)
    window = int(window_len or (dp.get("train") or {}).get("seq_len") or _DEFAULT_WINDOW[arch])
    crop = int(mp.get("crop_len", _DEFAULT_CROP[model_type]))
    state = rename_state_dict(ckpt["state_dict"], arch, head, src)
    if arch == enformer.ARCH:
        config, params = _enformer(state, window, crop, head, gamma_basis, src)
        num_tracks = config.num_tracks
        facts = {"window_len": config.window_len, "output_len": config.output_len,
                 "bin_size": config.bin_size, "gamma_basis": config.gamma_basis}
    else:
        if gamma_basis is not None:
            raise ConvertError("gamma_basis is for Enformer checkpoints")
        config, params = _borzoi(state, mp, window, crop, head, src)
        num_tracks = config.num_tracks(head)
        facts = {"window_len": config.window_len, "output_len": config.output_len,
                 "bin_size": config.bin_size}
    tracks = tracks_from_tasks(dp.get("tasks"), num_tracks, head, src)
    facts.update({"head": head, "grelu_model_type": model_type, "grelu_crop_len": crop,
                  "output_activation": activation, "task_activation_applied":
                  bool(apply_task_activation), "unpickled": how})
    genome = (dp.get("train") or {}).get("genome")
    if genome is not None:
        facts["genome"] = _jsonable(genome)
    return Converted(arch=arch, config=config.to_dict(), params=params, facts=facts,
                     tracks=tracks)


def _enformer(state: dict[str, np.ndarray], window: int, crop: int, head: str,
              gamma_basis: str | None, src: str) -> tuple[EnformerConfig, dict[str, Any]]:
    hp = efp.infer_hparams(state, {}, src)
    bins = window // 2 ** hp["num_downsamples"]
    try:
        config = EnformerConfig(window_len=window, target_length=bins - 2 * crop, head=head,
                                gamma_basis=gamma_basis or "enformer_pytorch", **hp)
    except ValueError as e:
        raise ConvertError(f"{src}: {e}") from None
    found, unmapped = efp.to_veff_names(state)
    if unmapped:  # renamed keys the enformer-pytorch map does not know: a bug here
        raise ConvertError(f"{src}: weights do not match the model; unexpected "
                           f"{len(unmapped)}: {', '.join(unmapped)}")
    if config.gamma_basis == "tf_table":
        found[enformer.TF_GAMMA_KEY] = efp.load_tf_gammas()
    return config, assign(enformer.abstract_params(config), found, source=src)


def _borzoi(state: dict[str, np.ndarray], mp: dict[str, Any], window: int, crop: int,
            head: str, src: str) -> tuple[borzoi.BorzoiConfig, dict[str, Any]]:
    if head not in ("human", "mouse"):
        raise ConvertError(f"{src}: a Borzoi head is 'human' or 'mouse', not {head!r}")
    if mp.get("flash_attn"):
        raise ConvertError(f"{src}: flash_attn=True (rotary attention) is not supported")
    act = mp.get("act_func", "gelu_borzoi")
    if act != "gelu_borzoi":
        raise ConvertError(f"{src}: act_func={act!r}; veff's Borzoi uses gelu_borzoi (tanh)")
    norm_kwargs = mp.get("norm_kwargs") or {"eps": 0.001}
    if set(norm_kwargs) - {"eps"} or not math.isclose(float(norm_kwargs.get("eps", 1e-5)),
                                                      borzoi.BN_EPS):
        raise ConvertError(f"{src}: norm_kwargs={norm_kwargs!r}; veff's Borzoi uses eps 1e-3")
    if mp.get("norm_type", "batch") not in ("batch", "syncbatch"):
        raise ConvertError(f"{src}: norm_type={mp.get('norm_type')!r} is not supported")
    bins = window // 32
    try:
        config = bzp.infer_config(state, {}, source=src, window_len=window,
                                  bins_to_return=bins - 2 * crop, position_basis_length=None)
    except BorzoiConfigError as e:
        raise ConvertError(f"{src}: {e}") from None
    flat = bzp.map_state_dict(state, config.num_layers)
    return config, assign(borzoi.param_shapes(config), flat, source=src)
