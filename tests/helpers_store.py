"""Compare two veff stores array by array, bitwise (NaN payloads included)."""

from __future__ import annotations

import numpy as np
import zarr


def arrays(path) -> dict[str, np.ndarray]:
    out = {}

    def walk(group, prefix):
        for name, node in group.members():
            if isinstance(node, zarr.Array):
                out[prefix + name] = node[...]
            else:
                walk(node, prefix + name + "/")

    walk(zarr.open_group(str(path), mode="r"), "")
    return out


def assert_same_store(a, b) -> None:
    """Every array of the two stores equal, bitwise (NaN payloads included)."""
    x, y = arrays(a), arrays(b)
    assert sorted(x) == sorted(y)
    for name in x:
        assert x[name].dtype == y[name].dtype and x[name].shape == y[name].shape, name
        if x[name].dtype.kind == "f":
            assert np.array_equal(x[name].view(np.uint32), y[name].view(np.uint32)), name
        else:
            assert np.array_equal(x[name], y[name]), name


# ---------------------------------------------------------------------------- a tiny run
def write_world(d, *, num=160):
    """A 6 kb genome, ``num`` SNVs every 31 bp (REF from the genome) and a tiny BPNet."""
    from pathlib import Path

    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet

    d = Path(d)
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(list("ACGT"), 200 + 31 * num + 300))
    (d / "g.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i in range(num):
        pos = 200 + 31 * i
        ref = seq[pos - 1]
        alt = "ACGT"[("ACGT".index(ref) + 1 + i % 3) % 4]
        lines.append(f"chr1\t{pos}\tv{i}\t{ref}\t{alt}\t.\t.\t.")
    (d / "v.vcf").write_text("\n".join(lines) + "\n")
    cfg = bpnet.BPNetConfig(filters=7, n_layers=3, input_len=257, output_len=131)
    save_checkpoint(d / "m", arch="bpnet", config=cfg.to_dict(), params=bpnet.init(cfg, 1),
                    metadata={"name": "m"})
    return d, seq


def score_args(world, out, *extra):
    """`veff score` arguments for the tiny run: chunks of 16 rows, a 2-shuffle null."""
    return ["score", str(world / "v.vcf"), "--genome", str(world / "g.fa"), "--model", str(world / "m"),
            "--out", str(out), "--quiet", "--chunk-size", "16", "--batch-size", "16",
            "--null-shuffles", "2", "--null-variants", "20", *extra]


def invoke(args):
    """The CLI in this process: (exit code, stdout + stderr). An exception the CLI did not
    turn into a one-line error (a traceback for a user) is raised here."""
    from click.testing import CliRunner

    from veff.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args], env={"VEFF_JAX_CACHE": ""})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def one_line_error(code, output, starts):
    """A refusal: non-zero exit, no traceback, one ``veff: error:`` line starting with ``starts``."""
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith(f"veff: error: {starts}"), output
    return lines[0]
