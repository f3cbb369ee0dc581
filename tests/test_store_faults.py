"""Faults: a full disk, a read-only store, a damaged store. Each is one line that says what is
kept and what to do; following it gives the store an uninterrupted run writes, bitwise.
Exports and reports refuse a damaged store naming the chunk and never leave a partial file."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil

import numpy as np
import pytest
import zarr

import zarr.storage._local as zarr_local
from helpers_store import assert_same_store, invoke, one_line_error, score_args, write_world
from veff.store import Store

FORMATS = ("tsv", "parquet", "vcf", "polyfun")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("faults"))[0]


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "full.zarr"
    code, output = invoke(score_args(world, out))
    assert code == 0, output
    return out


def _fail_zarr_writes(monkeypatch, err, *, under="/scores/", after=1, once_done=0):
    """Zarr's file writes under ``under`` fail with ``err`` from the ``after``-th on, counted
    once ``once_done`` chunks are marked done (0: from the start)."""
    real, calls = zarr_local._put, []

    def put(path, value, exclusive=False):
        path = pathlib.Path(path)
        store = next((p for p in path.parents if p.suffix == ".zarr"), None)
        done = store / "_veff" / "done" if store is not None else None
        if under in str(path) and (not once_done or (done.is_dir() and len(list(done.iterdir())) >= once_done)):
            calls.append(path)
            if len(calls) >= after:
                raise OSError(err, os.strerror(err), str(path))
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", put)


def _fail_markers(monkeypatch, err, *, after=3):
    """Done markers fail with ``err`` from the ``after``-th on (the disk fills between a
    chunk's scores and its marker)."""
    real, calls = pathlib.Path.write_text, []

    def write_text(self, *args, **kwargs):
        if self.suffix == ".wip":
            calls.append(self)
            if len(calls) >= after:
                raise OSError(err, os.strerror(err), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


@pytest.mark.parametrize(
    "err, where, says",
    [
        (errno.ENOSPC, "scores", "the disk is full"),
        (errno.ENOSPC, "marker", "the disk is full"),
        (errno.EDQUOT, "scores", "the disk quota is exceeded"),
        (errno.EROFS, "scores", "the file system is read-only"),
        (errno.EACCES, "scores", "permission denied"),
    ],
    ids=["enospc-scores", "enospc-marker", "edquot", "erofs", "eacces"],
)
def test_write_failure_mid_run_is_one_line_and_resume_is_exact(world, tmp_path, reference, monkeypatch,
                                                                err, where, says):
    out = tmp_path / "o.zarr"
    with monkeypatch.context() as m:
        if where == "scores":  # mid-run: once 2 chunks are done, in the 2nd file of the next
            _fail_zarr_writes(m, err, after=2, once_done=2)
        else:
            _fail_markers(m, err)
        code, output = invoke(score_args(world, out))
    line = one_line_error(code, output, f"cannot write {out}: {says}")
    assert "--resume" in line
    done = [p for p in (out / "_veff" / "done").iterdir()]
    assert 0 < len(done) < 10 and not [p for p in done if p.suffix == ".wip"]
    assert not zarr.open_group(str(out), mode="r", use_consolidated=False).attrs["complete"]
    # space freed (the patch is gone): the resumed store is the uninterrupted run's
    code, output = invoke(score_args(world, out, "--resume"))
    assert code == 0, output
    assert_same_store(reference, out)


def test_disk_full_while_creating_the_models_arrays_then_resume_starts_over(world, tmp_path, reference,
                                                                           monkeypatch):
    out = tmp_path / "o.zarr"
    with monkeypatch.context() as m:
        _fail_zarr_writes(m, errno.ENOSPC, under="/null_", after=1)  # the shuffled null
        code, output = invoke(score_args(world, out))
    assert "(it starts over)" in one_line_error(code, output, f"cannot write {out}: the disk is full")
    assert Store.kind(out) == "unstarted"
    code, output = invoke(score_args(world, out, "--resume"))
    assert code == 0, output
    assert_same_store(reference, out)


def test_disk_full_while_reading_the_input_keeps_nothing(world, tmp_path, monkeypatch):
    out = tmp_path / "o.zarr"
    with monkeypatch.context() as m:
        _fail_zarr_writes(m, errno.ENOSPC, under="/variants/", after=1)
        code, output = invoke(score_args(world, out))
    assert "nothing was kept" in one_line_error(code, output, f"cannot write {out}: the disk is full")
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0555 directory anyway; "
                    "test_write_failure_mid_run_is_one_line_and_resume_is_exact[eacces/erofs] "
                    "covers the same errors by failing the writes")
def test_read_only_store_directory(world, tmp_path, reference):
    out = tmp_path / "o.zarr"
    shutil.copytree(reference, out)
    for marker in sorted((out / "_veff" / "done").iterdir())[-2:]:
        marker.unlink()
    dirs = [p for p in out.rglob("*") if p.is_dir()] + [out]
    for p in dirs:
        p.chmod(0o555)
    try:
        code, output = invoke(score_args(world, out, "--resume"))
        assert "Traceback" not in output and code != 0, output
    finally:
        for p in dirs:
            p.chmod(0o755)
    code, output = invoke(score_args(world, out, "--resume"))
    assert code == 0, output
    assert_same_store(reference, out)


# ---------------------------------------------------------------------------- damaged stores
def _chunk_file(store_path, name, chunk):
    arr = zarr.open_group(str(store_path), mode="r")[name]
    return store_path / name / arr.metadata.encode_chunk_key((chunk,) + (0,) * (arr.ndim - 1))


def _refusals(store, tmp_path):
    """Every export format and the report, each refused: (line, files left in tmp_path)."""
    outs = tmp_path / "outs"
    outs.mkdir(exist_ok=True)
    lines = []
    for fmt in FORMATS:
        code, output = invoke(["export", store, "--format", fmt, "--out", outs / f"x.{fmt}"])
        lines.append(one_line_error(code, output, ""))
    code, output = invoke(["report", store, "--out", outs / "r.html"])
    lines.append(one_line_error(code, output, ""))
    return lines, sorted(p.name for p in outs.iterdir())


@pytest.mark.parametrize("name", ["scores/m/logfc", "scores/m/window_padded", "variants/pos", "variants/flipped"])
def test_a_deleted_chunk_is_refused_by_export_and_report(tmp_path, reference, world, name):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    _chunk_file(store, name, 3).unlink()
    lines, left = _refusals(store, tmp_path)
    assert left == []  # nothing written, no temporary file left
    for line in lines:
        assert line.startswith(f"veff: error: {name} chunk 3 is missing: the store {store} is damaged; "), line
    if name.startswith("scores/"):
        # what the line says to do works: delete the marker, resume, export
        assert f"delete its done marker {store}/_veff/done/00000003" in lines[0]
        (store / "_veff" / "done" / "00000003").unlink()
        code, output = invoke(score_args(world, store, "--resume"))
        assert code == 0, output
        assert_same_store(reference, store)
        code, output = invoke(["export", store, "--format", "tsv", "--out", tmp_path / "x.tsv"])
        assert code == 0, output
    else:
        assert "score the VCF again" in lines[0]


def test_a_corrupt_chunk_is_named(tmp_path, reference):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    # the report reads the first statistic, every export logfc (PolyFun keeps effects only)
    first = zarr.open_group(str(store), mode="r")["scores/m"].attrs["statistics"][0]
    for stat in {first, "logfc"}:
        _chunk_file(store, f"scores/m/{stat}", 5).write_bytes(b"not zstd")
    lines, left = _refusals(store, tmp_path)
    assert left == []
    for line in lines:
        assert any(line.startswith(f"veff: error: scores/m/{stat} chunk 5 cannot be read (")
                   for stat in {first, "logfc"}), line


def test_incomplete_store_and_lost_marker_are_refused(tmp_path, reference):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    (store / "_veff" / "done" / "00000002").unlink()
    lines, _ = _refusals(store, tmp_path)
    assert all("chunk 2 has no done marker" in ln and "--resume" in ln for ln in lines), lines
    zarr.open_group(str(store), mode="r+", use_consolidated=False).attrs["complete"] = False
    lines, _ = _refusals(store, tmp_path)
    assert all("the run is not complete" in ln for ln in lines), lines


def test_export_is_renamed_into_place_only_when_complete(tmp_path, reference, monkeypatch):
    """A crash half-way through an export leaves the previous file as it was, no partial one."""
    import veff.export as ex

    out = tmp_path / "x.tsv"
    out.write_text("the previous export\n")
    real, calls = ex._long_frame, []

    def frame(src, a, b):
        calls.append(a)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(src, a, b)

    monkeypatch.setattr(ex, "_long_frame", frame)
    with pytest.raises(RuntimeError, match="killed"):
        ex.export(reference, "tsv", out)
    assert out.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tsv"]
    monkeypatch.setattr(ex, "_long_frame", real)
    assert ex.export(reference, "tsv", out) == [out]
    body = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]  # provenance
    assert body[0].startswith("chrom\tpos\tref\talt")


def test_every_chunk_is_stored_even_all_fill(tmp_path):
    """An all-NaN score chunk and an all-False flag are written as files (so that a missing
    file always means damage)."""
    from veff.types import Status, Variant

    rows = [Variant(chrom="chr1", pos1=10 + i, ref="A", alt="G", id=f"v{i}", status=Status.UNKNOWN_CONTIG)
            for i in range(6)]
    s = Store.create(tmp_path / "s.zarr", rows, chunk_size=4, run_config={})
    s.add_model("m", tracks=["t"], stats={"x": "f"}, attrs={"checkpoint_sha256": "a"})
    for c in range(s.num_chunks):
        a, b = s.chunk_range(c)
        s.write_scores("m", a, {"x": np.full((b - a, 1), np.nan, np.float32)}, np.zeros(b - a, bool))
        s.mark_done(c)
    s.finalize()
    s.close()
    for name in ("scores/m/x", "scores/m/window_padded", "variants/flipped"):
        for c in range(2):
            assert _chunk_file(tmp_path / "s.zarr", name, c).is_file(), (name, c)
