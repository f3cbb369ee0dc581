"""alphagenome-pytorch (0.3.x) state dict -> veff "alphagenome" checkpoint.

The source is the port's ``AlphaGenome.state_dict()`` saved with ``torch.save`` (read with
``weights_only=True`` through :mod:`veff.convert.torch_files`) or as ``.safetensors``.
Widths, depth, heads and organisms are read from the tensors' shapes; the window length is
an option (1,048,576 bp by default; any multiple of 2,048 bp).

veff's param names mirror the port's module names, so the mapping is per leaf:
Linear/Conv weights are transposed to (in, out) / (K, in, out), norms' weight/bias/
running_var become scale/offset/var, a standardised conv's ``scale`` becomes ``wscale``.

Strict: every tensor the kept model needs must be there with its shape, and every tensor
in the file must be used, except the parts veff leaves out: the splice-site / usage /
junction heads, the contact-map head, the pair output embedding, and track heads not
selected by ``head``. Those are listed in the checkpoint's metadata (``dropped``).

``head`` selects the outputs: ``[ORGANISM:]HEAD[,HEAD...][@RESOLUTION]``, e.g. ``dnase``,
``mouse:atac,dnase@1`` (organism human or mouse or an index; resolution 128 or 1 bp).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from veff.convert.common import ConvertError, Converted, _shape_tree, assign

LEFT_OUT = ("embedder_pair.", "contact_maps_head.", "splice_sites_classification_head.",
            "splice_sites_usage_head.", "splice_sites_junction_head.")
SQUASHED = ("rna_seq",)  # heads with the RNA-seq power-law squashing (not in the weights)
_LEAF = {"kernel": "weight", "scale": "weight", "offset": "bias", "var": "running_var",
         "embedding": "weight", "wscale": "scale"}


def load_state(path: str | Path, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
            return dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own types
            raise ConvertError(f"{path}: cannot read as safetensors ({e})") from None
    from veff.convert.torch_files import load_torch

    raw = load_torch(path, trust_pickle=trust_pickle)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw:
        raise ConvertError(f"{path}: not a state dict (expected a mapping of tensors)")
    out = {}
    for k, v in raw.items():
        if not hasattr(v, "detach"):
            raise ConvertError(f"{path}: entry {k!r} is not a tensor")
        out[str(k)] = v.detach().float().cpu().numpy()
    return out


def parse_head(spec: str | None, num_organisms: int) -> tuple[int, tuple[str, ...], int]:
    spec = spec or "dnase"
    m = re.fullmatch(r"(?:(\w+):)?([\w,]+)(?:@(\d+))?", spec)
    if not m:
        raise ConvertError(f"head {spec!r}: expected [ORGANISM:]HEAD[,HEAD...][@RESOLUTION]")
    org, heads, res = m.group(1) or "human", m.group(2), int(m.group(3) or 128)
    names = {"human": 0, "mouse": 1}
    organism = int(org) if org.isdigit() else names.get(org)
    if organism is None or organism >= num_organisms:
        raise ConvertError(f"head {spec!r}: organism {org!r} is not one of the model's "
                           f"{num_organisms} (human, mouse or an index)")
    return organism, tuple(h for h in heads.split(",") if h), res


def infer_hparams(state: dict[str, np.ndarray], src: str) -> dict[str, Any]:
    """Architecture from tensor shapes (port layout: Linear (out, in), Conv1d (out, in, K))."""
    def get(k):
        if k not in state:
            raise ConvertError(f"{src}: not an alphagenome-pytorch state dict (no {k})")
        return state[k].shape

    embed = get("encoder.dna_embedder.conv1.weight")
    num_down = len({k.split(".")[2] for k in state if k.startswith("encoder.down_blocks.")})
    depth = len({k.split(".")[2] for k in state if k.startswith("tower.blocks.")})
    pair_heads = get("tower.blocks.0.pair_update.seq2pair.linear_pair.weight")[1]
    heads: dict[str, list] = {}
    for k, v in state.items():
        m = re.fullmatch(r"heads\.(\w+)\.convs\.(\d+)\.weight", k)
        if m:
            h = heads.setdefault(m.group(1), [m.group(1), v.shape[1], [], m.group(1) in SQUASHED])
            h[2] = sorted(h[2] + [int(m.group(2))])
    if not heads:
        raise ConvertError(f"{src}: no track heads (heads.NAME.convs.RES.weight)")
    return dict(
        embed_dim=embed[0], first_kernel=embed[2],
        channel_step=get("encoder.down_blocks.0.block1.conv.weight")[0] - embed[0],
        conv_kernel=get("encoder.down_blocks.0.block1.conv.weight")[2],
        num_down=num_down, depth=depth,
        q_heads=get("tower.blocks.0.attn_bias.proj.weight")[0],
        qk_dim=get("tower.blocks.0.mha.norm_q.weight")[0],
        v_dim=get("tower.blocks.0.mha.norm_v.weight")[0],
        pair_dim=get("tower.blocks.0.attn_bias.norm.weight")[0], pair_heads=pair_heads,
        pair_head_dim=get("tower.blocks.0.pair_update.seq2pair.linear_q.weight")[0] // pair_heads,
        num_organisms=get("organism_embed.weight")[0],
        heads=tuple((n, int(t), tuple(r), s) for n, t, r, s in heads.values()),
    )


def _torch_key(key: str) -> str:
    *parents, leaf = key.split("/")
    return ".".join(parents + [_LEAF.get(leaf, leaf)])


def _to_veff(key: str, v: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    leaf = key.rsplit("/", 1)[-1]
    if leaf == "kernel":
        if key.startswith("heads/"):
            v = v.transpose(0, 2, 1)          # (org, out, in) -> (org, in, out)
        elif v.ndim == 3:
            v = v.transpose(2, 1, 0)          # (out, in, K) -> (K, in, out)
            if len(want) == 2:
                v = v[0]                      # k1 conv as a linear map
        else:
            v = v.T                           # (out, in) -> (in, out)
    elif v.shape != want and v.size == int(np.prod(want)):
        v = v.reshape(want)                   # conv scale (out,1,1); q/k_r_bias (1,1,H,C)
    return v


def state_to_params(state: dict[str, np.ndarray], cfg, src: str) -> tuple[dict, list[str]]:
    """Port state dict -> veff params for ``cfg`` (strict); also returns the dropped keys."""
    from veff.models import alphagenome as ag

    expected = ag.abstract_params(cfg)
    want = _shape_tree(expected)
    found, used = {}, set()
    for key, shape in want.items():
        tk = _torch_key(key)
        if tk in state:
            found[key] = _to_veff(key, state[tk], shape)
            used.add(tk)
    kept = set(cfg.output_heads)
    dropped = sorted(k for k in state if k not in used and (
        k.startswith(LEFT_OUT) or (k.startswith("heads.") and k.split(".")[1] not in kept)))
    unexpected = sorted(set(state) - used - set(dropped))
    missing = sorted(_torch_key(k) for k in want if k not in found)
    problems = [f"{what} {len(ks)}: {', '.join(ks[:40])}{', …' if len(ks) > 40 else ''}"
                for what, ks in (("missing", missing), ("unexpected", unexpected)) if ks]
    if problems:
        raise ConvertError(f"{src}: weights do not match the model; " + "; ".join(problems))
    return assign(expected, found, source=src), dropped


def read(source: str | Path, *, head: str | None = None, window_len: int | None = None,
         trust_pickle: bool = False) -> Converted:
    from veff.models.alphagenome_config import AlphaGenomeConfig

    src = str(source)
    state = load_state(source, trust_pickle)
    hp = infer_hparams(state, src)
    organism, out_heads, res = parse_head(head, hp["num_organisms"])
    heads_all = hp.pop("heads")
    keep = tuple(h for h in heads_all if h[0] in out_heads)
    try:
        cfg = AlphaGenomeConfig(window_len=window_len or 1_048_576, heads=keep or heads_all,
                                output_heads=out_heads, resolution=res, organism=organism, **hp)
    except ValueError as e:
        raise ConvertError(f"{src}: {e}") from None
    params, dropped = state_to_params(state, cfg, src)
    facts = {"window_len": cfg.window_len, "output_len": cfg.output_len,
             "bin_size": cfg.bin_size, "organism": organism,
             "dropped": sorted({".".join(k.split(".")[:2]) for k in dropped})}
    tracks = [{"name": f"{n}_{i}", "head": n} for n in out_heads
              for i in range(cfg.head_dict[n][1])]
    return Converted(arch="alphagenome", config=cfg.to_dict(), params=params, facts=facts,
                     tracks=tracks)
