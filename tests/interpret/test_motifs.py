"""``veff motifs``: modisco-lite inputs, TOMTOM annotation, the CLI and a planted-motif run."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from veff.interpret import motifs as mt
from veff.interpret import store as istore
from veff.simulate.motifs import read_meme

DB = {m.name: m for m in read_meme()}


def planted_store(path, n=240, L=160, seed=0):
    """A contrib store whose hypothetical contributions are (ppm - 0.25) over a planted GATA1
    (even rows) or CTCF (odd rows) site, small noise elsewhere."""
    rng = np.random.RandomState(seed)
    tok = rng.randint(0, 4, (n, L))
    hyp = rng.normal(0, 0.02, (n, L, 4)).astype(np.float32)
    for i in range(n):
        m = DB["GATA1"] if i % 2 == 0 else DB["CTCF"]
        W = m.width
        s = rng.randint(max(0, L // 2 - 40), min(L, L // 2 + 40) - W + 1)
        tok[i, s : s + W] = [rng.choice(4, p=r) for r in m.probs]
        hyp[i, s : s + W] += (m.probs - 0.25) * 2
    root = istore.create(path, overwrite=False, kind="contrib", attrs={})
    istore.write_array(root, "onehot", np.eye(4, dtype=np.uint8)[tok], ["item", "position", "base"])
    istore.write_array(root, "hypothetical", hyp, ["item", "position", "base"])
    return tok, hyp


def test_inputs_layout(tmp_path):
    tok, hyp = planted_store(tmp_path / "c.zarr", n=7, L=41)
    hyp_nan = hyp.copy()
    root = istore.open_store(tmp_path / "c.zarr")
    hyp_nan[2] = np.nan
    root["hypothetical"][...] = hyp_nan
    onehot, h = mt.store_arrays(tmp_path / "c.zarr")
    keep = [0, 1, 3, 4, 5, 6]
    assert onehot.shape == (6, 41, 4) and np.array_equal(h, hyp[keep])
    mt.write_inputs(tmp_path, onehot, h)
    with np.load(tmp_path / "ohe.npz") as z:
        x = z["arr_0"]
    with np.load(tmp_path / "shap.npz") as z:
        a = z["arr_0"]
    assert x.shape == a.shape == (6, 4, 41)
    assert np.array_equal(x[:, :, 5].argmax(1), tok[keep, 5])
    assert np.array_equal(a[3, :, 17], hyp[keep][3, 17])


def test_bh_qvalues():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    q = mt.bh_qvalues(p)
    # sorted p 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> monotone 0.04, 0.0533, 0.0533, 0.5
    assert np.allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5], atol=1e-12)


def test_tomtom_names_database_motifs():
    pytest.importorskip("memelite")
    rng = np.random.RandomState(1)
    pats = []
    for name in ("CTCF", "GATA1", "NRF1"):
        ppm = DB[name].probs + rng.uniform(0, 0.05, DB[name].probs.shape)
        ppm /= ppm.sum(1, keepdims=True)
        pats.append(mt.Pattern(name, 50, ppm[::-1, ::-1].copy(), ppm, []))  # reverse strand
    mt.annotate(pats, mt.DEFAULT_MEME)
    for pt in pats:
        best, p, q = pt.matches[0]
        assert best.split()[1] == pt.name and q < 0.05 and p <= q
        assert len(pt.matches) == 3


def test_cli_needs_out_or_variants(tmp_path):
    from veff.cli import main

    planted_store(tmp_path / "c.zarr", n=3, L=41)
    res = CliRunner().invoke(main, ["motifs", str(tmp_path / "c.zarr")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert res.output.startswith("veff: error: give --out DIR"), res.output


def test_cli_missing_extra(tmp_path, monkeypatch):
    from veff.cli import main

    planted_store(tmp_path / "c.zarr", n=3, L=41)
    monkeypatch.setitem(sys.modules, "modiscolite", None)  # import raises ModuleNotFoundError
    res = CliRunner().invoke(main, ["motifs", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "veff: error: this needs the optional package modiscolite; install it with pip install 'veff[interpret]'"]


def test_cli_bad_knob(tmp_path):
    pytest.importorskip("modiscolite")
    from veff.cli import main

    planted_store(tmp_path / "c.zarr", n=3, L=41)
    res = CliRunner().invoke(main, ["motifs", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "m"),
                                    "--window", "0"])
    assert res.exit_code == 2 and "--window" in res.output and len(res.output.strip().splitlines()) == 1


def test_cli_variants_on_region_store(tmp_path):
    from veff.cli import main

    planted_store(tmp_path / "c.zarr", n=3, L=41)
    res = CliRunner().invoke(main, ["motifs", str(tmp_path / "c.zarr"), "--variants"])
    assert res.exit_code == 1 and "not a variant contribution store" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_modisco_recovers_planted_motifs(tmp_path):
    """modisco-lite on planted contributions finds GATA1 and CTCF patterns and TOMTOM names
    them (q < 0.05). Numba compiles modisco-lite's kernels on every run: 0.5-1.5 min."""
    pytest.importorskip("modiscolite")
    from veff.cli import main

    planted_store(tmp_path / "c.zarr")
    out = tmp_path / "m"
    res = CliRunner().invoke(main, ["motifs", str(tmp_path / "c.zarr"), "--out", str(out), "--no-report",
                                    "--window", "160"])
    assert res.exit_code == 0, res.output
    rows = [line.split("\t") for line in (out / "patterns.tsv").read_text().splitlines()[1:]]
    named = {r[3].split()[1] for r in rows if r[3] and float(r[5]) < 0.05}
    assert {"GATA1", "CTCF"} <= named
    assert (out / "modisco_results.h5").exists() and (out / "ohe.npz").exists()
    assert "MOTIF pos_patterns.pattern_0" in (out / "patterns.meme").read_text()
    assert mt.read_meme(out / "patterns.meme")  # parses as MEME
