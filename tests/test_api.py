"""The Python API (veff.score / veff.open / veff.load_model) on the shipped demo data: the
same numbers as the CLI, in-memory and store-backed results, model predictions that
reproduce the stored scores, and clear errors for bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import veff
from veff.cli import main
from veff.io.genome import Genome
from veff.io.windows import build_windows

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
VCF, FASTA, MODEL = DEMO / "variants.vcf", DEMO / "genome.fa", DEMO / "nobias"


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "cli.zarr"
    r = CliRunner().invoke(main, ["score", str(VCF), "--genome", str(FASTA), "--model", str(MODEL),
                                  "--out", str(out), "--stats", "logfc,jsd", "--quiet"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def tree():
    return veff.score(VCF, genome=FASTA, models=MODEL, stats=("logfc", "jsd"))


def test_score_in_memory_equals_cli(tree, cli_store):
    root = zarr.open_group(str(cli_store), mode="r")
    name = next(iter(root["scores"].group_keys()))
    for stat in ("logfc", "jsd"):
        np.testing.assert_array_equal(tree[f"scores/{name}"][stat].values, root["scores"][name][stat][:])
    np.testing.assert_array_equal(tree["variants"]["pos"].values, root["variants"]["pos"][:])
    assert list(tree["variants"]["status"].values) == list(root["variants"]["status"][:])


def test_open_reads_a_cli_store(cli_store):
    t = veff.open(cli_store)
    assert set(t["scores"].children) and "variants" in t.children
    assert t["variants"].sizes["variant"] == t[f"scores/{next(iter(t['scores'].children))}"].sizes["variant"]


def test_open_refuses_a_non_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Zarr store"):
        veff.open(tmp_path)


def test_score_rows_from_python_and_store_backed(tmp_path, tree):
    variants = tree["variants"]
    rows = [(c, int(p), r, a, i) for c, p, r, a, i in zip(
        variants["chrom"].values[:5], variants["pos"].values[:5], variants["ref"].values[:5],
        variants["alt"].values[:5], variants["id"].values[:5])]
    out = tmp_path / "rows.zarr"
    t = veff.score(rows, genome=FASTA, models=[MODEL], out=out, stats="logfc")
    assert out.is_dir()  # store-backed: the store stays
    name = next(iter(t["scores"].children))
    np.testing.assert_array_equal(t[f"scores/{name}"]["logfc"].values,
                                  tree[f"scores/{name}"]["logfc"].values[:5])
    assert list(t["variants"]["id"].values) == [r[4] for r in rows]


def test_unknown_option_says_did_you_mean():
    with pytest.raises(TypeError, match="did you mean 'batch_size'"):
        veff.score(VCF, genome=FASTA, models=MODEL, batch_sise=4)


def test_predict_reproduces_stored_logfc(tree):
    """logfc = log2(c_alt / c_ref) from the model's own RC-averaged predictions equals the
    scored value: the API's predict and `veff score` run the model the same way."""
    m = veff.load_model(MODEL)
    assert m.kind == "profile" and m.window_len > 0
    v = tree["variants"]
    ok = np.flatnonzero(v["status"].values == "ok")[:6]
    from veff.types import Status, Variant

    variants = [Variant(chrom=str(v["chrom"].values[i]), pos1=int(v["pos"].values[i]),
                        ref=str(v["ref"].values[i]), alt=str(v["alt"].values[i]), id=".",
                        status=Status.OK, fasta_chrom=str(v["fasta_chrom"].values[i]))
                for i in ok]
    w = build_windows(Genome(str(FASTA)), variants, m.window_len)
    ref = m.predict(w.ref, rc=True, batch_size=4)
    alt = m.predict(w.alt, rc=True, batch_size=4)
    logfc = (alt["logcounts"] - ref["logcounts"]) / np.log(2.0)
    stored = tree[f"scores/{m.name}"]["logfc"].values[ok, 0]
    np.testing.assert_allclose(logfc, stored, rtol=0, atol=2e-5)


def test_predict_batch_invariant_and_checks_length():
    m = veff.load_model(MODEL)
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGT"), m.window_len)) for _ in range(3)]
    one = m.predict(seqs, batch_size=1)
    three = m.predict(seqs, batch_size=3)
    for k in one:
        np.testing.assert_allclose(one[k], three[k], rtol=0, atol=1e-6)
    assert one["logits"].shape[0] == 3
    with pytest.raises(ValueError, match="windows must be"):
        m.predict("ACGT")
