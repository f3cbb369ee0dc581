"""The bad-input corpus (tests/corpus_list.py): every case gives the expected exit code and
first stderr words, never a traceback (in process: no uncaught exception), never a silent
drop (every record of a `check`/`score` that succeeds is in its output), and never touches
what the user had (foreign directories are compared before and after)."""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from corpus_cases import HEADER  # noqa: E402
from corpus_list import CASES, OK3  # noqa: E402

from veff.checkpoint import save_checkpoint  # noqa: E402
from veff.cli import main  # noqa: E402
from veff.models import bpnet  # noqa: E402

CFG = bpnet.BPNetConfig(filters=3, n_layers=2, input_len=61, output_len=23, conv1_kernel=5, profile_kernel=7)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("corpus")
    fa = d / "g.fa"
    seqs = {"chr1": "ACGT" * 500, "chr2": "GATTACA" * 43, "chrM": "ACGT" * 50}
    fa.write_text("".join(f">{k}\n" + "\n".join(v[i:i + 60] for i in range(0, len(v), 60)) + "\n"
                          for k, v in seqs.items()))
    model = d / "tiny"
    save_checkpoint(model, arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(1)),
                    metadata={"name": "tiny"})
    model2 = d / "tiny2"
    save_checkpoint(model2, arch="bpnet", config=CFG.to_dict(), params=bpnet.init(CFG, jax.random.key(2)),
                    metadata={"name": "tiny2"})
    store_vcf = d / "store.vcf"
    store_vcf.write_text(HEADER + OK3)
    store = d / "store.zarr"
    r = CliRunner().invoke(main, ["score", str(store_vcf), "--genome", str(fa), "--model", str(model),
                                  "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    return {"fa": str(fa), "model": str(model), "model2": str(model2), "store": str(store),
            "store_vcf": str(store_vcf)}


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _statuses_from_check(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z_]+)\s+([\d,]+)\s+[\d.]+%$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2).replace(",", ""))
    return counts


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus(case, world, tmp_path, monkeypatch):
    # the world's store is shared: cases that write to it get their own copy
    paths = dict(world, dir=str(tmp_path))
    store_copy = tmp_path / "store.zarr"
    shutil.copytree(world["store"], store_copy)
    paths["store"] = str(store_copy)
    for name, make in case.files.items():
        paths[name] = str(make(tmp_path, world))
    cmd = [a.format(**paths) for a in case.cmd]
    for k, v in (case.env or {}).items():
        monkeypatch.setenv(k, v.format(**paths))
    watched = {p: _tree_digest(Path(p)) for n, p in paths.items()
               if n in ("foreign", "z", "f") and Path(p).exists() and Path(p).is_dir()}
    watched_files = {p: Path(p).read_bytes() for n, p in paths.items() if n == "f" and Path(p).is_file()}

    r = CliRunner().invoke(main, cmd, input=case.stdin)
    stderr = r.stderr
    where = f"\ncmd: veff {' '.join(cmd)}\nexit: {r.exit_code}\nstderr: {stderr}\nstdout: {r.stdout[-2000:]}"
    # no traceback: every exception became a line and an exit code
    assert r.exception is None or isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}{where}"
    assert "Traceback" not in r.output, where
    if case.exit is None:
        assert r.exit_code != 0, where
    else:
        assert r.exit_code == case.exit, where
    if r.exit_code != 0:
        first = stderr.strip().splitlines()[0] if stderr.strip() else ""
        assert first, f"a failure must say why on stderr{where}"
        assert first.startswith(("veff:", "Usage:", "Error:")), where
        if case.err:
            assert re.search(case.err, stderr), where
    # nothing of the user's is touched
    for p, digest in watched.items():
        assert _tree_digest(Path(p)) == digest, f"{p} changed{where}"
    for p, data in watched_files.items():
        assert Path(p).read_bytes() == data, f"{p} changed{where}"
    if r.exit_code != 0:
        return
    if cmd[0] == "check":
        counts = _statuses_from_check(r.stdout)
        if case.rows is not None:
            assert sum(counts.values()) == case.rows, where
        for status, n in (case.statuses or {}).items():
            assert counts.get(status, 0) == n, f"{status}{where}"
        if case.statuses:
            assert sum(counts.values()) == sum(case.statuses.values()), where
    elif cmd[0] == "score":
        out = Path(cmd[cmd.index("--out") + 1])
        root = zarr.open_group(str(out), mode="r")
        status = list(root["variants"]["status"][:])
        if case.rows is not None:
            assert len(status) == case.rows, where
        for s, n in (case.statuses or {}).items():
            assert status.count(s) == n, f"{s}{where}"
        for model in root["scores"].group_keys():
            for stat in root["scores"][model].array_keys():
                a = root["scores"][model][stat][:]
                if a.dtype.kind == "f" and a.ndim == 2:
                    ok = np.array(status) == "ok"
                    assert np.isfinite(a[ok]).all() and np.isnan(a[~ok]).all(), f"{model}/{stat}{where}"


def test_corpus_size():
    assert len(CASES) >= 120, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)
