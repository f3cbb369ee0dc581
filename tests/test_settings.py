"""Settings defined once (veff/settings.py): the CLI, the store attrs, the fingerprint and the
consensus background all see the same options. The regression: a run's consensus background
is scored with every option that changes numbers (``--shifts``, ``--untransform`` ...), so it
equals ``veff score`` of the same background SNVs under those options (a tiny hand-made
Borzoi with untransform-able tracks; no shared data)."""

from __future__ import annotations

import dataclasses

import click
import jax
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from veff import settings as st
from veff.checkpoint import save_checkpoint
from veff.cli import main
from veff.models import borzoi as bz

# the fingerprint keys of veff 0.x stores (a stored fingerprint compares key by key)
LEGACY_FP_KEYS = ["VARIANTS", "--genome", "--model", "--stats", "--no-rc", "--shifts", "--untransform",
                  "--precision", "--center-bp", "--centering", "--keep-strands", "--no-indel-align",
                  "--indel-windows", "--genes", "--ref-mismatch", "--max-indel-len", "--peaks",
                  "--null-shuffles", "--null-variants", "--seed", "--groups", "--background-n",
                  "--no-consensus", "--chunk-size"]

ODD = dict(stats=("SUM", "logD2"), rc=False, shifts=(0, -1, 1), untransform="legacy", precision="bf16",
           center_bp=3, centering="baskerville", keep_strands=True, indel_align=False,
           indel_windows="variant-scorer", batch_size=7, devices=1)
ODD_RUN = dict(variants="v.vcf", genome="g.fa", models=("a=m1", "m2"), out="o.zarr", genes="x.gtf",
               ref_mismatch="flip", max_indel_len=9, peaks="p.bed", null_shuffles=3, null_variants=5,
               seed=11, groups="g.yaml", background_n=17, consensus=False, chunk_size=13, resume=True,
               overwrite=True)


def test_every_field_differs_from_its_default_in_the_odd_spec():
    """So the round trips below exercise every setting."""
    names = {f.name for f, _ in st.settings()}
    assert names == set(ODD) | set(ODD_RUN)
    spec = st.RunSpec(**ODD_RUN, options=st.ScoreOptions(**ODD))
    for f, nested in st.settings():
        if f.default is not dataclasses.MISSING:
            assert st.value_of(spec, f, nested) != f.default, f.name


def test_store_attrs_round_trip_every_setting():
    spec = st.RunSpec(**ODD_RUN, options=st.ScoreOptions(**ODD))
    assert st.from_attrs(st.to_attrs(spec)) == spec
    # JSON (the store's attrs) turns tuples into lists; unknown keys are ignored
    import json

    attrs = {**json.loads(json.dumps(st.to_attrs(spec))), "veff_version": "x", "gone": 1}
    assert st.from_attrs(attrs) == spec
    assert st.from_attrs(attrs, out="elsewhere").out == "elsewhere"
    # a store written before an option existed: the option takes its default
    attrs["options"].pop("keep_strands")
    assert st.from_attrs(attrs).options.keep_strands is False


def test_command_line_gives_every_setting_its_field():
    @click.command()
    @st.command_options("score")
    def cmd(**values):
        click.echo(repr(st.from_cli(values)))

    args = ["v.vcf", "--genome", "g.fa", "--model", "a=m1", "--model", "m2", "-o", "o.zarr",
            "--stats", "SUM,logD2", "--no-rc", "--shifts", "0,-1,1", "--untransform", "legacy",
            "--precision", "bf16", "--center-bp", "3", "--centering", "baskerville", "--keep-strands",
            "--no-indel-align", "--indel-windows", "variant-scorer", "--batch-size", "7", "--devices", "1",
            "--genes", __file__, "--ref-mismatch", "flip", "--max-indel-len", "9", "--peaks", __file__,
            "--null-shuffles", "3", "--null-variants", "5", "--seed", "11", "--groups", __file__,
            "--background-n", "17", "--no-consensus", "--chunk-size", "13", "--resume", "--overwrite"]
    r = CliRunner().invoke(cmd, args)
    assert r.exit_code == 0, r.output
    files = dict(genes=__file__, peaks=__file__, groups=__file__)
    assert r.output.strip() == repr(st.RunSpec(**{**ODD_RUN, **files}, options=st.ScoreOptions(**ODD)))
    # no options: the CLI's defaults are the dataclasses' (chunk size: chosen by the run)
    r = CliRunner().invoke(cmd, ["v.vcf", "--genome", "g", "--model", "m", "-o", "o"])
    assert r.output.strip() == repr(st.RunSpec(variants="v.vcf", genome="g", models=("m",), out="o",
                                               chunk_size=None))
    r = CliRunner().invoke(cmd, ["v", "--genome", "g", "--model", "m", "-o", "o", "--stats", "logfx"])
    assert r.exit_code == 2 and "did you mean 'logfc'?" in r.output


def test_fingerprint_keys_are_the_stored_ones():
    assert [f.metadata["flag"] for f, _ in st.fingerprint_fields()] == LEGACY_FP_KEYS


def test_numeric_options_are_all_but_batch_size_and_devices():
    opts = st.ScoreOptions(**ODD)
    num = st.numeric_options(opts)
    assert set(num) == {f.name for f in dataclasses.fields(opts)} - {"batch_size", "devices"}
    assert num["shifts"] == [0, -1, 1] and num["untransform"] == "legacy"


def test_for_kind_resets_the_binned_options_of_a_profile_model():
    opts = st.ScoreOptions(**ODD)
    prof = opts.for_kind("profile")
    assert (prof.shifts, prof.untransform, prof.centering, prof.center_bp) == ((0,), None, "veff", None)
    assert (prof.rc, prof.precision, prof.indel_windows) == (False, "bf16", "variant-scorer")
    assert opts.for_kind("binned") == opts
    assert set(opts.unused_by({"profile"})) == {"--shifts", "--untransform", "--center-bp", "--centering",
                                                "--keep-strands", "--no-indel-align"}
    assert opts.unused_by({"profile", "binned"}) == []


# ---------------------------------------------------------------------------- the background bug
CFG = bz.BorzoiConfig.small(
    window_len=2048, crop_bins=8, heads=(("human", 3),), position_basis_length=2048,
    conv_dna_filters=3, res_filters=(5, 7, 5, 7, 11, 13), num_heads=2, key_size=3, value_size=5,
    num_layers=1, ffn_dim=26, final_filters=7)
TRACKS = [{"name": "DNASE:a", "clip_soft": 0.05, "scale": 0.3, "sum_stat": "sum_sqrt"},
          {"name": "DNASE:b", "clip_soft": 0.2, "scale": 2.0, "sum_stat": "sum"},
          {"name": "DNASE:c", "clip_soft": 0.01, "scale": 0.7, "sum_stat": "mean_sqrt"}]
RUN_OPTS = ["--shifts", "0,-1,1", "--untransform", "legacy", "--stats", "SUM,logD2"]
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("settings_bg")
    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 9_000))
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    rows = [f"chr1\t{p}\tv{i}\t{seq[p - 1]}\t{'ACGT'[('ACGT'.index(seq[p - 1]) + 1) % 4]}\t.\t.\t."
            for i, p in enumerate((2500, 4100, 6000))]
    (d / "v.vcf").write_text(HEADER + "\n".join(rows) + "\n")
    # the weights scaled up so the untransform's clip makes a difference
    params = jax.tree.map(lambda a: a * 1.5, bz.init_params(CFG, jax.random.key(3)))
    save_checkpoint(d / "tb", arch="borzoi", config=CFG.to_dict(), params=params, tracks=TRACKS,
                    metadata={"name": "tb"})
    (d / "groups.yaml").write_text("groups:\n  - name: dnase\n    members:\n      - {model: tb, stat: logD2}\n"
                                   "      - {model: tb, stat: SUM}\n")
    return d


def _score(world, vcf, out, *extra):
    r = CliRunner().invoke(main, ["score", str(vcf), "--genome", str(world / "g.fa"), "--model",
                                  str(world / "tb"), "-o", str(out), "--quiet", "--batch-size", "4", *extra])
    assert r.exit_code == 0, r.output
    return zarr.open_group(str(out), mode="r")


def test_background_is_scored_with_the_runs_shifts_and_untransform(world, tmp_path):
    from veff.backgrounds import BackgroundSpec
    from veff.consensus import write_consensus

    _score(world, world / "v.vcf", tmp_path / "run.zarr", *RUN_OPTS)
    write_consensus(tmp_path / "run.zarr", groups_yaml=world / "groups.yaml",
                    background=BackgroundSpec(num=12, seed=4), cache=tmp_path / "cache")
    bg = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")["backgrounds/tb"]
    assert bg.attrs["options"]["shifts"] == [0, -1, 1] and bg.attrs["options"]["untransform"] == "legacy"
    snvs = [f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t." for c, p, r, a in
            zip(bg["chrom"][:], bg["pos"][:], bg["ref"][:], bg["alt"][:])]
    (tmp_path / "bg.vcf").write_text(HEADER + "\n".join(snvs) + "\n")
    same = _score(world, tmp_path / "bg.vcf", tmp_path / "same.zarr", *RUN_OPTS)["scores/tb"]
    plain = _score(world, tmp_path / "bg.vcf", tmp_path / "plain.zarr", "--stats", "SUM,logD2")["scores/tb"]
    for stat in ("SUM", "logD2"):
        want = np.asarray(same[stat][:], np.float32)
        scale = float(np.abs(want).max())
        assert scale > 0
        np.testing.assert_allclose(bg[stat][:], want, rtol=0, atol=1e-6 * scale, err_msg=stat)
        other = np.asarray(plain[stat][:], np.float32)
        assert np.abs(other - want).max() > 1e-3 * scale, stat  # the default-options background differs
    # a cached background under other options is another entry, never reused for this run
    keys = sorted(p.name for p in (tmp_path / "cache").iterdir())
    write_consensus(tmp_path / "run.zarr", groups_yaml=world / "groups.yaml",
                    background=BackgroundSpec(num=12, seed=4), cache=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == keys
