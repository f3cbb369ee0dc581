"""`veff demo` (the README's first command) runs the whole main job offline."""

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from veff.cli import main
from veff.demo import demo_dir


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    src = demo_dir()
    for part in ("nobias", "full", "bias"):
        assert (src / part / "MANIFEST.json").is_file(), part
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    store = tmp_path / "demo.zarr"
    v = xr.open_zarr(store, group="variants")
    assert (v["status"].values == "ok").all()
    root = xr.open_zarr(store)
    models = root.attrs["models"]
    assert len(models) == 2
    for m in models:
        s = xr.open_zarr(store, group=f"scores/{m}")
        assert np.isfinite(s["logfc"].values).all()
    g = xr.open_zarr(store, group="consensus/accessibility")
    assert g["score"].shape[0] == v.sizes["variant"]
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")
    assert (tmp_path / "scores.tsv").stat().st_size > 0
