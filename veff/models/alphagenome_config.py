"""AlphaGenome's hyperparameters (Avsec et al. 2025; google-deepmind/alphagenome_research).

The published model: 1,048,576 bp one-hot input; a convolutional encoder at 1 bp (768
channels) that max-pools by 2 seven times while adding 128 channels per stage (1536 at
128 bp); a 9-block transformer over the 8,192 128-bp tokens whose attention logits get a
bias from a pair representation (every 16 tokens, 128 features) updated in the even
blocks; a U-Net decoder back to 1 bp with the encoder's skips; organism-specific output
embeddings (3072 at 128 bp, 1536 at 1 bp) and linear track heads per organism.

Every width is a field here so tests can run a reduced model; defaults are the published
ones. The fixed inner widths of the attention (8 query heads of 128, one shared key of 128
and value of 192, 32 pair heads of 128) are fields too; the PyTorch port hard-codes them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The published heads: (name, tracks per organism, resolutions, RNA-style squashing).
# Track counts are the padded per-organism widths of the released weights.
PUBLISHED_HEADS: tuple[tuple[str, int, tuple[int, ...], bool], ...] = (
    ("atac", 256, (1, 128), False),
    ("dnase", 384, (1, 128), False),
    ("procap", 128, (1, 128), False),
    ("cage", 640, (1, 128), False),
    ("rna_seq", 768, (1, 128), True),
    ("chip_tf", 1664, (128,), False),
    ("chip_histone", 1152, (128,), False),
)
ORGANISMS = ("human", "mouse")
TOKEN_BIN = 128  # bp per transformer token: 2 ** num_stages


@dataclasses.dataclass(frozen=True, kw_only=True)
class AlphaGenomeConfig:
    window_len: int = 1_048_576
    embed_dim: int = 768          # channels at 1 bp
    channel_step: int = 128       # channels added per encoder stage
    num_down: int = 6             # DownResBlocks (bins 2 .. 64); one more pool to 128 bp
    first_kernel: int = 15
    conv_kernel: int = 5
    depth: int = 9
    q_heads: int = 8
    qk_dim: int = 128
    v_dim: int = 192
    max_rel: int = 8192           # RoPE max position (1 Mb / 128 bp)
    pair_pool: int = 16
    pair_dim: int = 128
    pair_heads: int = 32
    pair_head_dim: int = 128
    num_organisms: int = 2
    # Output heads: tuple of (name, tracks, resolutions, squashing).
    heads: tuple[tuple[str, int, tuple[int, ...], bool], ...] = PUBLISHED_HEADS
    # What the veff handle returns: these heads' tracks (concatenated, in this order) at
    # this resolution, for this organism.
    output_heads: tuple[str, ...] = ("dnase",)
    resolution: int = 128
    organism: int = 0
    # jax.nn.gelu in the pair path of the research code is the tanh approximation; the
    # PyTorch port (alphagenome-pytorch 0.3.1) uses erf GELU there. "tanh" is the model as
    # trained; "erf" reproduces the port.
    pair_gelu: str = "tanh"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(
            (str(n), int(t), tuple(int(r) for r in res), bool(sq))
            for n, t, res, sq in self.heads))
        object.__setattr__(self, "output_heads", tuple(self.output_heads))
        unit = TOKEN_BIN * self.pair_pool
        if self.window_len <= 0 or self.window_len % unit:
            raise ValueError(f"window_len {self.window_len} must be a positive multiple of "
                             f"{unit} (128 bp tokens, pooled by {self.pair_pool} for the pair "
                             "representation)")
        if self.num_down + 1 != 7:
            raise ValueError("AlphaGenome downsamples 7 times (1 bp -> 128 bp); num_down must be 6")
        if self.q_heads <= 0 or self.v_dim <= 0 or self.qk_dim <= 0 or self.qk_dim % 2:
            raise ValueError("q_heads, v_dim must be positive and qk_dim positive and even "
                             "(rotary embeddings rotate pairs)")
        if self.pair_gelu not in ("tanh", "erf"):
            raise ValueError(f"pair_gelu must be 'tanh' or 'erf', not {self.pair_gelu!r}")
        if self.resolution not in (1, 128):
            raise ValueError(f"resolution must be 1 or 128, not {self.resolution}")
        if not 0 <= self.organism < self.num_organisms:
            raise ValueError(f"organism {self.organism} outside 0..{self.num_organisms - 1}")
        names = {h[0]: h for h in self.heads}
        if len(names) != len(self.heads):
            raise ValueError("duplicate head names")
        if not self.output_heads:
            raise ValueError("output_heads is empty")
        for h in self.output_heads:
            if h not in names:
                raise ValueError(f"unknown head {h!r}; heads: {', '.join(names)}")
            if self.resolution not in names[h][2]:
                raise ValueError(f"head {h!r} has no {self.resolution} bp output "
                                 f"(resolutions {names[h][2]})")
        if self.pair_heads > self.max_rel // self.pair_pool:
            raise ValueError("pair_heads must be <= max_rel / pair_pool")

    # ------------------------------------------------------------------ derived
    @property
    def channels(self) -> tuple[int, ...]:
        """Channels at bins 1, 2, 4, .., 64 (encoder skips); the last is the trunk width."""
        return tuple(self.embed_dim + i * self.channel_step for i in range(self.num_down + 1))

    @property
    def dim(self) -> int:
        return self.channels[-1]

    @property
    def num_tokens(self) -> int:
        return self.window_len // TOKEN_BIN

    @property
    def bin_size(self) -> int:
        return self.resolution

    @property
    def output_len(self) -> int:
        return self.window_len // self.resolution

    @property
    def head_dict(self) -> dict[str, tuple[str, int, tuple[int, ...], bool]]:
        return {h[0]: h for h in self.heads}

    @property
    def num_tracks(self) -> int:
        return sum(self.head_dict[h][1] for h in self.output_heads)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["heads"] = [[n, t, list(r), s] for n, t, r, s in self.heads]
        d["output_heads"] = list(self.output_heads)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlphaGenomeConfig":
        if not isinstance(d, dict):
            raise TypeError("config is not a mapping")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown config keys {sorted(extra)}")
        return cls(**d)

    @classmethod
    def tiny(cls, **kw: Any) -> "AlphaGenomeConfig":
        """A reduced model for tests: 6,144 bp (48 tokens, 3 pair positions), 2 blocks,
        encoder widths 8 .. 20. The attention's inner widths stay at the published values
        (the PyTorch port fixes them), which is cheap at 48 tokens."""
        base = dict(window_len=6144, embed_dim=8, channel_step=2, depth=2, num_organisms=2,
                    heads=(("atac", 3, (1, 128), False), ("rna_seq", 2, (1, 128), True),
                           ("chip_tf", 4, (128,), False)),
                    output_heads=("atac", "rna_seq"), resolution=128)
        base.update(kw)
        return cls(**base)


# --------------------------------------------------------------------------- params


def _rms_bn(c):
    return {"scale": (c,), "offset": (c,), "var": (c,)}


def _ln(c):
    return {"scale": (c,), "offset": (c,)}


def _lin(i, o, bias=True):
    return {"kernel": (i, o), "bias": (o,)} if bias else {"kernel": (i, o)}


def _conv_block(cin, cout, k):
    conv = {"kernel": (k, cin, cout), "bias": (cout,), "wscale": (cout,)} if k > 1 else _lin(cin, cout)
    return {"norm": _rms_bn(cin), "conv": conv}


def param_shapes(cfg: AlphaGenomeConfig) -> dict[str, Any]:
    """Nested {name: shape} of every parameter; names follow alphagenome-pytorch's
    state dict (the converter maps each leaf to one tensor there)."""
    ch, d, nf, po = cfg.channels, cfg.dim, cfg.pair_dim, cfg.num_organisms
    ph, pc = cfg.pair_heads, cfg.pair_head_dim

    def block(i):
        b = {
            "attn_bias": {"norm": _rms_bn(nf), "proj": _lin(nf, cfg.q_heads, False)},
            "mha": {"norm": _rms_bn(d), "q_proj": _lin(d, cfg.q_heads * cfg.qk_dim, False),
                    "norm_q": _ln(cfg.qk_dim), "k_proj": _lin(d, cfg.qk_dim, False),
                    "norm_k": _ln(cfg.qk_dim), "v_proj": _lin(d, cfg.v_dim, False),
                    "norm_v": _ln(cfg.v_dim), "final_norm": _rms_bn(d),
                    "linear_embedding": _lin(cfg.q_heads * cfg.v_dim, d)},
            "mlp": {"norm": _rms_bn(d), "fc1": _lin(d, 2 * d), "fc2": _lin(2 * d, d),
                    "final_norm": _rms_bn(d)},
        }
        if i % 2 == 0:
            b["pair_update"] = {
                "seq2pair": {"norm_seq2pair": _ln(d), "linear_q": _lin(d, ph * pc, False),
                             "linear_k": _lin(d, ph * pc, False),
                             "linear_pos_features": _lin(2 * ph, ph * pc),
                             "q_r_bias": (ph, pc), "k_r_bias": (ph, pc),
                             "linear_y_q": _lin(d, nf, False), "linear_y_k": _lin(d, nf, False),
                             "linear_pair": _lin(ph, nf)},
                "row_attn": {"norm": _ln(nf), "linear_q": _lin(nf, nf, False),
                             "linear_k": _lin(nf, nf, False), "linear_v": _lin(nf, nf)},
                "pair_mlp": {"norm": _ln(nf), "linear1": _lin(nf, 2 * nf),
                             "linear2": _lin(2 * nf, nf)},
            }
        return b

    up_in = [ch[-1]] + list(ch[::-1][:-1])
    emb = {1: d, TOKEN_BIN: 2 * d}
    return {
        "encoder": {
            "dna_embedder": {"conv1": {"kernel": (cfg.first_kernel, 4, ch[0]), "bias": (ch[0],)},
                             "block": _conv_block(ch[0], ch[0], cfg.conv_kernel)},
            "down_blocks": {str(i): {"block1": _conv_block(ch[i], ch[i + 1], cfg.conv_kernel),
                                     "block2": _conv_block(ch[i + 1], ch[i + 1], cfg.conv_kernel)}
                            for i in range(cfg.num_down)},
        },
        "organism_embed": {"embedding": (po, d)},
        "tower": {"blocks": {str(i): block(i) for i in range(cfg.depth)}},
        "decoder": {"up_blocks": {str(i): {"residual_scale": (1,),
                                           "conv_in": _conv_block(cin, skip, cfg.conv_kernel),
                                           "pointwise": _conv_block(skip, skip, 1),
                                           "conv_out": _conv_block(skip, skip, cfg.conv_kernel)}
                                  for i, (cin, skip) in enumerate(zip(up_in, ch[::-1]))}},
        "embedder_128bp": {"project_in": _lin(d, 2 * d), "organism_embed": {"embedding": (po, 2 * d)},
                           "norm": _rms_bn(2 * d)},
        "embedder_1bp": {"project_in": _lin(ch[0], d), "organism_embed": {"embedding": (po, d)},
                         "norm": _rms_bn(d), "project_skip": _lin(2 * d, d, False)},
        "heads": {name: {"track_means": (po, t),
                         "convs": {str(r): {"kernel": (po, emb[r], t), "bias": (po, t)} for r in res},
                         "residual_scales": {str(r): (po, t) for r in res}}
                  for name, t, res, _ in cfg.heads},
    }
