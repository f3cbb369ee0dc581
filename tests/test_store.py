"""The Zarr store: layout per the contract, region writes, done markers, the writer lock."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from veff.store import Store, StoreError
from veff.types import Status, Variant


def _variants(n):
    statuses = [Status.OK, Status.REF_MISMATCH, Status.UNKNOWN_CONTIG]
    return [
        Variant(chrom="chr1", pos1=100 + i, ref="A", alt="G", id=f"v{i}", status=statuses[i % 3],
                fasta_chrom="chr1", record=i, line=i + 2)
        for i in range(n)
    ]


def _make(tmp_path, n=11, chunk=4):
    store = Store.create(tmp_path / "o.zarr", _variants(n), chunk_size=chunk, run_config={"x": 1})
    store.add_model("m", tracks=["t0", "t1"], stats={"logfc": "log2(a/r)"}, attrs={"checkpoint_sha256": "ab"})
    return store


def test_variants_round_trip_and_xarray(tmp_path):
    store = _make(tmp_path)
    assert store.num_variants == 11 and store.num_chunks == 3
    back = store.read_variants(0, 11)
    assert [v.id for v in back] == [f"v{i}" for i in range(11)]
    assert [v.status for v in back] == [v.status for v in _variants(11)]
    for c in range(store.num_chunks):
        a, b = store.chunk_range(c)
        store.write_scores("m", a, {"logfc": np.full((b - a, 2), c, np.float32)}, np.zeros(b - a, bool))
        store.mark_done(c)
    store.finalize()
    store.close()
    v = xr.open_zarr(tmp_path / "o.zarr", group="variants")
    assert list(v["status"].values[:3]) == ["ok", "ref_mismatch", "unknown_contig"]
    assert v["pos"].dtype == np.int64 and int(v["pos"][0]) == 100
    s = xr.open_zarr(tmp_path / "o.zarr", group="scores/m")
    assert s["logfc"].dims == ("variant", "track")
    assert list(s["track"].values) == ["t0", "t1"]
    np.testing.assert_array_equal(s["logfc"].values[:, 0], [0] * 4 + [1] * 4 + [2] * 3)
    assert s["logfc"].attrs["formula"] == "log2(a/r)"


@pytest.mark.parametrize("write_rows", [1, 8, 9, 1000])
def test_variants_written_in_blocks_of_whole_chunks(tmp_path, monkeypatch, write_rows):
    """The input streams into variants/ about WRITE_ROWS rows at a time, always whole
    chunks (at least one); every block size gives the same arrays and chunk layout."""
    import veff.store as store_module

    monkeypatch.setattr(store_module, "WRITE_ROWS", write_rows)
    store = Store.create(tmp_path / "o.zarr", _variants(23), chunk_size=4, run_config={})
    assert store.num_variants == 23 and store.num_chunks == 6
    assert store.root["variants"]["pos"].chunks == (4,)
    back = store.read_variants(0, 23)
    assert [v.pos1 for v in back] == list(range(100, 123))
    assert [v.id for v in back] == [f"v{i}" for i in range(23)]
    assert [v.status for v in back] == [v.status for v in _variants(23)]
    store.close()


def test_unwritten_scores_are_nan_and_finalize_refuses(tmp_path):
    store = _make(tmp_path)
    store.mark_done(0)
    assert store.pending_chunks() == [1, 2]
    assert np.isnan(store.root["scores"]["m"]["logfc"][:]).all()
    with pytest.raises(StoreError, match="not done"):
        store.finalize()


def test_existing_store_needs_resume_or_overwrite(tmp_path):
    _make(tmp_path).close()
    with pytest.raises(StoreError, match="--resume"):
        Store.create(tmp_path / "o.zarr", _variants(3), chunk_size=4, run_config={})
    s = Store.create(tmp_path / "o.zarr", _variants(3), chunk_size=4, run_config={}, overwrite=True)
    assert s.num_variants == 3


def test_second_writer_is_refused(tmp_path):
    store = _make(tmp_path)
    code = (
        "import sys; from veff.store import Store, StoreError\n"
        "try:\n    Store.open(sys.argv[1])\nexcept StoreError as e:\n    print(e); sys.exit(3)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.zarr")], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert "being written by veff pid" in r.stdout
    store.close()
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.zarr")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
