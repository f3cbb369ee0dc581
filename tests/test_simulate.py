"""veff.simulate: determinism, a valid truth VCF, and the signal properties the truth relies on."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import cyvcf2
import numpy as np
import pyBigWig
import pyfaidx
import pytest

from veff.simulate import SimulationConfig, simulate
from veff.simulate.motifs import DEFAULT_MEME

CFG = SimulationConfig.tiny(seed=7)
CLASSES = ("motif_break", "motif_break_indel", "motif_create", "tn5_bias", "neutral")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("sim"), config=CFG)


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _records(sim):
    return list(cyvcf2.VCF(str(sim.variants)))


def test_same_seed_gives_identical_bytes_and_other_seed_differs(sim, tmp_path):
    again = simulate(tmp_path / "again", config=CFG)
    assert _digest(sim.out_dir) == _digest(again.out_dir)
    other = simulate(tmp_path / "other", config=SimulationConfig.tiny(seed=8))
    assert other.genome.read_bytes() != sim.genome.read_bytes()
    assert other.variants.read_bytes() != sim.variants.read_bytes()


def test_genome_background_and_n_runs(sim):
    fa = pyfaidx.Fasta(str(sim.genome))
    assert len(fa.keys()) == CFG.num_contigs
    for name in fa.keys():
        seq = str(fa[name][:]).upper()
        assert len(seq) == CFG.contig_len
        assert seq[: CFG.n_run] == "N" * CFG.n_run and seq[-CFG.n_run :] == "N" * CFG.n_run
        core = seq[CFG.n_run : -CFG.n_run]
        assert set(core) <= set("ACGT")
        gc = (core.count("G") + core.count("C")) / len(core)
        assert abs(gc - CFG.gc) < 0.02


def test_vcf_header_classes_and_ref_match_genome(sim):
    vcf = cyvcf2.VCF(str(sim.variants))
    assert vcf.raw_header.startswith("##fileformat=VCFv4.2")
    assert dict(zip(vcf.seqnames, vcf.seqlens)) == {
        f"chr{i + 1}": CFG.contig_len for i in range(CFG.num_contigs)
    }
    fa = pyfaidx.Fasta(str(sim.genome))
    records = _records(sim)
    counts = {k: 0 for k in CLASSES}
    for v in records:
        assert str(fa[v.CHROM][v.POS - 1 : v.POS - 1 + len(v.REF)]).upper() == v.REF
        counts[v.INFO["CLASS"]] += 1
        if v.INFO["CLASS"] == "motif_break_indel":
            assert len(v.ALT[0]) == 1 and 2 <= len(v.REF) - 1 <= 4 and v.REF[0] == v.ALT[0]
        else:
            assert len(v.REF) == 1 and len(v.ALT[0]) == 1 and v.REF != v.ALT[0]
    assert counts == {
        "motif_break": CFG.num_motif_break,
        "motif_break_indel": CFG.num_motif_break_indel,
        "motif_create": CFG.num_motif_create,
        "tn5_bias": CFG.num_tn5_bias,
        "neutral": CFG.num_neutral,
    }
    assert counts == sim.variant_counts
    positions = [(v.CHROM, v.POS) for v in records]
    assert positions == sorted(positions, key=lambda p: (int(p[0][3:]), p[1]))


def _read_pwms() -> dict[str, np.ndarray]:
    """Independent MEME reader: motif id -> (W, 4) probabilities."""
    out, lines = {}, DEFAULT_MEME.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("MOTIF"):
            width = int(lines[i + 1].split("w=")[1].split()[0])
            rows = [[float(x) for x in lines[i + 2 + k].split()] for k in range(width)]
            out[line.split()[1]] = np.array(rows)
    return out


def _score(seq: str, probs: np.ndarray, strand: str) -> float:
    bg = np.array([(1 - CFG.gc) / 2, CFG.gc / 2, CFG.gc / 2, (1 - CFG.gc) / 2])
    lo = np.log((probs + 0.01) / 1.04 / bg)
    if strand == "-":
        seq = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    return float(sum(lo[j, "ACGT".index(b)] for j, b in enumerate(seq)))


def test_motif_variants_move_the_pwm_score_the_labelled_way(sim):
    pwms = _read_pwms()
    fa = pyfaidx.Fasta(str(sim.genome))
    checked = 0
    for v in _records(sim):
        klass = v.INFO["CLASS"]
        if not klass.startswith("motif"):
            continue
        probs = pwms[v.INFO["MOTIF"]]
        start, strand = v.INFO["SITE_START"], v.INFO["SITE_STRAND"]
        width = probs.shape[0]
        lo, hi = start - 10, start + width + 10
        ref_hap = str(fa[v.CHROM][lo:hi]).upper()
        p = v.POS - 1 - lo
        alt_hap = ref_hap[:p] + v.ALT[0] + ref_hap[p + len(v.REF) :]
        ref_score = _score(ref_hap[10 : 10 + width], probs, strand)
        alt_score = _score(alt_hap[10 : 10 + width], probs, strand)
        if klass == "motif_create":
            assert alt_score > ref_score + 3.0, v
            assert v.INFO["EFFECT"] == "+" and v.INFO["ACC_LOGFC"] >= CFG.min_causal_logfc
        else:
            assert alt_score < ref_score - 3.0, v
            assert v.INFO["EFFECT"] == "-" and v.INFO["ACC_LOGFC"] <= -CFG.min_causal_logfc
        checked += 1
    assert checked == CFG.num_motif_break + CFG.num_motif_break_indel + CFG.num_motif_create


def test_tn5_and_neutral_variants_leave_true_accessibility_unchanged(sim):
    tn5 = []
    for v in _records(sim):
        if v.INFO["CLASS"] in ("tn5_bias", "neutral"):
            assert v.INFO["ACC_LOGFC"] == 0.0
        if v.INFO["CLASS"] == "neutral":
            assert abs(v.INFO["OBS_LOGFC"]) <= CFG.neutral_max_obs_logfc
        if v.INFO["CLASS"] == "tn5_bias":
            tn5.append(v.INFO["OBS_LOGFC"])
    assert np.median(np.abs(tn5)) > 0.05


def test_tn5_variants_sit_in_background_hotspots_away_from_peaks(sim):
    fa = pyfaidx.Fasta(str(sim.genome))
    kmer = "".join("ACGT"[t] for t in CFG.tn5.best_kmer())
    k, half = len(kmer), CFG.window // 2
    bg = np.float32(CFG.accessibility.background)  # the bigWig stores float32
    nonpeaks = _bed(sim.nonpeaks)
    peaks = _bed(sim.peaks)
    n = 0
    for v in _records(sim):
        if v.INFO["CLASS"] != "tn5_bias":
            continue
        x = v.POS - 1
        # inside a planted copy of the strongest Tn5 K-mer (on the reference)
        assert kmer in str(fa[v.CHROM][x - k + 1 : x + k]).upper(), v
        # the whole truth window holds background accessibility only: no site, no peak
        acc = _track(sim.accessibility, v.CHROM)[x - half : x + half]
        assert np.all(acc == bg), v
        assert v.INFO.get("PEAK") is None
        assert not any(c == v.CHROM and s - half <= x < e + half for c, s, e in peaks + nonpeaks)
        # the bias at the hotspot is far above the genome-wide mean of 1
        assert _track(sim.tn5_bias, v.CHROM)[x - k : x + k].max() > 50
        n += 1
    assert n == CFG.num_tn5_bias


def _track(path: Path, chrom: str) -> np.ndarray:
    with pyBigWig.open(str(path)) as bw:
        return np.nan_to_num(np.asarray(bw.values(chrom, 0, bw.chroms(chrom)), dtype=np.float64))


def _bed(path: Path) -> list[tuple[str, int, int]]:
    return [(f[0], int(f[1]), int(f[2])) for f in (ln.split("\t") for ln in path.read_text().splitlines())]


def test_fragment_ends_are_exactly_the_cuts(sim):
    ends: dict[str, list[int]] = {}
    with gzip.open(sim.fragments, "rt") as fh:
        for line in fh:
            chrom, start, end, barcode, count = line.rstrip("\n").split("\t")
            assert int(end) > int(start) and count == "1" and barcode.startswith("SIM")
            ends.setdefault(chrom, []).extend((int(start), int(end)))
    total = 0
    for chrom, positions in ends.items():
        cuts = _track(sim.cuts, chrom)
        assert np.array_equal(np.bincount(positions, minlength=cuts.size), cuts)
        total += int(cuts.sum())
    assert total == sim.num_cuts == 2 * sim.num_fragments


def test_peaks_have_far_more_cuts_than_nonpeaks(sim):
    peaks, nonpeaks = _bed(sim.peaks), _bed(sim.nonpeaks)
    assert len(peaks) == len(nonpeaks) == CFG.num_peaks
    lines = sim.peaks.read_text().splitlines()
    assert all(len(ln.split("\t")) == 10 for ln in lines)
    tracks = {c: _track(sim.cuts, c) for c, _, _ in peaks + nonpeaks}
    acc = {c: _track(sim.accessibility, c) for c in tracks}
    peak_rate = np.mean([tracks[c][s:e].mean() for c, s, e in peaks])
    nonpeak_rate = np.mean([tracks[c][s:e].mean() for c, s, e in nonpeaks])
    assert peak_rate > 5 * nonpeak_rate
    # non-peaks carry only the background accessibility: no bound site reaches them
    for c, s, e in nonpeaks:
        assert np.all(acc[c][s:e] == np.float32(CFG.accessibility.background))  # bigWig is f32


def test_tn5_kmer_preference_is_visible_in_nonpeak_cuts(sim):
    fa = pyfaidx.Fasta(str(sim.genome))
    w = CFG.tn5.log_weights()
    k, half = w.shape[0], w.shape[0] // 2
    cuts_hi, cuts_lo, bias_pairs = [], [], []
    for c, s, e in _bed(sim.nonpeaks):
        seq = np.array(["ACGT".index(b) for b in str(fa[c][s - half : e + half]).upper()])
        score = np.array([w[np.arange(k), seq[i : i + k]].sum() for i in range(e - s)])
        cuts = _track(sim.cuts, c)[s:e]
        bias = _track(sim.tn5_bias, c)[s:e]
        bias_pairs.append((score, np.log(bias)))
        cuts_hi.append(cuts[score >= np.quantile(score, 0.9)])
        cuts_lo.append(cuts[score <= np.quantile(score, 0.1)])
    # the written bias track is exp(score) up to one genome-wide constant
    offsets = np.concatenate([lb - sc for sc, lb in bias_pairs])
    assert np.ptp(offsets) < 1e-6
    hi, lo = np.concatenate(cuts_hi).mean(), np.concatenate(cuts_lo).mean()
    assert hi > 10 * lo
