"""Borzoi's shape (:class:`BorzoiConfig`) and its reading from baskerville ``params.json``.

The forward pass lives in :mod:`veff.models.borzoi`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np


class BorzoiConfigError(ValueError):
    """A Borzoi configuration or params.json that veff cannot build."""


def _round_filters(x: float, divisible_by: int) -> int:
    # baskerville res_tower ``_round``: numpy rounds half to even, keep that.
    return int(np.round(x / divisible_by) * divisible_by)


def res_tower_filters(filters_init: int, filters_end: int, repeat: int,
                      divisible_by: int = 1) -> tuple[int, ...]:
    """baskerville ``res_tower`` widths: geometric from init to end, rounded per block."""
    if repeat < 2:
        return (_round_filters(filters_init, divisible_by),) * repeat
    mult = np.exp(np.log(filters_end / filters_init) / (repeat - 1))
    out, f = [], float(filters_init)
    for _ in range(repeat):
        out.append(_round_filters(f, divisible_by))
        f *= mult
    return tuple(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BorzoiConfig:
    window_len: int
    conv_dna_filters: int
    res_filters: tuple[int, ...]
    num_heads: int
    key_size: int
    value_size: int
    num_layers: int
    ffn_dim: int
    crop_bins: int  # trimmed from EACH side of the U-net output (Keras Cropping1D)
    heads: tuple[tuple[str, int], ...]  # (name, num_tracks); the first is the default
    final_filters: int | None = None  # conv_nac before the heads (1920 in Borzoi)
    conv_dna_kernel: int = 15
    res_kernel: int = 5
    num_position_features: int = 32
    position_basis_length: int | None = None
    num_unet: int = 2
    unet_kernel: int = 3
    unet_upsample_conv: bool = True
    # "relative" (Borzoi: Transformer-XL relative positions) or "rotary" (Flashzoi: rotary
    # positions on the first rotary_dim dims of each head, num_kv_heads key/value heads)
    attention: str = "relative"
    num_kv_heads: int | None = None
    rotary_dim: int = 128
    rotary_base: float = 20000.0

    def __post_init__(self):
        object.__setattr__(self, "res_filters", tuple(int(f) for f in self.res_filters))
        object.__setattr__(self, "heads", tuple((str(n), int(t)) for n, t in self.heads))
        ints = ("window_len", "conv_dna_filters", "num_heads", "key_size", "value_size",
                "num_layers", "ffn_dim", "crop_bins", "conv_dna_kernel", "res_kernel",
                "num_position_features", "num_unet", "unet_kernel")
        for f in ints:
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise BorzoiConfigError(f"BorzoiConfig.{f} must be a non-negative int, got {v!r}")
        if not self.res_filters or min(self.res_filters) < 1:
            raise BorzoiConfigError("BorzoiConfig.res_filters must be positive widths")
        if not 0 <= self.num_unet <= len(self.res_filters):
            raise BorzoiConfigError(
                f"num_unet={self.num_unet} needs that many res-tower blocks "
                f"(have {len(self.res_filters)})")
        if self.num_position_features % 2:
            raise BorzoiConfigError("num_position_features must be even (mask + signed mask)")
        for k in ("conv_dna_kernel", "res_kernel", "unet_kernel"):
            if getattr(self, k) % 2 == 0:
                raise BorzoiConfigError(f"{k} must be odd ('same' padding is then symmetric)")
        if not self.heads:
            raise BorzoiConfigError("BorzoiConfig.heads must name at least one head")
        if len({n for n, _ in self.heads}) != len(self.heads):
            raise BorzoiConfigError(f"duplicate head names in {self.heads}")
        pools = self.num_pools
        if self.window_len <= 0 or self.window_len % (2**pools):
            raise BorzoiConfigError(
                f"window_len {self.window_len} must be a positive multiple of 2**{pools} = "
                f"{2**pools} (conv_dna and every res-tower block halve the length)")
        if self.output_len <= 0:
            raise BorzoiConfigError(
                f"window_len {self.window_len} gives {self.window_len // self.bin_size} bins, "
                f"too few to crop {self.crop_bins} from each side")
        if self.position_basis_length is not None and self.position_basis_length < 1:
            raise BorzoiConfigError("position_basis_length must be positive or None")
        self._check_attention()

    def _check_attention(self) -> None:
        if self.attention == "relative":
            return
        if self.attention != "rotary":
            raise BorzoiConfigError(f"attention {self.attention!r}: 'relative' or 'rotary'")
        H, kv, D = self.num_heads, self.num_kv_heads, self.dim
        if H < 1 or D % H or self.key_size != D // H or self.value_size != D // H:
            raise BorzoiConfigError(f"rotary attention needs key_size = value_size = width/"
                                    f"heads ({D}/{H}), got {self.key_size}, {self.value_size}")
        if not isinstance(kv, int) or kv < 1 or H % kv:
            raise BorzoiConfigError(f"num_kv_heads {kv!r} must divide num_heads {H}")
        if self.rotary_dim < 2 or self.rotary_dim % 2 or self.rotary_dim > self.key_size:
            raise BorzoiConfigError(f"rotary_dim {self.rotary_dim} must be even and at most "
                                    f"the head size {self.key_size}")
        if not float(self.rotary_base) > 1:
            raise BorzoiConfigError(f"rotary_base {self.rotary_base} must be > 1")

    # ---- derived facts
    @property
    def num_pools(self) -> int:
        return 1 + len(self.res_filters)

    @property
    def dim(self) -> int:
        return self.res_filters[-1]

    @property
    def transformer_len(self) -> int:
        return self.window_len // 2**self.num_pools

    @property
    def bin_size(self) -> int:
        return 2 ** (self.num_pools - self.num_unet)

    @property
    def output_len(self) -> int:
        return self.window_len // self.bin_size - 2 * self.crop_bins

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.heads)

    def num_tracks(self, head: str) -> int:
        return dict(self.heads)[head]

    # ---- presets
    @classmethod
    def original(cls, **overrides: Any) -> "BorzoiConfig":
        """Published Borzoi (borzoi-pytorch / calico params_pred.json, 6,144-bin crop)."""
        kw = dict(
            window_len=524_288, conv_dna_filters=512,
            res_filters=res_tower_filters(608, 1536, 6, 32),  # 608 736 896 1056 1280 1536
            num_heads=8, key_size=64, value_size=192, num_layers=8, ffn_dim=3072,
            crop_bins=5120, final_filters=1920, heads=(("human", 7611), ("mouse", 2608)),
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def flashzoi(cls, **overrides: Any) -> "BorzoiConfig":
        """Flashzoi (Hingerl et al. 2025; borzoi-pytorch ``flashed``): Borzoi's trunk with
        rotary grouped-query attention: 8 query heads of 192, 4 key/value heads, rotary on
        the first 128 dims of each head, base 20000."""
        kw = dict(attention="rotary", num_kv_heads=4, key_size=192, value_size=192,
                  rotary_dim=128, rotary_base=20000.0)
        return cls.original(**{**kw, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> "BorzoiConfig":
        """Borzoi's layout (6 res blocks, 2 U-net stages, 32 bp bins) with small primes."""
        kw = dict(
            window_len=16_384, conv_dna_filters=13, res_filters=(17, 19, 23, 29, 31, 37),
            num_heads=3, key_size=11, value_size=7, num_layers=2, ffn_dim=74,
            crop_bins=37, final_filters=43, heads=(("human", 47), ("mouse", 53)),
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "BorzoiConfig":
        """Borzoi's layout at 524,288 bp with tiny primes: full-length tests on a CPU."""
        kw = dict(
            window_len=524_288, conv_dna_filters=3, res_filters=(5, 7, 5, 7, 11, 13),
            num_heads=2, key_size=3, value_size=5, num_layers=1, ffn_dim=26,
            crop_bins=5120, final_filters=19, heads=(("human", 23), ("mouse", 29)),
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def from_baskerville_params(cls, params: str | Path | dict[str, Any], *,
                                window_len: int | None = None) -> "BorzoiConfig":
        """A baskerville ``params.json`` (path or parsed dict) -> config.

        Accepts exactly the Borzoi family: conv_dna, res_tower (num_convs 1), one
        transformer_tower, unet_conv stages, Cropping1D, optional conv_nac, ``final`` heads.
        Anything else raises BorzoiConfigError naming the block.
        """
        return _config_from_params(params, window_len=window_len)

    # ---- serialisation (checkpoint config.json)
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["res_filters"] = list(self.res_filters)
        d["heads"] = [[n, t] for n, t in self.heads]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BorzoiConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise BorzoiConfigError(f"unknown Borzoi config fields: {', '.join(extra)}")
        return cls(**d)


# ----------------------------------------------------------------------------- params.json
_ACTIVATIONS_OK = ("gelu",)


def _config_from_params(params: str | Path | dict[str, Any], *,
                        window_len: int | None) -> BorzoiConfig:
    if not isinstance(params, dict):
        path = Path(params)
        try:
            params = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BorzoiConfigError(f"{path}: cannot read params.json ({e})") from None
    model = params.get("model", params)
    if "trunk" not in model:
        raise BorzoiConfigError("params.json has no model.trunk")
    act = model.get("activation", "relu")
    if act not in _ACTIVATIONS_OK:
        raise BorzoiConfigError(f"model activation {act!r} is not supported (Borzoi uses gelu)")
    if model.get("norm_type") not in ("batch", "batch-sync"):
        raise BorzoiConfigError(f"model norm_type {model.get('norm_type')!r}: only batch norm "
                                "is supported")
    kw: dict[str, Any] = {"window_len": int(window_len or model["seq_length"])}
    blocks = list(model["trunk"])
    names = [b.get("name") for b in blocks]
    expected_order = "conv_dna, res_tower, transformer_tower, unet_conv..., Cropping1D[, conv_nac]"

    def need(i: int, name: str) -> dict[str, Any]:
        if i >= len(blocks) or blocks[i].get("name") != name:
            raise BorzoiConfigError(f"trunk block {i} is {names[i] if i < len(names) else None!r}"
                                    f", expected {name!r} (supported: {expected_order})")
        return blocks[i]

    def check(block: dict[str, Any], key: str, allowed: tuple, default: Any) -> None:
        if block.get(key, default) not in allowed:
            raise BorzoiConfigError(f"trunk block {block['name']}: {key}={block.get(key)!r} "
                                    f"is not supported (allowed: {allowed})")

    b = need(0, "conv_dna")
    check(b, "pool_size", (2,), 1)
    check(b, "norm_type", (None,), model.get("norm_type"))
    check(b, "activation", ("linear", None), act)
    check(b, "residual", (False,), False)
    check(b, "stride", (1,), 1)
    kw["conv_dna_filters"] = int(b["filters"])
    kw["conv_dna_kernel"] = int(b.get("kernel_size", 15))

    b = need(1, "res_tower")
    check(b, "num_convs", (1,), 2)
    check(b, "pool_size", (2,), 2)
    check(b, "pool_type", ("max",), "max")
    if "filters_mult" in b and "filters_end" not in b:
        mult, f0, out = float(b["filters_mult"]), float(b["filters_init"]), []
        for _ in range(int(b["repeat"])):
            out.append(_round_filters(f0, int(b.get("divisible_by", 1))))
            f0 *= mult
        kw["res_filters"] = tuple(out)
    else:
        kw["res_filters"] = res_tower_filters(int(b["filters_init"]), int(b["filters_end"]),
                                              int(b.get("repeat", 1)),
                                              int(b.get("divisible_by", 1)))
    kw["res_kernel"] = int(b.get("kernel_size", 1))
    dim = kw["res_filters"][-1]

    b = need(2, "transformer_tower")
    check(b, "block_type", ("transformer",), "transformer")
    check(b, "qkv_width", (1,), 1)
    check(b, "content_position_bias", (True,), True)
    if b.get("out_size") not in (None, dim):
        raise BorzoiConfigError("transformer_tower out_size must equal the tower width")
    heads = int(b.get("heads", 1))
    if dim % heads:
        raise BorzoiConfigError(f"transformer heads {heads} do not divide width {dim}")
    kw["num_heads"] = heads
    kw["key_size"] = int(b["key_size"])
    kw["value_size"] = dim // heads  # baskerville: value_size = out_size // heads
    kw["num_layers"] = int(b.get("repeat", 2))
    expansion = float(b.get("dense_expansion", 2.0))
    if expansion == 0:
        raise BorzoiConfigError("transformer dense_expansion 0 (no FFN) is not supported")
    kw["ffn_dim"] = int(expansion * dim)
    npf = b.get("num_position_features")
    if npf is None:  # baskerville default: value_size rounded down to a multiple of 2
        npf = (kw["value_size"] // 2) * 2
    kw["num_position_features"] = int(npf)
    if b.get("seqlen_train") is not None:
        kw["position_basis_length"] = int(b["seqlen_train"])

    i, unets = 3, []
    while i < len(blocks) and blocks[i].get("name") == "unet_conv":
        check(blocks[i], "stride", (2,), 2)
        unets.append(blocks[i])
        i += 1
    if unets:
        ks = {int(u.get("kernel_size", 1)) for u in unets}
        ups = {bool(u.get("upsample_conv", False)) for u in unets}
        if len(ks) > 1 or len(ups) > 1:
            raise BorzoiConfigError("all unet_conv blocks must share kernel_size/upsample_conv")
        kw["unet_kernel"], kw["unet_upsample_conv"] = ks.pop(), ups.pop()
    kw["num_unet"] = len(unets)

    b = need(i, "Cropping1D")
    crop = b.get("cropping", 0)
    if isinstance(crop, (list, tuple)):
        if len(set(crop)) != 1:
            raise BorzoiConfigError(f"asymmetric Cropping1D {crop} is not supported")
        crop = crop[0]
    kw["crop_bins"] = int(crop)
    i += 1
    if i < len(blocks) and blocks[i].get("name") == "conv_nac":
        check(blocks[i], "kernel_size", (1,), 1)
        check(blocks[i], "residual", (False,), False)
        kw["final_filters"] = int(blocks[i]["filters"])
        i += 1
    if i != len(blocks):
        raise BorzoiConfigError(f"unsupported trunk block {names[i]!r} after the crop")

    head_keys = sorted((k for k in model if k.startswith("head")), key=_natural_key)
    heads_out = []
    for k in head_keys:
        hb = model[k]
        if isinstance(hb, list):
            if len(hb) != 1:
                raise BorzoiConfigError(f"{k}: multi-block heads are not supported")
            hb = hb[0]
        if hb.get("name") != "final" or hb.get("activation", "linear") != "softplus":
            raise BorzoiConfigError(f"{k}: only a 'final' dense head with softplus is supported")
        if hb.get("flatten"):
            raise BorzoiConfigError(f"{k}: flattened heads are not supported")
        name = k[len("head_"):] if k.startswith("head_") else ("human" if k == "head" else k)
        heads_out.append((name, int(hb["units"])))
    if not heads_out:
        raise BorzoiConfigError("params.json defines no head")
    kw["heads"] = tuple(heads_out)
    return BorzoiConfig(**kw)


def _natural_key(s: str) -> list[Any]:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
