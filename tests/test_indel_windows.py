"""`--indel-windows variant-scorer` reproduces variant-scorer's windows: an indel written
other than left-aligned (``ATA>A``, ``C>CAC``) is scored at the input's own POS and alleles,
forward and with RC averaging, against an independent construction of VariantGenerator's
sequences and the model's forward; the default (veff) scores the normalised variant."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from helpers_h5 import write_chrombpnet_h5  # tests/ is on sys.path
from veff.cli import main
from veff.models.registry import load_model

IN_LEN, OUT_LEN = 256, 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("indel_windows")
    rng = np.random.default_rng(5)
    seq = list(rng.choice(list("ACGT"), 2000))
    seq[599:603] = list("GATA")  # 1-based 600..603: ATA at 601 (deletion of TA)
    seq[1199:1202] = list("TCA")  # C at 1201 followed by A: C>CAC inserts AC
    seq = "".join(seq)
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    rows = [("chr1", 601, "ATA", "A"), ("chr1", 1201, "C", "CAC"), ("chr1", 900, seq[899], "G" if seq[899] != "G" else "T")]
    (d / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"{c}\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n" for i, (c, p, r, a) in enumerate(rows)))
    write_chrombpnet_h5(d / "m.h5", kind="nobias", filters=5, n_layers=2, seed=1,
                        input_len=IN_LEN, output_len=OUT_LEN)
    r = CliRunner().invoke(main, ["convert", str(d / "m.h5"), "--format", "chrombpnet-h5",
                                  "--out", str(d / "cb"), "--name", "cb"])
    assert r.exit_code == 0, r.output
    return d, seq, rows


def variant_scorer_seqs(seq: str, pos: int, a1: str, a2: str, input_len: int) -> tuple[str, str]:
    """VariantGenerator.__get_allele_seq__, restated: flank = input_len // 2 around the
    0-based POS; indels: a deletion reads mismatch extra bases, the right flanks start after
    allele1, allele2's is cut (insertion) or extended (deletion) to keep the length."""
    f, p = input_len // 2, pos - 1
    if len(a1) == len(a2):
        flank = seq[p - f:p + f]
        return flank[:f] + a1 + flank[f + len(a1):], flank[:f] + a2 + flank[f + len(a2):]
    m = len(a1) - len(a2)
    flank = seq[p - f:p + f + max(m, 0)]
    s1 = flank[:f] + a1 + flank[f + len(a1):2 * f]
    s2 = flank[:f] + a2 + flank[f + len(a1):2 * f + m]
    assert len(s1) == len(s2) == 2 * f
    return s1, s2


def onehot(s: str) -> np.ndarray:
    return (np.array(list(s))[:, None] == np.array(list("ACGT"))[None]).astype(np.float32)


def expected_logfc(h, s1: str, s2: str, rc: bool) -> float:
    x = np.stack([onehot(s1), onehot(s2)])
    counts = np.exp(np.asarray(h.apply(h.params, x)["logcounts"], np.float64).reshape(2))
    if rc:  # variant-scorer: seqs[:, ::-1, ::-1], counts averaged in linear space
        rcc = np.exp(np.asarray(h.apply(h.params, x[:, ::-1, ::-1].copy())["logcounts"], np.float64).reshape(2))
        counts = (counts + rcc) / 2
    return float(np.log2(counts[1] / counts[0]))


@pytest.mark.parametrize("rc", [False, True])
def test_variant_scorer_windows_for_indels(world, tmp_path, rc):
    d, seq, rows = world
    h = load_model(str(d / "cb"))
    out = {}
    for mode in ("veff", "variant-scorer"):
        r = CliRunner().invoke(main, ["score", str(d / "v.vcf"), "--genome", str(d / "g.fa"), "--model",
                                      str(d / "cb"), "--out", str(tmp_path / f"{mode}.zarr"), "--quiet",
                                      "--stats", "logfc", "--indel-windows", mode, *([] if rc else ["--no-rc"])])
        assert r.exit_code == 0, r.output
        root = zarr.open_group(str(tmp_path / f"{mode}.zarr"), mode="r")
        assert root.attrs["indel_windows"] == mode and root["scores/cb"].attrs["indel_windows"] == mode
        out[mode] = np.asarray(root["scores/cb/logfc"][:])[:, 0]
        pos = np.asarray(root["variants/pos"][:])
    # both indels are normalised to other positions: 601 ATA>A -> 600 GAT>G, 1201 C>CAC -> 1200 T>TCA
    assert pos.tolist() == [600, 1200, 900]
    for i, (_, p, a1, a2) in enumerate(rows):
        want = expected_logfc(h, *variant_scorer_seqs(seq, p, a1, a2, IN_LEN), rc)
        assert abs(out["variant-scorer"][i] - want) <= 2e-5 * (1 + abs(want)), (i, out["variant-scorer"][i], want)
    # veff's default windows are variant-scorer's at the normalised POS and alleles
    norm = [(600, seq[599:602], seq[599]), (1200, seq[1199], seq[1199] + "CA")]
    assert norm == [(600, "GAT", "G"), (1200, "T", "TCA")]
    for i, (p, a1, a2) in enumerate(norm):
        want = expected_logfc(h, *variant_scorer_seqs(seq, p, a1, a2, IN_LEN), rc)
        assert abs(out["veff"][i] - want) <= 2e-5 * (1 + abs(want)), (i, out["veff"][i], want)
    assert out["veff"][2] == out["variant-scorer"][2]  # an SNV: the same window
    assert (out["veff"][:2] != out["variant-scorer"][:2]).all()


def test_tsv_empty_allele_insertion(world, tmp_path):
    """variant-scorer's `- AC` at POS: REF is empty, inserted at 0-based POS - 1 (no anchor)."""
    d, seq, _ = world
    h = load_model(str(d / "cb"))
    (tmp_path / "v.tsv").write_text(f"chr1\t1500\t-\tAC\tins\nchr1\t1600\t{seq[1599:1601]}\t-\tdel\n")
    r = CliRunner().invoke(main, ["score", str(tmp_path / "v.tsv"), "--genome", str(d / "g.fa"), "--model",
                                  str(d / "cb"), "--out", str(tmp_path / "t.zarr"), "--quiet",
                                  "--stats", "logfc", "--indel-windows", "variant-scorer"])
    assert r.exit_code == 0, r.output
    got = np.asarray(zarr.open_group(str(tmp_path / "t.zarr"), mode="r")["scores/cb/logfc"][:])[:, 0]
    for i, (p, a1, a2) in enumerate([(1500, "", "AC"), (1600, seq[1599:1601], "")]):
        want = expected_logfc(h, *variant_scorer_seqs(seq, p, a1, a2, IN_LEN), True)
        assert abs(got[i] - want) <= 2e-5 * (1 + abs(want)), (i, got[i], want)
