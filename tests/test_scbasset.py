"""scBasset: parity of both converters (scvi-tools' module on re-randomised weights; an
independent numpy forward of the Keras model), strict mapping, per-cell variant scores next
to the demo chromBPNet in one `veff score`, cell groups and the cell export."""

from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from helpers_scbasset import numpy_forward, random_weights, write_keras_h5
from veff.cli import main
from veff.convert import convert
from veff.convert.common import ConvertError
from veff.convert.scbasset import read_keras, read_scvi
from veff.models import scbasset as sb
from veff.models.registry import load_model

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"


def _onehot(rng, n, L):
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, L))]


def test_tower_widths_of_both_implementations():
    assert sb.tower_widths(layout="keras") == (288, 323, 363, 407, 456, 512)
    assert sb.tower_widths(layout="scvi") == (288, 323, 362, 406, 456, 512)
    assert sb.ScBassetConfig(n_cells=3).final_len == 7  # 1344 -> 448 -> 7
    assert sb.ScBassetConfig(n_cells=3, pool="scvi").final_len == 7


def test_keras_h5_matches_numpy_forward_block_by_block(tmp_path):
    rng = np.random.default_rng(0)
    w = random_weights(rng)  # 97 bp: SAME pooling pads (97 -> 33 -> 17 -> 9)
    c = read_keras(write_keras_h5(tmp_path / "m.h5", w, offset=8))
    cfg = sb.ScBassetConfig.from_dict(c.config)
    assert (cfg.window_len, cfg.tower_filters, cfg.pool, cfg.final_len) == (97, (7, 6), "keras", 9)
    x = _onehot(rng, 3, 97)
    params = jax.tree.map(np.asarray, c.params)
    h = x
    for i, (name, _, _, k, pool) in enumerate(cfg.blocks):
        h = sb.block(cfg, params[name], h, k, pool, jax.lax.Precision.HIGHEST)
        want = np.stack([numpy_forward(w, xi)["blocks"][i] for xi in x])
        np.testing.assert_allclose(np.asarray(h), want, atol=2e-5, rtol=0)
    ref = [numpy_forward(w, xi) for xi in x]
    np.testing.assert_allclose(np.asarray(sb.embed(cfg, params, x)),
                               np.stack([r["embedding"] for r in ref]), atol=2e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(sb.forward(cfg, params, x)),
                               np.stack([r["normalized"] for r in ref]), atol=2e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(sb.forward(cfg, params, x, intercept=True)),
                               np.stack([r["logits"] for r in ref]), atol=2e-5, rtol=0)


def test_keras_strict_mapping_and_cells(tmp_path):
    w = random_weights(np.random.default_rng(1))
    with pytest.raises(ConvertError, match="not scBasset's layers: .*2 dense"):
        read_keras(write_keras_h5(tmp_path / "x.h5", w, extra_layer=True))
    good = write_keras_h5(tmp_path / "m.h5", w)
    (tmp_path / "few.txt").write_text("a\nb\n")
    with pytest.raises(ConvertError, match="2 cell names for a model of 11 cells"):
        read_keras(good, cells=str(tmp_path / "few.txt"))
    with pytest.raises(ConvertError, match="takes 97 bp, not input_len 1344"):
        read_keras(good, input_len=1344)


def _scvi_module(seed, batch=False):
    torch = pytest.importorskip("torch")
    mod = pytest.importorskip("scvi.external.scbasset._module")
    torch.manual_seed(seed)
    ids = np.array([0, 1, 1, 0, 2, 2, 1, 0, 0, 1, 2]) if batch else None
    m = mod.ScBassetModule(n_cells=11, batch_ids=None if ids is None else torch.tensor(ids)[:, None],
                           n_filters_init=5, n_repeat_blocks_tower=6, filters_mult=1.3,
                           n_filters_pre_bottleneck=3, n_bottleneck_layer=13)
    with torch.no_grad():  # re-randomise everything, BN statistics included
        for n, p in m.named_parameters():  # ~1/sqrt(fan_in): activations stay O(1)
            fan_in = p.shape[0] if n == "cell_embedding" else max(1, p[0].numel()) if p.ndim > 1 else 4
            p.copy_(torch.randn_like(p) / np.sqrt(fan_in))
        for n, b in m.named_buffers():
            if n.endswith("running_var"):  # conv blocks amplify, so the input signal survives
                b.copy_(torch.rand_like(b) + 0.5 if n.startswith("bottleneck") else
                        torch.rand_like(b) * 0.15 + 0.05)
            elif n.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.2)
    return m.eval(), torch


@pytest.mark.parametrize("batch", [False, True])
def test_scvi_module_parity(tmp_path, batch):
    m, torch = _scvi_module(3, batch)
    torch.save({"model_state_dict": m.state_dict(), "var_names": [f"c{i}" for i in range(11)]},
               tmp_path / "model.pt")
    c = read_scvi(tmp_path)
    assert [t["name"] for t in c.tracks][:2] == ["c0", "c1"]
    assert c.facts.get("batch_embedding_folded", False) is batch
    cfg = sb.ScBassetConfig.from_dict(c.config)
    assert cfg.pool == "scvi" and cfg.tower_filters == sb.tower_widths(5, 1.3, 6, "scvi")
    tok = np.random.default_rng(4).integers(0, 4, (3, 1344))
    with torch.no_grad():
        z = m.inference(torch.tensor(tok))["region_embedding"]
        logits = m.generative(z)["reconstruction_logits"].numpy()
        stem = m.stem(torch.nn.functional.one_hot(torch.tensor(tok), 4).permute(0, 2, 1).float())
    params = jax.tree.map(np.asarray, c.params)
    x = np.eye(4, dtype=np.float32)[tok]
    ours_stem = sb.block(cfg, params["stem"], x, 17, 3, jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose(np.asarray(ours_stem), stem.numpy().transpose(0, 2, 1), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(sb.embed(cfg, params, x)), z.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(sb.forward(cfg, params, x, intercept=True)), logits,
                               atol=5e-5, rtol=0)
    # the Keras pooling convention gives different numbers: the layouts are not interchangeable
    keras = sb.ScBassetConfig.from_dict({**c.config, "pool": "keras"})
    assert np.abs(np.asarray(sb.forward(keras, params, x, intercept=True)) - logits).max() > 1e-3


def test_scvi_strict_and_safe_loading(tmp_path):
    m, torch = _scvi_module(5)
    sd = dict(m.state_dict())
    sd["tower.0.extra.weight"] = torch.zeros(2)
    torch.save({"model_state_dict": sd}, tmp_path / "model.pt")
    with pytest.raises(ConvertError, match=r"unexpected weights \['tower.0.extra.weight'\]"):
        read_scvi(tmp_path / "model.pt")

    # what scvi-tools' save() writes: var_names as a numpy object array, refused unless trusted
    torch.save({"model_state_dict": m.state_dict(),
                "var_names": np.array([f"c{i}" for i in range(11)], dtype=object)}, tmp_path / "model.pt")
    with pytest.raises(ConvertError, match="--trust-pickle"):
        read_scvi(tmp_path)


@pytest.fixture(scope="module")
def scb_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("scb")
    rng = np.random.default_rng(7)
    w = random_weights(rng, window_len=1344, stem=(5, 17), tower=(5, 6, 7, 6, 5, 7), pre=3)
    (d / "cells.txt").write_text("".join(f"AAAC-{i}\n" for i in range(11)))
    convert([str(write_keras_h5(d / "m.h5", w))], "scbasset-keras", str(d / "scb"), name="scb",
            cells=str(d / "cells.txt"))
    return d


@pytest.mark.skipif(not (DEMO / "nobias" / "config.json").is_file(), reason="no demo checkpoint")
def test_score_alongside_chrombpnet_and_groups(scb_ckpt, tmp_path):
    out = tmp_path / "o.zarr"
    r = CliRunner().invoke(main, ["score", str(DEMO / "variants.vcf"), "--genome", str(DEMO / "genome.fa"),
                                  "--model", str(DEMO / "nobias"), "--model", str(scb_ckpt / "scb"),
                                  "--out", str(out), "--quiet", "--batch-size", "32"])
    assert r.exit_code == 0, r.output
    s = xr.open_zarr(out, group="scores/scb")
    assert list(s["track"].values) == [f"AAAC-{i}" for i in range(11)]
    assert s["logit_diff"].dims == ("variant", "track") and s.attrs["kind"] == "cells"
    v = xr.open_zarr(out, group="variants")
    assert np.isfinite(s["logit_diff"].values[(v["status"].values == "ok")]).all()
    assert "logfc" in xr.open_zarr(out, group="scores/" + [m for m in xr.open_zarr(out).attrs["models"]
                                                           if m != "scb"][0])
    # one variant by hand: windows of 1344 bp centred on REF, forward and RC averaged
    from veff.io.genome import Genome

    handle = load_model(str(scb_ckpt / "scb"))
    i = int(np.flatnonzero(v["status"].values == "ok")[0])
    chrom, pos, ref, alt = (str(v[k].values[i]) for k in ("chrom", "pos", "ref", "alt"))
    tok = np.asarray(Genome(str(DEMO / "genome.fa")).fetch(chrom, int(pos) - 1 - 672, int(pos) - 1 + 672))
    enc = {"A": 0, "C": 1, "G": 2, "T": 3}
    assert tok.shape == (1344,) and tok[672] == enc[ref]
    alt_tok = tok.copy()
    alt_tok[672] = enc[alt]
    x = np.eye(5, 4, dtype=np.float32)[np.stack([tok, alt_tok]).astype(int)]  # N: all zeros
    xs = np.concatenate([x, x[:, ::-1, ::-1]])
    y = np.asarray(handle.apply(handle.params, xs)["tracks"][:, 0])
    want = 0.5 * ((y[1] - y[0]) + (y[3] - y[2]))
    # |values| reach ~40 with these amplifying random weights: fp32 sums in another order
    np.testing.assert_allclose(s["logit_diff"].values[i], want, atol=5e-4, rtol=0)
    assert np.abs(want).max() > 1e-2

    groups = tmp_path / "g.tsv"
    groups.write_text("cell\tlabel\n" + "".join(f"AAAC-{i}\t{'B' if i < 4 else 'T'}\n" for i in range(11)))
    r = CliRunner().invoke(main, ["cell-groups", str(out), "--cell-groups", str(groups)])
    assert r.exit_code == 0, r.output
    g = xr.open_zarr(out, group="scores/scb")
    assert list(g["group"].values) == ["B", "T"] and g["group_logit_diff"].dims == ("variant", "group")
    np.testing.assert_allclose(g["group_logit_diff"].values[:, 0],
                               s["logit_diff"].values[:, :4].mean(axis=1), atol=2e-5, rtol=0)
    from veff.track_groups import GroupMember, resolve_tracks
    import zarr

    root = zarr.open_group(str(out), mode="r")
    assert resolve_tracks(root, GroupMember(model="scb", stat="logit_diff", match="^B$")) == [0, 1, 2, 3]
    bad = tmp_path / "bad.tsv"
    bad.write_text("nope\tB\n")
    r = CliRunner().invoke(main, ["cell-groups", str(out), "--cell-groups", str(bad)])
    assert r.exit_code == 1 and r.output.strip().startswith("veff: error:") and "none of its cells" in r.output


def test_export_cells(scb_ckpt, tmp_path):
    out = tmp_path / "cells.tsv"
    r = CliRunner().invoke(main, ["export-cells", str(scb_ckpt / "scb"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [ln.split("\t") for ln in out.read_text().splitlines()]
    assert rows[0][:3] == ["cell", "intercept", "emb_0"] and len(rows) == 12 and len(rows[1]) == 2 + 13
    h = load_model(str(scb_ckpt / "scb"))
    np.testing.assert_array_equal(np.array(rows[3][2:], float), np.asarray(h.params["cells"]["kernel"])[:, 2])
    r = CliRunner().invoke(main, ["export-cells", str(DEMO / "nobias"), "--out", str(out)])
    assert r.exit_code == 1 and "has no cells" in r.output
    pytest.importorskip("anndata")
    r = CliRunner().invoke(main, ["export-cells", str(scb_ckpt / "scb"), "--out", str(tmp_path / "c.h5ad")])
    assert r.exit_code == 0, r.output
