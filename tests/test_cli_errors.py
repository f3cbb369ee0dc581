"""CLI errors: one line on stderr, never a traceback; exit 1 for errors, 2 for usage errors
(options are checked before any work starts), 130 on Ctrl-C; VEFF_DEBUG=1 shows the
traceback."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner

from veff.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"


def _run(args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def _one_line(r, code: int, start: str = "veff: error: ") -> str:
    err = r.stderr
    assert r.exit_code == code, (r.exit_code, r.output)
    assert err.startswith(start), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in r.output
    return err


def _score(tmp_path, *extra):
    return ["score", tmp_path / "v.vcf", "--genome", tmp_path / "g.fa", "--model", "m",
            "--out", tmp_path / "o.zarr", *extra]


@pytest.mark.parametrize("extra,words", [
    (["--chunk-size", "0"], "Invalid value for '--chunk-size': 0 is not in the range x>=1"),
    (["--background-n", "0"], "Invalid value for '--background-n'"),
    (["--background-n", "-5"], "Invalid value for '--background-n'"),
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["--null-shuffles", "-1"], "Invalid value for '--null-shuffles'"),
    (["--stats", "logfc,nonsense"], "Invalid value for --stats: unknown statistic 'nonsense'"),
    (["--stats", "logfc,,jsd"], "Invalid value for --stats: 'logfc,,jsd' has an empty name"),
    (["--stats", "logSUM@x"], "Invalid value for --stats: unknown statistic 'logSUM@x'"),
    (["--shifts", "0,a"], "Invalid value for --shifts: '0,a' is not a comma-separated list"),
    (["--shifts", "0,1,0"], "Invalid value for --shifts: '0,1,0' repeats a shift"),
    (["--shifts", ","], "Invalid value for --shifts: needs at least one shift"),
    (["--frobnicate"], "No such option '--frobnicate'"),
])
def test_bad_options_are_usage_errors_before_any_work(tmp_path, extra, words):
    # neither the VCF, the genome nor the model exists: the option is refused first
    err = _one_line(_run(_score(tmp_path, *extra)), 2)
    assert err.startswith(f"veff: error: {words}"), err
    assert "--help" in err and not (tmp_path / "o.zarr").exists()


def test_plan_checks_the_same_options(tmp_path):
    err = _one_line(_run(["plan", *_score(tmp_path, "--chunk-size", "0")[1:],
                          "--partitions", "2"]), 2)
    assert "--chunk-size" in err
    err = _one_line(_run(["plan", *_score(tmp_path)[1:], "--partitions", "0"]), 2)
    assert "--partitions" in err


def test_valid_stats_pass_the_option_check(tmp_path):
    # a good --stats gets past parsing: the next error is the missing genome (exit 1)
    err = _one_line(_run(_score(tmp_path, "--stats", "logfc, jsd,logSUM@501")), 1)
    assert "g.fa" in err


@pytest.mark.parametrize("yaml_text,words", [
    ("groups: [", "not valid YAML"),
    ("3", "expected a mapping with a 'groups' list"),
    ("groups:\n  - name: a\n    members: [{model: m}]", "needs 'model' and 'stat'"),
    ("groups:\n  - name: a\n    members: [{model: m, stat: logfc, match: '('}]",
     "bad track pattern"),
    ("groups:\n  - name: a\n    members: [{model: m, stat: logfc, match: 3}]",
     "'match' of 'a' must be a string"),
    ("groups:\n  - name: a\n    members: [{model: m, stat: logfc, tracks: {x: 1}}]",
     "'tracks' of 'a' must be a list"),
    ("threshold: high\ngroups: []", "'threshold' must be a number"),
    ("threshold: 2\ngroups: []", "threshold must be in (0, 1]"),
])
def test_bad_groups_yaml_is_refused_up_front(tmp_path, yaml_text, words):
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml_text)
    # genome, VCF and model are missing: the groups file is read before any of them
    err = _one_line(_run(_score(tmp_path, "--groups", groups)), 1)
    assert err.startswith(f"veff: error: {groups}: ") and words in err, err
    assert not (tmp_path / "o.zarr").exists()


def test_runtime_errors_exit_1_naming_the_file(tmp_path):
    err = _one_line(_run(_score(tmp_path)), 1)
    assert "g.fa" in err
    blocker = tmp_path / "afile"
    blocker.write_text("")
    err = _one_line(_run(["simulate", "--tiny", "--out", blocker / "sub"]), 1)
    assert err == f"veff: error: {blocker / 'sub'}: a part of this path is a file, not a directory\n"


@pytest.mark.parametrize("code,words", [
    (errno.EROFS, "the file system is read-only; write somewhere else"),
    (errno.ENOSPC, "no space left on the device"),
    (errno.EACCES, "permission denied"),
    (errno.ENOTDIR, "a part of this path is a file"),
])
def test_os_errors_are_one_line_with_the_file_and_what_to_do(tmp_path, monkeypatch, code, words):
    import veff.export

    def fail(store, fmt, out, wide=False):
        raise OSError(code, "os text", str(out))

    monkeypatch.setattr(veff.export, "export", fail)
    out = tmp_path / "scores.tsv"
    err = _one_line(_run(["export", tmp_path, "--format", "tsv", "--out", out]), 1)
    assert err == f"veff: error: {out}: {words}" + err[len(f"veff: error: {out}: {words}"):]
    assert words in err


def test_library_errors_are_user_errors(tmp_path, monkeypatch):
    import json

    import veff.export
    from safetensors import SafetensorError

    for exc, words in ((json.JSONDecodeError("Expecting value", "x", 0), "Expecting value"),
                       (SafetensorError("header too large"), "SafetensorError: header too large"),
                       (OverflowError("Python int too large to convert to C long"),
                        "a number is too large"),
                       (RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 GiB"),
                        "out of memory on the device; lower --batch-size"),
                       (MemoryError(), "out of memory; lower --batch-size")):
        def fail(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(veff.export, "export", fail)
        err = _one_line(_run(["export", tmp_path, "--format", "tsv", "--out", tmp_path / "o"]), 1)
        assert words in err, err


def test_a_damaged_store_is_one_line(tmp_path):
    store = tmp_path / "bad.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{")
    _one_line(_run(["export", store, "--format", "tsv", "--out", tmp_path / "x.tsv"]), 1)


def test_bugs_are_internal_errors_and_debug_shows_them(tmp_path, monkeypatch):
    import veff.export

    def bug(*a, **k):
        return {}["missing key"]

    monkeypatch.setattr(veff.export, "export", bug)
    args = ["export", tmp_path, "--format", "tsv", "--out", tmp_path / "o"]
    err = _one_line(_run(args), 1, start="veff: internal error: KeyError: ")
    assert "VEFF_DEBUG=1" in err and "please report" in err
    r = _run(args, env={"VEFF_DEBUG": "1"})
    assert r.exit_code == 1 and isinstance(r.exception, KeyError)  # raised, not swallowed


def test_ctrl_c_exits_130_in_one_line(tmp_path, monkeypatch):
    import veff.export

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(veff.export, "export", interrupted)
    r = _run(["export", tmp_path, "--format", "tsv", "--out", tmp_path / "o"])
    assert r.exit_code == 130 and r.stderr == "veff: interrupted\n"


def test_help_and_version_still_exit_0():
    assert _run(["--help"]).exit_code == 0
    assert _run(["--version"]).exit_code == 0
    assert _run(["score", "--help"]).exit_code == 0


@pytest.mark.skipif(not (DEMO / "bias").is_dir(), reason="no demo checkpoints")
def test_huge_position_is_a_row_status(tmp_path):
    """A 23-digit POS is the row's status (invalid_pos), not an OverflowError in the store."""
    import zarr

    vcf = tmp_path / "big.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
                   "chr1\t99999999999999999999999\t.\tA\tG\n")
    r = _run(["score", vcf, "--genome", DEMO / "genome.fa", "--model", DEMO / "bias",
              "--out", tmp_path / "o.zarr", "--quiet"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert list(zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["variants"]["status"][:]) == ["invalid_pos"]
