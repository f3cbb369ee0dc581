"""BPNet as chromBPNet defines it (bias model and accessibility model), and the combined
chromBPNet (accessibility + frozen bias), as pure functions over a params dict.

Tower (channels-last, every convolution VALID, so lengths shrink and crops are symmetric):

    x = relu(conv_k21(onehot))                                   # L -> L - 20
    for i in 1..n:   c = relu(conv_k3_dilation(2**i)(x))          # len - 2 * 2**i
                     x = crop(x) + c                              # residual AFTER the ReLU
    logits    = centre_crop(conv_k75(x), output_len)             # (B, P), no activation
    logcounts = dense(mean over ALL tower positions of x)        # (B,)

Parameter names mirror the Keras layer names of chromBPNet's bias file, and kernels keep the
Keras layout (K, in, out) / (in, out), so conversion from h5 is a copy.

Combined chromBPNet: profile logits add (bias logits centre-cropped to the accessibility
output length); log counts combine as logaddexp (exp(c) = exp(c_acc) + exp(c_bias)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from veff.checkpoint import Checkpoint, CheckpointError, unflatten
from veff.models.base import ModelHandle

STEM = "bpnet_1st_conv"
PROFILE = "prof_out_precrop"
COUNT = "logcount_predictions"

# Roles a single BPNet plays in chromBPNet; the combined model's params are {role: tree}.
ACCESSIBILITY = "accessibility"
BIAS = "bias"
ROLES = (ACCESSIBILITY, BIAS)


def dilated_name(i: int) -> str:
    """Keras layer name of the i-th dilated conv (1-based, dilation 2**i)."""
    return f"bpnet_{i}conv"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BPNetConfig:
    filters: int
    n_layers: int
    input_len: int = 2114
    output_len: int = 1000
    conv1_kernel: int = 21
    profile_kernel: int = 75

    def __post_init__(self):
        for f in ("filters", "n_layers", "input_len", "output_len", "conv1_kernel", "profile_kernel"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"BPNetConfig.{f} must be an int, got {v!r}")
        if self.filters < 1 or self.n_layers < 0 or self.output_len < 1:
            raise ValueError(f"BPNetConfig: invalid sizes in {self}")
        if self.profile_len < self.output_len:
            raise ValueError(
                f"BPNetConfig: input_len {self.input_len} gives a {self.profile_len}-long profile, "
                f"shorter than output_len {self.output_len}"
            )
        if (self.profile_len - self.output_len) % 2:
            # Keras' symmetric Cropping1D could not produce output_len exactly.
            raise ValueError(
                f"BPNetConfig: profile length {self.profile_len} minus output_len "
                f"{self.output_len} is odd; no symmetric crop gives that output"
            )

    @classmethod
    def chrombpnet(cls, **kw) -> BPNetConfig:
        """chromBPNet's accessibility ("nobias") model: 512 filters, 8 dilated layers."""
        return cls(**{"filters": 512, "n_layers": 8, **kw})

    @classmethod
    def bias(cls, **kw) -> BPNetConfig:
        """chromBPNet's bias model: 128 filters, 4 dilated layers (profile cropped 480/side)."""
        return cls(**{"filters": 128, "n_layers": 4, **kw})

    @classmethod
    def tiny(cls, **kw) -> BPNetConfig:
        """Prime-sized config for tests: transposed kernels fail loudly."""
        return cls(**{"filters": 7, "n_layers": 3, "input_len": 256, "output_len": 128, **kw})

    @property
    def tower_len(self) -> int:
        return self.input_len - (self.conv1_kernel - 1) - sum(2 * 2**i for i in self._dilations())

    @property
    def profile_len(self) -> int:
        """Length of the profile conv output before the centre crop."""
        return self.tower_len - (self.profile_kernel - 1)

    @property
    def profile_crop(self) -> int:
        return (self.profile_len - self.output_len) // 2

    def _dilations(self) -> range:
        return range(1, self.n_layers + 1)

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"BPNetConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- params


def param_shapes(config: BPNetConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """{layer: {"kernel": shape, "bias": shape}}, Keras layout."""
    f = config.filters
    shapes = {STEM: {"kernel": (config.conv1_kernel, 4, f), "bias": (f,)}}
    for i in config._dilations():
        shapes[dilated_name(i)] = {"kernel": (3, f, f), "bias": (f,)}
    shapes[PROFILE] = {"kernel": (config.profile_kernel, f, 1), "bias": (1,)}
    shapes[COUNT] = {"kernel": (f, 1), "bias": (1,)}
    return shapes


def abstract_params(config: BPNetConfig) -> Any:
    """The float32 shape tree that converters must fill exactly (nothing allocated)."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), param_shapes(config),
                        is_leaf=lambda s: isinstance(s, tuple))


def _rng(key: jax.Array | int) -> np.random.Generator:
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data).ravel().tolist())


def init(config: BPNetConfig, key: jax.Array | int = 0) -> dict[str, Any]:
    """Random float32 params, kernels ~ N(0, 1/fan_in) so the residual stack stays O(1),
    biases ~ N(0, 0.01). ``key``: a jax PRNG key or an int seed. For tests and training;
    drawn with numpy because eager jax.random costs one compilation per layer (13 s)."""
    rng = _rng(key)
    out: dict[str, Any] = {}
    for name, leaves in param_shapes(config).items():
        k = leaves["kernel"]
        out[name] = {
            "kernel": jnp.asarray(rng.standard_normal(k) / np.sqrt(np.prod(k[:-1])), jnp.float32),
            "bias": jnp.asarray(0.1 * rng.standard_normal(leaves["bias"]), jnp.float32),
        }
    return out


def init_chrombpnet(acc: BPNetConfig, bias: BPNetConfig, key: jax.Array | int = 0) -> dict[str, Any]:
    rng = _rng(key)
    seeds = rng.integers(0, 2**31, 2)
    return {ACCESSIBILITY: init(acc, int(seeds[0])), BIAS: init(bias, int(seeds[1]))}


# --------------------------------------------------------------------------- forward

_DIMS = ("NWC", "WIO", "NWC")  # channels-last, Keras kernel layout: no transposes anywhere


def _conv(x, p, dilation: int, precision):
    y = lax.conv_general_dilated(
        x, p["kernel"], (1,), "VALID", rhs_dilation=(dilation,), dimension_numbers=_DIMS,
        precision=precision,
    )
    return y + p["bias"]


def forward(
    config: BPNetConfig, params: Any, x: jax.Array, *, precision=lax.Precision.HIGHEST
) -> dict[str, jax.Array]:
    """x: (B, L, 4) one-hot -> {"logits": (B, P), "logcounts": (B,)}.

    Computes in the dtype of the params (the engine picks precision by casting params);
    the one-hot input is cast to it.
    """
    if x.ndim != 3 or x.shape[1] != config.input_len or x.shape[2] != 4:
        raise ValueError(f"BPNet expects (B, {config.input_len}, 4) input, got {x.shape}")
    x = x.astype(params[STEM]["kernel"].dtype)
    h = jax.nn.relu(_conv(x, params[STEM], 1, precision))
    for i in config._dilations():
        d = 2**i
        c = jax.nn.relu(_conv(h, params[dilated_name(i)], d, precision))
        h = h[:, d : h.shape[1] - d] + c
    prof = _conv(h, params[PROFILE], 1, precision)[..., 0]  # (B, profile_len)
    crop = config.profile_crop
    logits = prof[:, crop : crop + config.output_len]
    pooled = jnp.mean(h, axis=1)  # over the WHOLE tower output, as Keras GlobalAvgPool1D
    logcounts = (jnp.matmul(pooled, params[COUNT]["kernel"], precision=precision)
                 + params[COUNT]["bias"])[:, 0]
    return {"logits": logits, "logcounts": logcounts}


def combine(acc_out: dict[str, jax.Array], bias_out: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """chromBPNet's rule: logits add (bias centre-cropped), counts add in linear space."""
    p_acc, p_bias = acc_out["logits"].shape[1], bias_out["logits"].shape[1]
    w = (p_bias - p_acc) // 2
    return {
        "logits": acc_out["logits"] + bias_out["logits"][:, w : w + p_acc],
        "logcounts": jnp.logaddexp(acc_out["logcounts"], bias_out["logcounts"]),
    }


def forward_chrombpnet(
    acc: BPNetConfig, bias: BPNetConfig, params: Any, x: jax.Array, *,
    precision=lax.Precision.HIGHEST,
) -> dict[str, jax.Array]:
    check_combinable(acc, bias)
    return combine(
        forward(acc, params[ACCESSIBILITY], x, precision=precision),
        forward(bias, params[BIAS], x, precision=precision),
    )


def check_combinable(acc: BPNetConfig, bias: BPNetConfig) -> None:
    if acc.input_len != bias.input_len:
        raise ValueError(
            f"chromBPNet: accessibility input_len {acc.input_len} != bias input_len {bias.input_len}"
        )
    if bias.output_len < acc.output_len or (bias.output_len - acc.output_len) % 2:
        raise ValueError(
            f"chromBPNet: bias output_len {bias.output_len} cannot be centre-cropped to the "
            f"accessibility output_len {acc.output_len}"
        )


# --------------------------------------------------------------------------- checkpoints

ARCH_SINGLE = "bpnet"
ARCH_COMBINED = "chrombpnet"


def configs_from_checkpoint(ckpt: Checkpoint) -> dict[str, BPNetConfig]:
    """{"model": cfg} for arch "bpnet" (config is one BPNetConfig dict);
    {"accessibility": cfg, "bias": cfg} for "chrombpnet" (config holds one dict per role)."""
    try:
        if ckpt.arch == ARCH_SINGLE:
            return {"model": BPNetConfig.from_dict(ckpt.config)}
        if ckpt.arch == ARCH_COMBINED:
            return {r: BPNetConfig.from_dict(ckpt.config[r]) for r in ROLES}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"invalid {ckpt.arch} config ({e})") from None
    raise ValueError(f"arch {ckpt.arch!r} is not a BPNet architecture")


def expected_params(ckpt_arch: str, configs: dict[str, BPNetConfig]) -> Any:
    if ckpt_arch == ARCH_SINGLE:
        return abstract_params(configs["model"])
    return {r: abstract_params(configs[r]) for r in ROLES}


def from_checkpoint(ckpt: Checkpoint, *, precision=lax.Precision.HIGHEST) -> ModelHandle:
    """Build the engine's handle for a native "bpnet" or "chrombpnet" checkpoint.

    Params with one extra leading axis on every leaf are folds (num_folds > 1); ``apply``
    is the single-fold function and the engine vmaps it over that axis.
    """
    from veff.convert.common import match_params  # strict tree check, shared with converters

    try:
        configs = configs_from_checkpoint(ckpt)
        if ckpt.arch == ARCH_COMBINED:
            check_combinable(configs[ACCESSIBILITY], configs[BIAS])
    except ValueError as e:
        raise CheckpointError(f"{ckpt.path}: {e}") from None
    expected = expected_params(ckpt.arch, configs)
    params, num_folds = match_params(
        expected, unflatten(ckpt.params), source=str(ckpt.path), error=CheckpointError
    )
    params = jax.tree.map(jnp.asarray, params)

    from veff.models import bpnet_incremental as inc  # imports this module

    if ckpt.arch == ARCH_SINGLE:
        cfg = configs["model"]

        def apply(p, x):
            return forward(cfg, p, x, precision=precision)

        def apply_pair(p, x_ref, x_alt, center):
            return inc.forward_pair(cfg, p, x_ref, x_alt, center, precision=precision)
    else:
        cfg = configs[ACCESSIBILITY]
        bias_cfg = configs[BIAS]

        def apply(p, x):
            return forward_chrombpnet(cfg, bias_cfg, p, x, precision=precision)

        def apply_pair(p, x_ref, x_alt, center):
            return inc.forward_pair_chrombpnet(cfg, bias_cfg, p, x_ref, x_alt, center,
                                               precision=precision)

    name = ckpt.metadata.get("name") or (ckpt.path.name if ckpt.path else ckpt.arch)
    tracks = ckpt.tracks or [{"name": ckpt.metadata.get("role", ACCESSIBILITY)}]
    return ModelHandle(
        name=name,
        arch=ckpt.arch,
        kind="profile",
        window_len=cfg.input_len,
        output_len=cfg.output_len,
        tracks=tracks,
        sha256=ckpt.sha256,
        params=params,
        apply=apply,
        apply_pair=apply_pair,
        num_folds=num_folds,
        bin_size=1,
    )
