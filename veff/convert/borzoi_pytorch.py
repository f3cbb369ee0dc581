"""borzoi-pytorch (johahi/borzoi-pytorch, HF ``johahi/borzoi-replicate-*`` and Flashzoi's
``johahi/flashzoi-replicate-*``) -> veff "borzoi".

Sources: a Hugging Face directory (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, as ``save_pretrained`` writes it), or one state-dict file
(``.safetensors``; ``.pt``/``.pth``/``.bin`` read with ``torch.load(weights_only=True)``).

borzoi-pytorch's layout is fixed (5 ``res_tower`` ConvBlocks + ``unet1`` = 6 res blocks,
2 U-net stages, ``final_joined_convs``); every width is read from the tensor shapes, so a
shrunk copy converts as well as the published one. Key map (torch -> veff):

    conv_dna.conv_layer                      conv_dna                 (O, I, K) -> (K, I, O)
    res_tower.{0,2,4,6,8}.{norm,conv_layer}  res_tower/{0..4}/{norm,conv}
    unet1.1.{norm,conv_layer}                res_tower/5/{norm,conv}
    transformer.{i}.0.fn.0 / .1.fn.0         transformer/{i}/attn_norm / ffn_norm
    transformer.{i}.0.fn.1.to_{q,k,v,out,rel_k}, rel_{content,pos}_bias
                                             transformer/{i}/attn/…  (Linear (O, I) -> (I, O))
    transformer.{i}.1.fn.{1,4}               transformer/{i}/ffn/{in,out}_*
    upsampling_unet1.0 / horizontal_conv1 / separable1   unet/0/{up_*, skip_*, sep}
    upsampling_unet0.0 / horizontal_conv0 / separable0   unet/1/…
    final_joined_convs.0                     final/{norm,conv}
    human_head / mouse_head                  heads/human, heads/mouse

``num_batches_tracked`` buffers are dropped (training bookkeeping); any other key that is
not in this map, any missing one and any shape mismatch is an error listing all of them.

Flashzoi (``flashed``; recognised by its ``mha`` keys) has the same trunk and, per layer,
flash-attn ``MHA`` keys instead of the relative-attention ones:

    transformer.{i}.0.fn.1.mha.Wqkv.{weight,bias}      transformer/{i}/attn/qkv_{kernel,bias}
    transformer.{i}.0.fn.1.mha.out_proj.{weight,bias}  transformer/{i}/attn/out_{kernel,bias}
    transformer.{i}.0.fn.1.mha.rotary_emb.inv_freq     checked against the config, dropped

Its head count is not in the shapes (``Wqkv`` is 2·width rows for any even count): it is
the HF config's ``heads`` (borzoi-pytorch's default 8), or ``num_heads``; key/value heads
are heads // 2, rotary on 128 dims of each head, base 20000 (borzoi-pytorch's constants).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.checkpoint import Checkpoint, save_checkpoint
from veff.convert.baskerville import read_targets
from veff.convert.common import ConvertError, Converted, assign, source_record
from veff.convert.torch_files import load_torch
from veff.models import borzoi
from veff.models.borzoi import BorzoiConfig, BorzoiConfigError

FORMAT = "borzoi-pytorch"
WINDOW_LEN = 524_288  # borzoi-pytorch's input length (its crop assumes it)
TRAIN_TRANSFORMER_LEN = 4096  # borzoi-pytorch 0.5.x builds the position basis for this
FLASHZOI_ROTARY_DIM, FLASHZOI_ROTARY_BASE = 128, 20000.0  # borzoi-pytorch FlashAttention
_MHA = "transformer.0.0.fn.1.mha."
_RES = ("res_tower.0", "res_tower.2", "res_tower.4", "res_tower.6", "res_tower.8", "unet1.1")
_UNET = (("upsampling_unet1.0", "horizontal_conv1", "separable1"),
         ("upsampling_unet0.0", "horizontal_conv0", "separable0"))


# ----------------------------------------------------------------------------- loading
def _load_file(path: Path, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ConvertError(f"{path}: cannot read safetensors ({e})") from None
    obj = load_torch(path, trust_pickle=trust_pickle)
    if callable(getattr(obj, "state_dict", None)):  # a whole module (only with trust_pickle)
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v)
            for k, v in obj.items()}


def weights_path(source: str | Path) -> Path:
    """The weights file of a source (itself, or the one inside an HF directory)."""
    source = Path(source)
    if source.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (source / name).is_file():
                return source / name
        raise ConvertError(f"{source}: no model.safetensors or pytorch_model.bin (sharded "
                           "checkpoints are not supported)")
    if source.is_file():
        return source
    raise ConvertError(f"{source}: no such file or directory")


def load_source(source: str | Path, trust_pickle: bool = False
                ) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    """(state dict as numpy, HF config dict or {}, the weights file)."""
    source = Path(source)
    hf_config: dict[str, Any] = {}
    weights = weights_path(source)
    cfg_path = source / "config.json"
    if source.is_dir() and cfg_path.is_file():
        try:
            hf_config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise ConvertError(f"{cfg_path}: invalid JSON ({e})") from None
        if not isinstance(hf_config, dict):
            raise ConvertError(f"{cfg_path}: not a JSON object")
    sd = _load_file(weights, trust_pickle)
    # DataParallel / wrapper prefixes
    for prefix in ("module.", "borzoi."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd, hf_config, weights


# ----------------------------------------------------------------------------- config
def _shape(sd: dict[str, np.ndarray], key: str, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise ConvertError(f"{source}: missing {key}; not a borzoi-pytorch Borzoi state dict")
    return tuple(sd[key].shape)


def infer_config(sd: dict[str, np.ndarray], hf: dict[str, Any], *, source: str,
                 window_len: int = WINDOW_LEN, bins_to_return: int | None = None,
                 position_basis_length: int | None = TRAIN_TRANSFORMER_LEN,
                 num_heads: int | None = None) -> BorzoiConfig:
    """Widths from tensor shapes; crop from ``bins_to_return`` (argument, else HF config,
    else borzoi-pytorch's default 6144; ``return_center_bins_only: false`` = 16352).
    Flashzoi's head count: ``num_heads``, else the HF config's ``heads``, else 8."""
    if any(k.startswith(("prime", "unet2.")) for k in sd):
        raise ConvertError(f"{source}: not a Borzoi layout (Prime keys found)")
    flashed = any(k.startswith(_MHA) for k in sd)
    if hf.get("flashed") and not flashed:
        raise ConvertError(f"{source}: config says flashed (Flashzoi) but the state dict has "
                           "no flash-attn MHA keys")
    c0, _, kdna = _shape(sd, "conv_dna.conv_layer.weight", source)
    res = [_shape(sd, f"{r}.conv_layer.weight", source) for r in _RES]
    res_filters = tuple(s[0] for s in res)
    kres = {s[2] for s in res}
    if len(kres) != 1:
        raise ConvertError(f"{source}: res-tower kernels differ ({sorted(kres)})")
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"transformer\.(\d+)\.", k))})
    if not layers or layers != list(range(len(layers))):
        raise ConvertError(f"{source}: transformer layers {layers} are not 0..N-1")
    if flashed:
        attn = _flash_attention(sd, hf, num_heads, res_filters[-1], source)
    else:
        _, H, _, K = _shape(sd, "transformer.0.0.fn.1.rel_content_bias", source)
        hv = _shape(sd, "transformer.0.0.fn.1.to_v.weight", source)[0]
        if hv % H:
            raise ConvertError(f"{source}: to_v width {hv} is not a multiple of {H} heads")
        attn = dict(num_heads=H, key_size=K, value_size=hv // H,
                    num_position_features=_shape(sd, "transformer.0.0.fn.1.to_rel_k.weight",
                                                 source)[1],
                    position_basis_length=position_basis_length)
    ffn = _shape(sd, "transformer.0.1.fn.1.weight", source)[0]
    usep = _shape(sd, "separable1.conv_layer.0.weight", source)[2]
    final = (_shape(sd, "final_joined_convs.0.conv_layer.weight", source)[0]
             if "final_joined_convs.0.conv_layer.weight" in sd else None)
    heads = [(n, sd[f"{n}_head.weight"].shape[0]) for n in ("human", "mouse")
             if f"{n}_head.weight" in sd]
    if not heads:
        raise ConvertError(f"{source}: no human_head or mouse_head weights")
    if bins_to_return is None:
        if hf.get("return_center_bins_only", True) is False:
            bins_to_return = 16384 - 32
        else:
            bins_to_return = int(hf.get("bins_to_return", 6144))
    bins_total = window_len // 32
    if (bins_total - bins_to_return) % 2 or bins_to_return > bins_total:
        raise ConvertError(f"{source}: cannot return {bins_to_return} central bins of "
                           f"{bins_total} (window {window_len} bp)")
    try:
        return BorzoiConfig(
            window_len=window_len, conv_dna_filters=c0, conv_dna_kernel=kdna,
            res_filters=res_filters, res_kernel=kres.pop(), **attn,
            num_layers=len(layers), ffn_dim=ffn, crop_bins=(bins_total - bins_to_return) // 2, final_filters=final,
            heads=tuple(heads), num_unet=2, unet_kernel=usep, unet_upsample_conv=True,
        )
    except BorzoiConfigError as e:
        raise ConvertError(f"{source}: {e}") from None


def _flash_attention(sd: dict[str, np.ndarray], hf: dict[str, Any], num_heads: int | None,
                     dim: int, source: str) -> dict[str, Any]:
    H = int(num_heads or hf.get("heads", 8))
    rows, cols = _shape(sd, _MHA + "Wqkv.weight", source)
    if H < 2 or dim % H or cols != dim or rows != dim + 2 * (H // 2) * (dim // H):
        raise ConvertError(f"{source}: Wqkv {rows}x{cols} does not fit {H} heads (key/value "
                           f"heads {H // 2}) of width {dim}")
    return dict(attention="rotary", num_heads=H, num_kv_heads=H // 2, key_size=dim // H,
                value_size=dim // H, rotary_dim=FLASHZOI_ROTARY_DIM,
                rotary_base=FLASHZOI_ROTARY_BASE)


# ----------------------------------------------------------------------------- key map
def _conv_k(w: np.ndarray) -> np.ndarray:  # torch Conv1d (O, I, K) -> (K, I, O)
    return w.transpose(2, 1, 0) if w.ndim == 3 else w


def _pointwise(w: np.ndarray) -> np.ndarray:  # Conv1d k=1 (O, I, 1) -> (I, O)
    return w[:, :, 0].T if w.ndim == 3 and w.shape[2] == 1 else w


def _linear(w: np.ndarray) -> np.ndarray:  # Linear (O, I) -> (I, O)
    return w.T if w.ndim == 2 else w


def _depthwise(w: np.ndarray) -> np.ndarray:  # grouped Conv1d (C, 1, K) -> (K, C)
    return w[:, 0, :].T if w.ndim == 3 and w.shape[1] == 1 else w


def _head_bias(w: np.ndarray) -> np.ndarray:  # (1, H, 1, K) -> (H, K)
    return w[0, :, 0, :] if w.ndim == 4 and w.shape[0] == 1 and w.shape[2] == 1 else w


_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_LN = {"weight": "scale", "bias": "bias"}


def _rules(num_layers: int, rotary: bool = False) -> dict[str, tuple[str, Any]]:
    """torch key -> (veff key, transform)."""
    ident = lambda w: w  # noqa: E731
    r: dict[str, tuple[str, Any]] = {
        "conv_dna.conv_layer.weight": ("conv_dna/kernel", _conv_k),
        "conv_dna.conv_layer.bias": ("conv_dna/bias", ident),
    }

    for i, t in enumerate(_RES):
        for tk, vk in _BN.items():
            r[f"{t}.norm.{tk}"] = (f"res_tower/{i}/norm/{vk}", ident)
        r[f"{t}.conv_layer.weight"] = (f"res_tower/{i}/conv/kernel", _conv_k)
        r[f"{t}.conv_layer.bias"] = (f"res_tower/{i}/conv/bias", ident)
    for i in range(num_layers):
        a, f, v = f"transformer.{i}.0.fn", f"transformer.{i}.1.fn", f"transformer/{i}"
        for tk, vk in _LN.items():
            r[f"{a}.0.{tk}"] = (f"{v}/attn_norm/{vk}", ident)
            r[f"{f}.0.{tk}"] = (f"{v}/ffn_norm/{vk}", ident)
        if rotary:
            for tk, vk in (("Wqkv", "qkv"), ("out_proj", "out")):
                r[f"{a}.1.mha.{tk}.weight"] = (f"{v}/attn/{vk}_kernel", _linear)
                r[f"{a}.1.mha.{tk}.bias"] = (f"{v}/attn/{vk}_bias", ident)
        else:
            for tk in ("q", "k", "v", "rel_k", "out"):
                r[f"{a}.1.to_{tk}.weight"] = (f"{v}/attn/{tk}_kernel", _linear)
            r[f"{a}.1.to_out.bias"] = (f"{v}/attn/out_bias", ident)
            r[f"{a}.1.rel_content_bias"] = (f"{v}/attn/r_w_bias", _head_bias)
            r[f"{a}.1.rel_pos_bias"] = (f"{v}/attn/r_r_bias", _head_bias)
        r[f"{f}.1.weight"] = (f"{v}/ffn/in_kernel", _linear)
        r[f"{f}.1.bias"] = (f"{v}/ffn/in_bias", ident)
        r[f"{f}.4.weight"] = (f"{v}/ffn/out_kernel", _linear)
        r[f"{f}.4.bias"] = (f"{v}/ffn/out_bias", ident)
    for j, (up, skip, sep) in enumerate(_UNET):
        u = f"unet/{j}"
        for tk, vk in _BN.items():
            r[f"{up}.norm.{tk}"] = (f"{u}/up_norm/{vk}", ident)
            r[f"{skip}.norm.{tk}"] = (f"{u}/skip_norm/{vk}", ident)
        r[f"{up}.conv_layer.weight"] = (f"{u}/up_dense/kernel", _pointwise)
        r[f"{up}.conv_layer.bias"] = (f"{u}/up_dense/bias", ident)
        r[f"{skip}.conv_layer.weight"] = (f"{u}/skip_dense/kernel", _pointwise)
        r[f"{skip}.conv_layer.bias"] = (f"{u}/skip_dense/bias", ident)
        r[f"{sep}.conv_layer.0.weight"] = (f"{u}/sep/depthwise", _depthwise)
        r[f"{sep}.conv_layer.1.weight"] = (f"{u}/sep/pointwise", _pointwise)
        r[f"{sep}.conv_layer.1.bias"] = (f"{u}/sep/bias", ident)
    for tk, vk in _BN.items():
        r[f"final_joined_convs.0.norm.{tk}"] = (f"final/norm/{vk}", ident)
    r["final_joined_convs.0.conv_layer.weight"] = ("final/conv/kernel", _pointwise)
    r["final_joined_convs.0.conv_layer.bias"] = ("final/conv/bias", ident)
    for n in ("human", "mouse"):
        r[f"{n}_head.weight"] = (f"heads/{n}/kernel", _pointwise)
        r[f"{n}_head.bias"] = (f"heads/{n}/bias", ident)
    return r


def map_state_dict(sd: dict[str, np.ndarray], num_layers: int,
                   cfg: BorzoiConfig | None = None) -> dict[str, np.ndarray]:
    """torch names -> flat veff names; keys outside the map keep a ``torch:`` name so the
    strict assignment lists them as unexpected. ``cfg`` (needed for Flashzoi) selects the
    attention keys and checks any stored rotary ``inv_freq`` against it."""
    rotary = cfg is not None and cfg.attention == "rotary"
    rules = _rules(num_layers, rotary)
    flat: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if rotary and re.fullmatch(r"transformer\.\d+\.0\.fn\.1\.mha\.rotary_emb\.inv_freq", k):
            _check_inv_freq(k, np.asarray(v), cfg)
            continue
        if k in rules:
            name, fn = rules[k]
            flat[name] = np.asarray(fn(np.asarray(v)), dtype=np.float32)
        else:
            flat[f"torch:{k}"] = np.asarray(v)
    return flat


def _check_inv_freq(key: str, got: np.ndarray, cfg: BorzoiConfig) -> None:
    from veff.models.rotary import inverse_frequencies

    want = inverse_frequencies(cfg.rotary_dim, cfg.rotary_base)
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=0):
        raise ConvertError(f"{key}: stored rotary frequencies {got.shape} differ from rotary "
                           f"dim {cfg.rotary_dim}, base {cfg.rotary_base}")


# ----------------------------------------------------------------------------- entry points
def read(path: str | Path, *, params: str | Path | None = None,
         targets: str | Path | None = None, window_len: int = WINDOW_LEN,
         bins_to_return: int | None = None,
         position_basis_length: int | None = TRAIN_TRANSFORMER_LEN,
         num_heads: int | None = None, trust_pickle: bool = False) -> Converted:
    """One borzoi-pytorch model (HF directory or state-dict file) -> Converted "borzoi".

    ``position_basis_length`` defaults to 4096 as in borzoi-pytorch 0.5.x (its training
    length); pass None for baskerville's "basis of the current length" at other windows.
    ``num_heads``: Flashzoi's head count when the source has no HF config (default 8).
    ``trust_pickle``: unpickle a torch file fully, which runs code from it (trusted files only).
    """
    if params is not None:
        raise ConvertError("--params is for baskerville checkpoints; borzoi-pytorch models "
                           "carry their own config")
    sd, hf, _ = load_source(path, trust_pickle)
    cfg = infer_config(sd, hf, source=str(path), window_len=window_len,
                       bins_to_return=bins_to_return,
                       position_basis_length=position_basis_length, num_heads=num_heads)
    if num_heads is not None and cfg.attention != "rotary":
        raise ConvertError(f"{path}: num_heads is for Flashzoi; Borzoi's heads are in its "
                           "shapes")
    flat = map_state_dict(sd, cfg.num_layers, cfg)
    tree = assign(borzoi.param_shapes(cfg), flat, source=str(path))
    head = cfg.head_names[0]
    n = cfg.num_tracks(head)
    if targets is not None:
        tracks = read_targets(targets)
        if len(tracks) != n:
            raise ConvertError(f"{targets}: {len(tracks)} targets, but head {head!r} has "
                               f"{n} outputs")
    else:
        tracks = [{"name": f"{head}_{i}"} for i in range(n)]
    return Converted(
        arch=borzoi.ARCH, config=cfg.to_dict(), params=tree,
        facts={"window_len": cfg.window_len, "output_len": cfg.output_len,
               "bin_size": cfg.bin_size, "head": head},
        tracks=tracks,
    )


def convert_borzoi_pytorch(source: str | Path, out: str | Path, *,
                           targets: str | Path | None = None, name: str | None = None,
                           **options: Any) -> Checkpoint:
    """Convert a borzoi-pytorch HF directory or state-dict file into a checkpoint at ``out``.

    ``options``: ``window_len``, ``bins_to_return``, ``position_basis_length``,
    ``num_heads`` (see read).
    """
    conv = read(source, targets=targets, **options)
    name = name or Path(out).name
    sources = [str(weights_path(source))]
    if Path(source).is_dir() and (Path(source) / "config.json").is_file():
        sources.append(str(Path(source) / "config.json"))
    if targets:
        sources.append(str(targets))
    metadata = {"name": name, "num_folds": 1, **conv.facts,
                **source_record(sources, FORMAT, __name__)}
    return save_checkpoint(out, arch=conv.arch, config=conv.config, params=conv.params,
                           tracks=conv.tracks, metadata=metadata)
