"""Acceptance with real weights: the trained mini-Borzoi (baskerville test data) scores the 8
real eQTL SNPs with every baskerville statistic; the REF/ALT-swapped file, read with
--ref-mismatch flip, gives negated signed statistics and identical unsigned ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from veff.cli import main

BASKERVILLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "baskerville"
STATS = ["SUM", "logSUM", "logSED", "SAX", "D1", "D2", "logD2", "JS", "DIFF_LOG2_SUM@501"]
SIGNED = {"SUM", "logSUM", "logSED", "SAX", "DIFF_LOG2_SUM@501"}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    if not (BASKERVILLE / "eval_model.h5").is_file():
        pytest.skip("../shared/data/baskerville is absent")
    d = tmp_path_factory.mktemp("mb")
    run = CliRunner().invoke
    r = run(main, ["convert", str(BASKERVILLE / "eval_model.h5"), "--format", "baskerville",
                   "--params", str(BASKERVILLE / "eval_params.json"),
                   "--targets", str(BASKERVILLE / "tiny_hg38_targets.txt"), "--out", str(d / "mb")])
    assert r.exit_code == 0, r.output
    out = {}
    for name, extra in (("eqtl", []), ("flip", ["--ref-mismatch", "flip"]),
                        ("keep", ["--keep-strands"])):
        vcf = BASKERVILLE / ("snp_eqtl_flip.vcf" if name == "flip" else "snp_eqtl.vcf")
        r = run(main, ["score", str(vcf), "--genome", str(BASKERVILLE / "hg38_1m.fa.gz"),
                       "--model", str(d / "mb"), "--out", str(d / f"{name}.zarr"), "--quiet",
                       "--batch-size", "8", "--stats", ",".join(STATS), *extra])
        assert r.exit_code == 0, r.output
        out[name] = xr.open_zarr(d / f"{name}.zarr", group="scores/mb")
    return out


def test_every_statistic_has_shape_8_by_tracks_and_varies(scored):
    s = scored["eqtl"]
    # hound_snp's layout: the 74 tracks' strand pairs summed into 47 (baskerville test_snp.py)
    assert s.sizes["track"] == 47 and s.attrs["strands_merged"]
    assert list(s["track"].values[:2]) == ["CNhs10752+", "CNhs10853+"]
    for stat in STATS:
        v = s[stat].values
        assert v.shape == (8, 47), stat
        assert np.isfinite(v).all(), stat
        assert (v.std(axis=0) > 0).any(), stat


def test_flipped_file_negates_signed_and_keeps_unsigned(scored):
    a, b = scored["eqtl"], scored["flip"]
    for stat in STATS:
        x, y = a[stat].values, b[stat].values
        scale = np.abs(x).max()
        if stat in SIGNED:
            np.testing.assert_allclose(y, -x, atol=1e-5 * scale, err_msg=stat)
        elif stat != "JS":  # baskerville's JS takes its pseudo-count from REF: not swap-symmetric
            np.testing.assert_allclose(y, x, atol=1e-5 * scale, err_msg=stat)


def test_keep_strands_gives_74_tracks_and_the_merge_is_each_stats_own(scored):
    a, k = scored["eqtl"], scored["keep"]
    assert k.sizes["track"] == 74 and not k.attrs["strands_merged"]
    pair = k["track_strand_pair"].values
    assert list(pair[:2]) == [1, 0]
    first = [t for t in range(74) if pair[t] >= t]
    second = [pair[t] if pair[t] != t else None for t in first]
    for stat in STATS:
        x = k[stat].values
        b = np.stack([x[:, p] if p is not None else np.zeros(8, np.float32) for p in second], 1)
        l2 = stat in ("D2", "logD2")
        want = np.sqrt(x[:, first] ** 2 + b ** 2) if l2 else x[:, first] + b
        np.testing.assert_allclose(a[stat].values, want, rtol=1e-6, atol=1e-6, err_msg=stat)
