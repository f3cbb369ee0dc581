"""veff's AlphaGenome vs alphagenome-pytorch 0.3.1 (the PyTorch port of
google-deepmind/alphagenome_research; the Haiku research code itself is GitHub-only and
needs the `alphagenome` package, so it cannot run here), every parameter re-randomised,
float32 on both sides, veff at matmul precision "highest".

* blocks: the port's own modules (ConvBlock, DownResBlock, UpResBlock, PairUpdateBlock,
  AttentionBiasBlock, MHABlock, MLPBlock, OutputEmbedder, GenomeTracksHead) at reduced
  width, the same input fed to both sides;
* whole model: a reduced AlphaGenome assembled from the port's modules under the port's
  state-dict names (its SequenceEncoder/Decoder/TransformerTower fix the published widths,
  and DownResBlock a 128-channel step, so the test composes them as
  AlphaGenome._compute_embeddings_ncl does), saved with torch.save and converted by
  `veff convert --format alphagenome-pytorch`'s reader; every stage compared.

The port uses erf GELU in the pair path where the research code's jax.nn.gelu is the tanh
form; veff's default is the research code's, ``pair_gelu="erf"`` reproduces the port.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("alphagenome_pytorch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from alphagenome_pytorch import attention as A  # noqa: E402
from alphagenome_pytorch import convolutions as C  # noqa: E402
from alphagenome_pytorch import embeddings as E  # noqa: E402
from alphagenome_pytorch import heads as H  # noqa: E402
from jax import lax  # noqa: E402


from veff.checkpoint import flatten, unflatten  # noqa: E402
from veff.convert import alphagenome as conv  # noqa: E402
from veff.convert.common import ConvertError  # noqa: E402
from veff.models import alphagenome as ag  # noqa: E402
from veff.models import alphagenome_config as agc  # noqa: E402

HI = lax.Precision.HIGHEST
REL = 2e-5


def close(name, got, want, rel=REL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    print(f"{name:24} max|diff| {err:.2e}  max|ref| {scale:.2e}")
    assert err <= rel * scale + 1e-6, (name, err, scale)


def randomise(module, seed):
    """Every parameter and buffer drawn again (a fresh port has unit norms, zero biases
    and zero attention-bias projections, which would hide bugs): matrices N(0, 1/fan_in),
    norm scales, residual scales, running variances and track means uniform around 1,
    everything else N(0, 0.1²)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "weight" and p.ndim >= 2:
                fan_in = p.shape[-1] if ".convs." in name else int(np.prod(p.shape[1:]))
                new = torch.randn(p.shape, generator=g) / np.sqrt(fan_in)
            elif leaf in ("weight", "scale", "residual_scale") or ".residual_scales." in name:
                new = 0.5 + torch.rand(p.shape, generator=g)
            else:
                new = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(new)
        for name, b in module.named_buffers():
            if name.endswith(("running_var", "track_means")):
                b.copy_(0.5 + 1.5 * torch.rand(b.shape, generator=g))


def sub_params(module, shapes, prefix=""):
    """The module's tensors -> veff params for the shape tree ``shapes`` (converter rules)."""
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    out = {}
    for key, shape in flatten(jax.tree.map(np.zeros, shapes, is_leaf=ag._is_shape)).items():
        out[key] = jnp.asarray(conv._to_veff(prefix + key, sd[conv._torch_key(key)], shape.shape))
    return unflatten(out)


def nlc(t):  # torch NCL -> numpy NLC
    return t.detach().numpy().transpose(0, 2, 1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("cin,cout,k", [(6, 10, 5), (10, 7, 1)])
def test_conv_block(cin, cout, k):
    m = C.ConvBlock(cin, cout, k).eval()
    randomise(m, 1)
    x = torch.randn(2, cin, 40)
    p = sub_params(m, agc._conv_block(cin, cout, k))
    close(f"ConvBlock k{k}", ag.conv_block(jnp.asarray(nlc(x)), p, HI), nlc(m(x)))


def test_down_and_up_res_blocks():
    down = C.DownResBlock(6).eval()  # the port's fixed 128-channel step: 6 -> 134
    randomise(down, 2)
    x = torch.randn(1, 6, 32)
    shapes = {"block1": agc._conv_block(6, 134, 5), "block2": agc._conv_block(134, 134, 5)}
    close("DownResBlock", ag.down_res_block(jnp.asarray(nlc(x)), sub_params(down, shapes), HI),
          nlc(down(x)))
    up = C.UpResBlock(12, 9).eval()
    randomise(up, 3)
    x, skip = torch.randn(1, 12, 16), torch.randn(1, 9, 32)
    shapes = {"residual_scale": (1,), "conv_in": agc._conv_block(12, 9, 5),
              "pointwise": agc._conv_block(9, 9, 1), "conv_out": agc._conv_block(9, 9, 5)}
    got = ag.up_res_block(jnp.asarray(nlc(x)), jnp.asarray(nlc(skip)), sub_params(up, shapes), HI)
    close("UpResBlock", got, nlc(up(x, skip)))


def test_tower_blocks():
    cfg = agc.AlphaGenomeConfig.tiny(pair_gelu="erf")
    d, s = 24, 48
    full = ag.param_shapes(agc.AlphaGenomeConfig.tiny(embed_dim=6, channel_step=3))
    blk = full["tower"]["blocks"]["0"]
    x = torch.randn(2, s, d)
    pu = A.PairUpdateBlock(d).eval()
    randomise(pu, 4)
    pair0 = torch.randn(2, 3, 3, 128)
    got = ag.pair_update(cfg, jnp.asarray(x.numpy()), jnp.asarray(pair0.numpy()),
                         sub_params(pu, blk["pair_update"]), HI)
    close("PairUpdateBlock", got, pu(x, pair0).detach().numpy())
    ab = A.AttentionBiasBlock(128).eval()
    randomise(ab, 5)
    small = ag.attention_bias(cfg, jnp.asarray(pair0.numpy()), sub_params(ab, blk["attn_bias"]), HI)
    full_bias = ab(pair0)
    close("AttentionBiasBlock", jnp.repeat(jnp.repeat(small, 16, 2), 16, 3), full_bias.detach().numpy())
    mh = A.MHABlock(d).eval()
    randomise(mh, 6)
    close("MHABlock", ag.mha(cfg, jnp.asarray(x.numpy()), small, sub_params(mh, blk["mha"]), HI),
          mh(x, full_bias).detach().numpy())
    ml = A.MLPBlock(d).eval()
    randomise(ml, 7)
    close("MLPBlock", ag.mlp(jnp.asarray(x.numpy()), sub_params(ml, blk["mlp"]), HI),
          ml(x).detach().numpy())


# --------------------------------------------------------------------------- whole model


class _Down(C.DownResBlock):
    """The port's DownResBlock with a reduced channel step (its forward pads by 128)."""

    def __init__(self, cin, step):
        torch.nn.Module.__init__(self)
        self.step = step
        self.block1 = C.ConvBlock(cin, cin + step, kernel_size=5)
        self.block2 = C.ConvBlock(cin + step, cin + step, kernel_size=5)

    def forward(self, x):
        out = self.block1(x) + torch.nn.functional.pad(x, (0, 0, 0, self.step))
        return out + self.block2(out)


def torch_reference(cfg):
    nn = torch.nn
    ch, d, org = cfg.channels, cfg.dim, cfg.num_organisms
    m = nn.Module()
    m.encoder = nn.Module()
    m.encoder.dna_embedder = nn.Module()
    m.encoder.dna_embedder.conv1 = nn.Conv1d(4, ch[0], 15, padding="same")
    m.encoder.dna_embedder.block = C.ConvBlock(ch[0], ch[0], 5)
    m.encoder.down_blocks = nn.ModuleList(_Down(c, cfg.channel_step) for c in ch[:-1])
    m.organism_embed = nn.Embedding(org, d)
    m.tower = nn.Module()
    m.tower.blocks = nn.ModuleList(nn.ModuleDict({
        "pair_update": A.PairUpdateBlock(d) if i % 2 == 0 else None,
        "attn_bias": A.AttentionBiasBlock(128), "mha": A.MHABlock(d), "mlp": A.MLPBlock(d)})
        for i in range(cfg.depth))
    m.decoder = nn.Module()
    ins = [ch[-1]] + list(ch[::-1][:-1])
    m.decoder.up_blocks = nn.ModuleList(C.UpResBlock(i, s) for i, s in zip(ins, ch[::-1]))
    m.embedder_128bp = E.OutputEmbedder(d, 2 * d, org)
    m.embedder_1bp = E.OutputEmbedder(ch[0], d, org)
    m.embedder_1bp.project_skip = nn.Conv1d(2 * d, d, 1, bias=False)
    m.embedder_pair = E.OutputPair(128, org)  # left out by veff; dropped by the converter
    m.heads = nn.ModuleDict({n: H.GenomeTracksHead({1: d, 128: 2 * d}, t, list(r), org, sq)
                             for n, t, r, sq in cfg.heads})
    return m.eval()


def torch_forward(m, x, org):
    """AlphaGenome._compute_embeddings_ncl + the track heads, recording every stage."""
    rec = {}
    h = m.encoder.dna_embedder.conv1(x.transpose(1, 2))
    h = h + m.encoder.dna_embedder.block(h)
    skips = [h]
    pool = lambda t: torch.nn.functional.max_pool1d(t, 2)  # noqa: E731
    h = pool(h)
    for blk in m.encoder.down_blocks:
        h = blk(h)
        skips.append(h)
        h = pool(h)
    for i, s in enumerate(skips):
        rec[f"encoder/bin_{2 ** i}"] = nlc(s)
    h = h.transpose(1, 2) + m.organism_embed(org)[:, None]
    rec["trunk"] = h.detach().numpy()
    pair = None
    for i, b in enumerate(m.tower.blocks):
        if b["pair_update"] is not None:
            pair = b["pair_update"](h, pair)
        h = h + b["mha"](h, b["attn_bias"](pair))
        h = h + b["mlp"](h)
        rec[f"tower/{i}"], rec[f"pair/{i}"] = h.detach().numpy(), pair.detach().numpy()
    t = h.transpose(1, 2)
    e128 = m.embedder_128bp(t, org)
    dec = t
    for blk, skip in zip(m.decoder.up_blocks, skips[::-1]):
        dec = blk(dec, skip)
    rec["decoder"] = nlc(dec)
    e1 = m.embedder_1bp(dec, org, skip_x=e128)
    rec["emb_128"], rec["emb_1"] = nlc(e128), nlc(e1)
    for name, head in m.heads.items():
        for res, y in head({1: e1, 128: e128}, org).items():
            rec[f"heads/{name}/{res}"] = y.detach().numpy()
    return rec


def test_whole_model_through_converter(tmp_path):
    cfg = agc.AlphaGenomeConfig.tiny(pair_gelu="erf", organism=1)
    m = torch_reference(cfg)
    randomise(m, 11)
    path = tmp_path / "ag.pt"
    torch.save(m.state_dict(), path)
    res = conv.read(path, head="mouse:atac,rna_seq@128", window_len=cfg.window_len)
    assert res.facts["dropped"] == ["embedder_pair.norm", "embedder_pair.organism_embed",
                                    "heads.chip_tf"]
    got_cfg = agc.AlphaGenomeConfig.from_dict({**res.config, "pair_gelu": "erf"})
    assert got_cfg.channels == cfg.channels and got_cfg.organism == 1
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, cfg.window_len)), 4).float()
    with torch.no_grad():
        want = torch_forward(m, x, torch.tensor([1]))
    full_cfg = agc.AlphaGenomeConfig.tiny(pair_gelu="erf", organism=1)
    params = conv.state_to_params({k: v.numpy() for k, v in m.state_dict().items()},
                                  full_cfg, "ref")[0]
    got = jax.jit(lambda p, x: ag.apply(p, x, config=full_cfg, precision=HI,
                                        return_intermediates=True))(params, jnp.asarray(x.numpy()))
    for key in want:
        close(key, got[key], want[key])
    # the converted checkpoint's own heads give the same tracks
    out = ag.apply(jax.tree.map(jnp.asarray, res.params), jnp.asarray(x.numpy()),
                   config=got_cfg, precision=HI)["tracks"]
    close("tracks", out, np.concatenate([want["heads/atac/128"], want["heads/rna_seq/128"]], -1))


def test_converter_is_strict(tmp_path):
    cfg = agc.AlphaGenomeConfig.tiny()
    m = torch_reference(cfg)
    sd = m.state_dict()
    sd.pop("tower.blocks.1.mha.norm_q.weight")
    sd["tower.blocks.0.mha.extra"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ConvertError, match=r"missing 1: tower\.blocks\.1\.mha\.norm_q\.weight; "
                                           r"unexpected 1: tower\.blocks\.0\.mha\.extra"):
        conv.read(tmp_path / "bad.pt", head="atac", window_len=cfg.window_len)
    with pytest.raises(ConvertError, match="no 128 bp|no 1 bp|resolution"):
        conv.read(tmp_path / "bad.pt", head="chip_tf@1", window_len=cfg.window_len)
