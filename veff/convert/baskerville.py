"""baskerville / Borzoi Keras checkpoints (legacy h5 + params.json) -> veff "borzoi" params.

Only h5py is needed (no TensorFlow). Keras auto-names layers in construction order
(``conv1d``, ``conv1d_1``, …; the published Borzoi uses ``sync_batch_normalization``), so
the layers of each class are sorted by their number and assigned by the order in which
baskerville's ``seqnn`` builds them for the given params.json:

    conv1d               conv_dna, res_tower 0..R-1, [final conv_nac]
    batch_normalization  res_tower 0..R-1, per U-net stage (upsample path, skip), [final]
    layer_normalization  per transformer layer (attention, FFN)
    multihead_attention  per transformer layer
    dense                per transformer layer (FFN in, out), per U-net stage
                         ([upsample], skip), then the head(s)
    separable_conv1d     per U-net stage

Numbering offsets (a model built twice in one session starts at ``conv1d_12``) do not
matter, only the order. Every weight is checked against the shapes the params.json
implies; a missing, unexpected or mis-shaped weight is an error listing all of them.

Targets (``targets.txt``, baskerville's tab-separated table: index, identifier, file, clip,
clip_soft, scale, sum_stat, strand_pair, description) become the checkpoint's ``tracks``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.checkpoint import Checkpoint, save_checkpoint
from veff.convert.common import ConvertError, Converted, assign, source_record
from veff.models import borzoi
from veff.models.borzoi import BorzoiConfig, BorzoiConfigError

FORMAT = "baskerville"
_LAYER = re.compile(
    r"^(sync_batch_normalization|batch_normalization|layer_normalization|multihead_attention"
    r"|separable_conv1d|conv1d|dense)(?:_(\d+))?$")
_CLASS = {"sync_batch_normalization": "bn", "batch_normalization": "bn",
          "layer_normalization": "ln", "multihead_attention": "mha",
          "separable_conv1d": "sep", "conv1d": "conv", "dense": "dense"}
_MHA_SUB = ("q_layer", "k_layer", "v_layer", "embedding_layer", "r_k_layer")


# ----------------------------------------------------------------------------- targets
def read_targets(path: str | Path) -> list[dict[str, Any]]:
    """baskerville ``targets.txt`` -> veff track dicts (row order kept).

    ``strand_pair`` is converted from the file's index column to a 0-based row position,
    and must be an involution (the pair of a track's pair is the track).
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except OSError as e:
        raise ConvertError(f"{path}: cannot read targets ({e})") from None
    if not rows:
        raise ConvertError(f"{path}: empty targets file")
    header = [h.strip() for h in rows[0]]
    need = ("identifier", "clip", "clip_soft", "scale", "sum_stat", "strand_pair", "description")
    missing = [c for c in need if c not in header]
    if missing:
        raise ConvertError(f"{path}: targets file lacks column(s) {', '.join(missing)}")
    col = {c: header.index(c) for c in header}
    index_col = 0 if header[0] in ("", "index") else None
    out, index_of = [], {}
    for n, r in enumerate(rows[1:], start=2):
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) != len(header):
            raise ConvertError(f"{path}:{n}: {len(r)} columns, header has {len(header)}")
        try:
            idx = int(r[index_col]) if index_col is not None else len(out)
            t = {
                "name": r[col["identifier"]],
                "description": r[col["description"]],
                "strand_pair": int(r[col["strand_pair"]]),
                "clip": float(r[col["clip"]]),
                "clip_soft": float(r[col["clip_soft"]]),
                "scale": float(r[col["scale"]]),
                "sum_stat": r[col["sum_stat"]],
            }
        except ValueError as e:
            raise ConvertError(f"{path}:{n}: bad value ({e})") from None
        if idx in index_of:
            raise ConvertError(f"{path}:{n}: duplicate index {idx}")
        index_of[idx] = len(out)
        out.append(t)
    for n, t in enumerate(out):
        if t["strand_pair"] not in index_of:
            raise ConvertError(f"{path}: track {t['name']} has strand_pair {t['strand_pair']}, "
                               "which is not an index in the file")
        t["strand_pair"] = index_of[t["strand_pair"]]
    for n, t in enumerate(out):
        if out[t["strand_pair"]]["strand_pair"] != n:
            raise ConvertError(f"{path}: strand pairs are not symmetric at {t['name']}")
    return out


# ----------------------------------------------------------------------------- h5
def _layer_weights(group: Any) -> dict[str, np.ndarray]:
    """A Keras layer group -> {"kernel": …, "q_layer/kernel": …, "r_w_bias": …}."""
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in group.attrs.get("weight_names", [])]
    out = {}
    for wn in names:
        parts = wn.split(":")[0].split("/")
        key = parts[-1] if len(parts) < 2 or parts[-2] not in _MHA_SUB else "/".join(parts[-2:])
        out[key] = np.asarray(group[wn])
    return out


def read_h5_layers(path: str) -> tuple[dict[str, list[tuple[str, dict[str, np.ndarray]]]],
                                       dict[str, Any]]:
    """{class: [(layer name, weights)] in construction order}, and facts from model_config
    (input length, SwitchReverse strand_pair) when the file has one."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in root.attrs.get("layer_names", list(root.keys()))]
        by_class: dict[str, list[tuple[int, str, dict[str, np.ndarray]]]] = {}
        unknown = []
        for name in names:
            w = _layer_weights(root[name]) if name in root else {}
            if not w:
                continue
            m = _LAYER.match(name)
            if not m:
                unknown.append(name)
                continue
            by_class.setdefault(_CLASS[m.group(1)], []).append(
                (int(m.group(2) or 0), name, w))
        if unknown:
            raise ConvertError(f"{path}: layers with weights that a Borzoi model does not have: "
                               f"{', '.join(unknown)}")
        facts: dict[str, Any] = {}
        if "model_config" in f.attrs:
            raw = f.attrs["model_config"]
            mc = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            for layer in mc.get("config", {}).get("layers", []):
                cfg = layer.get("config", {})
                if layer.get("class_name") == "InputLayer":
                    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
                    if shape and len(shape) == 3:
                        facts["input_len"] = shape[1]
                if layer.get("class_name") == "SwitchReverse" and cfg.get("strand_pair"):
                    facts["strand_pair"] = [int(i) for i in cfg["strand_pair"]]
    ordered = {c: [(n, w) for _, n, w in sorted(v, key=lambda t: t[0])]
               for c, v in by_class.items()}
    return ordered, facts


def _bn(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ren = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}
    return {ren.get(k, f"unexpected:{k}"): v for k, v in w.items()}


def _ln(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ren = {"gamma": "scale", "beta": "bias"}
    return {ren.get(k, f"unexpected:{k}"): v for k, v in w.items()}


def _plain(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k if k in ("kernel", "bias") else f"unexpected:{k}": v for k, v in w.items()}


def _mha(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ren = {"q_layer/kernel": "q_kernel", "k_layer/kernel": "k_kernel",
           "v_layer/kernel": "v_kernel", "r_k_layer/kernel": "rel_k_kernel",
           "embedding_layer/kernel": "out_kernel", "embedding_layer/bias": "out_bias",
           "r_w_bias": "r_w_bias", "r_r_bias": "r_r_bias"}
    out = {}
    for k, v in w.items():
        if k in ("r_w_bias", "r_r_bias") and v.ndim == 4 and v.shape[0] == 1 and v.shape[2] == 1:
            v = v[0, :, 0, :]  # (1, H, 1, K) -> (H, K)
        out[ren.get(k, f"unexpected:{k.replace('/', '.')}")] = v
    return out


def _sep(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in w.items():
        if k == "depthwise_kernel" and v.ndim == 3 and v.shape[2] == 1:
            out["depthwise"] = v[:, :, 0]  # (K, C, 1): depth_multiplier 1
        elif k == "pointwise_kernel" and v.ndim == 3 and v.shape[0] == 1:
            out["pointwise"] = v[0]
        elif k == "bias":
            out["bias"] = v
        else:
            out[f"unexpected:{k}"] = v
    return out


def _put(flat: dict[str, np.ndarray], prefix: str, weights: dict[str, np.ndarray]) -> None:
    for k, v in weights.items():
        flat[f"{prefix}/{k}"] = v


def map_layers(path: str, cfg: BorzoiConfig, layers: dict[str, list], head: str | None,
               ) -> tuple[dict[str, np.ndarray], str]:
    """Keras layers (construction order) -> flat veff params for ``cfg``; returns the head
    found in the file. Layers left over or missing are reported together."""
    flat: dict[str, np.ndarray] = {}
    problems: list[str] = []
    queues = {c: list(v) for c, v in layers.items()}

    def take(cls: str, what: str) -> dict[str, np.ndarray]:
        q = queues.get(cls, [])
        if not q:
            problems.append(f"no {cls} layer left for {what}")
            return {}
        return q.pop(0)[1]

    R = len(cfg.res_filters)
    _put(flat, "conv_dna", _plain(take("conv", "conv_dna")))
    for i in range(R):
        _put(flat, f"res_tower/{i}/conv", _plain(take("conv", f"res_tower {i}")))
        _put(flat, f"res_tower/{i}/norm", _bn(take("bn", f"res_tower {i}")))
    for i in range(cfg.num_layers):
        t = f"transformer/{i}"
        _put(flat, f"{t}/attn_norm", _ln(take("ln", f"transformer {i} attention norm")))
        _put(flat, f"{t}/attn", _mha(take("mha", f"transformer {i} attention")))
        _put(flat, f"{t}/ffn_norm", _ln(take("ln", f"transformer {i} FFN norm")))
        d_in = _plain(take("dense", f"transformer {i} FFN in"))
        d_out = _plain(take("dense", f"transformer {i} FFN out"))
        _put(flat, f"{t}/ffn", {f"in_{k}": v for k, v in d_in.items()})
        _put(flat, f"{t}/ffn", {f"out_{k}": v for k, v in d_out.items()})
    for j in range(cfg.num_unet):
        u = f"unet/{j}"
        _put(flat, f"{u}/up_norm", _bn(take("bn", f"unet {j} upsample norm")))
        _put(flat, f"{u}/skip_norm", _bn(take("bn", f"unet {j} skip norm")))
        if cfg.unet_upsample_conv:
            _put(flat, f"{u}/up_dense", _plain(take("dense", f"unet {j} upsample dense")))
        _put(flat, f"{u}/skip_dense", _plain(take("dense", f"unet {j} skip dense")))
        _put(flat, f"{u}/sep", _sep(take("sep", f"unet {j} separable conv")))
    if cfg.final_filters is not None:
        _put(flat, "final/conv", _plain(take("conv", "final conv_nac")))
        _put(flat, "final/norm", _bn(take("bn", "final conv_nac")))

    heads_left = queues.get("dense", [])
    queues["dense"] = []
    chosen = _pick_head(path, cfg, heads_left, head, problems)
    if chosen is not None:
        _put(flat, f"heads/{chosen[0]}", _plain(chosen[1]))
    left = [n for q in queues.values() for n, _ in q]
    if left:
        problems.append(f"layers not used by the params.json architecture: {', '.join(left)}")
    if problems:
        raise ConvertError(f"{path}: the h5 does not match params.json; " + "; ".join(problems))
    return flat, chosen[0]


def _pick_head(path: str, cfg: BorzoiConfig, dense_left: list, head: str | None,
               problems: list[str]) -> tuple[str, dict[str, np.ndarray]] | None:
    """The saved Keras model holds every head (in params order) or just the one it was
    saved with (``seqnn.models[i]``); find the requested one."""
    units = [w.get("bias", np.zeros(0)).shape[0] for _, w in dense_left]
    if len(dense_left) == len(cfg.heads) and all(
            u == t for u, (_, t) in zip(units, cfg.heads)):
        names = cfg.head_names
        want = head or names[0]
        if want not in names:
            problems.append(f"no head {want!r} in params.json (heads: {', '.join(names)})")
            return None
        return want, dense_left[names.index(want)][1]
    if len(dense_left) == 1:
        candidates = [n for n, t in cfg.heads if t == units[0]]
        if head is not None and head in candidates:
            return head, dense_left[0][1]
        if head is None and candidates:
            return candidates[0], dense_left[0][1]
        wanted = f"head {head!r}" if head else "a head"
        problems.append(f"the h5 holds one head with {units[0]} outputs, not {wanted} of "
                        f"params.json ({', '.join(f'{n}: {t}' for n, t in cfg.heads)})")
        return None
    problems.append(f"after the trunk the h5 has {len(dense_left)} dense layers "
                    f"({', '.join(n for n, _ in dense_left)}), expected the head(s) "
                    f"{', '.join(f'{n}: {t}' for n, t in cfg.heads)}")
    return None


# ----------------------------------------------------------------------------- entry points
def read(path: str | Path, *, params: str | Path | None = None,
         targets: str | Path | None = None, head: str | None = None) -> Converted:
    """One baskerville h5 (+ its params.json) -> a Converted "borzoi" model holding one head.

    ``head`` defaults to the one in the file (the first of params.json when it has all).
    """
    path = str(path)
    if params is None:
        raise ConvertError(f"{path}: baskerville checkpoints need their params.json "
                           "(--params params.json)")
    try:
        cfg = BorzoiConfig.from_baskerville_params(params)
    except BorzoiConfigError as e:
        raise ConvertError(f"{params}: {e}") from None
    except KeyError as e:
        raise ConvertError(f"{params}: missing field {e}") from None
    layers, facts = read_h5_layers(path)
    if facts.get("input_len") not in (None, cfg.window_len):
        raise ConvertError(f"{path}: the model takes {facts['input_len']} bp but params.json "
                           f"says seq_length {cfg.window_len}")
    flat, chosen = map_layers(path, cfg, layers, head)
    cfg = BorzoiConfig.from_dict({**cfg.to_dict(), "heads": [[chosen, cfg.num_tracks(chosen)]]})
    tree = assign(borzoi.param_shapes(cfg), flat, source=path)

    n = cfg.num_tracks(chosen)
    if targets is not None:
        tracks = read_targets(targets)
        if len(tracks) != n:
            raise ConvertError(f"{targets}: {len(tracks)} targets, but head {chosen!r} has "
                               f"{n} outputs")
        pair = facts.get("strand_pair")
        if pair is not None and len(pair) == n and [t["strand_pair"] for t in tracks] != pair:
            raise ConvertError(f"{targets}: strand pairs differ from the ones stored in {path}")
    else:
        pair = facts.get("strand_pair")
        tracks = [{"name": f"{chosen}_{i}"} for i in range(n)]
        if pair is not None and len(pair) == n:
            for t, p in zip(tracks, pair):
                t["strand_pair"] = p
    return Converted(
        arch=borzoi.ARCH,
        config=cfg.to_dict(),
        params=tree,
        facts={"window_len": cfg.window_len, "output_len": cfg.output_len,
               "bin_size": cfg.bin_size, "head": chosen},
        tracks=tracks,
    )


def convert_baskerville(h5: str | Path, params_json: str | Path, out: str | Path, *,
                        targets: str | Path | None = None, head: str | None = "human",
                        name: str | None = None) -> Checkpoint:
    """Convert one baskerville h5 + params.json (+ targets.txt) into a checkpoint at ``out``.

    ``head="human"`` is the default; pass None to take whichever head the file holds.
    """
    if not Path(h5).is_file():
        raise ConvertError(f"{h5}: no such file")
    conv = read(h5, params=params_json, targets=targets, head=head)
    name = name or Path(out).name
    sources = [str(h5), str(params_json)] + ([str(targets)] if targets else [])
    metadata = {"name": name, "num_folds": 1, **conv.facts,
                **source_record(sources, FORMAT, __name__)}
    return save_checkpoint(out, arch=conv.arch, config=conv.config, params=conv.params,
                           tracks=conv.tracks, metadata=metadata)
