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
    for name, extra in (("eqtl", []), ("flip", ["--ref-mismatch", "flip"])):
        vcf = BASKERVILLE / ("snp_eqtl.vcf" if name == "eqtl" else "snp_eqtl_flip.vcf")
        r = run(main, ["score", str(vcf), "--genome", str(BASKERVILLE / "hg38_1m.fa.gz"),
                       "--model", str(d / "mb"), "--out", str(d / f"{name}.zarr"), "--quiet",
                       "--batch-size", "8", "--stats", ",".join(STATS), *extra])
        assert r.exit_code == 0, r.output
        out[name] = xr.open_zarr(d / f"{name}.zarr", group="scores/mb")
    return out


def test_every_statistic_has_shape_8_by_tracks_and_varies(scored):
    s = scored["eqtl"]
    assert s.sizes["track"] == 74
    assert list(s["track_strand_pair"].values[:2]) == [1, 0]
    for stat in STATS:
        v = s[stat].values
        assert v.shape == (8, 74), stat
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
