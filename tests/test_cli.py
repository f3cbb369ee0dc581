"""The CLI layer: options reach the converters, and bad options give one line."""

from click.testing import CliRunner

from helpers_h5 import write_chrombpnet_h5  # tests/ is on sys.path (pytest rootdir-less prepend)
from veff.cli import main


def test_convert_passes_options_and_refuses_foreign_ones(tmp_path):
    h5 = tmp_path / "bias.h5"
    write_chrombpnet_h5(h5, kind="bias", filters=5, n_layers=2, seed=0)
    run = CliRunner().invoke
    r = run(main, ["convert", str(h5), "--format", "chrombpnet-h5", "--out", str(tmp_path / "a"), "--name", "b"])
    assert r.exit_code == 0, r.output
    r = run(main, ["convert", str(h5), "--format", "chrombpnet-h5", "--out", str(tmp_path / "c"), "--head", "human"])
    assert r.exit_code == 1
    assert r.output.strip() == "veff: error: format chrombpnet-h5 does not take option(s) head"
    r = run(main, ["models"], env={"VEFF_MODELS": str(tmp_path)})
    assert r.exit_code == 0 and "\na  " in r.output and "bpnet" in r.output  # registered by directory name


def test_unknown_statistic_and_bad_shifts_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["score", "x.vcf", "--genome", "g.fa", "--model", "m", "--out",
                                   str(tmp_path / "o.zarr"), "--shifts", "0,a"])
    assert r.exit_code == 2 and "--shifts" in r.output
