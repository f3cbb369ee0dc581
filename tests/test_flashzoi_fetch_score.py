"""Flashzoi end to end, offline: ``veff fetch flashzoi-0`` (the shipped registry entry, from
a hub cache in tmp holding a tiny re-randomised borzoi-pytorch ``Borzoi(flashed=True)``),
then ``veff score`` with that Flashzoi, the demo chromBPNet and a scBasset in one pass."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("borzoi_pytorch")
pytest.importorskip("huggingface_hub")

from helpers_flashzoi import install_mha_standin, torch_flashzoi  # noqa: E402
from test_fetch import _hub_cache  # noqa: E402

from veff.cli import main  # noqa: E402
from veff.fetch import fetch, known_models_path, list_known  # noqa: E402
from veff.models.borzoi import BorzoiConfig  # noqa: E402
from veff.models.registry import load_model  # noqa: E402

DEMO = known_models_path().parents[1] / "checkpoints" / "demo"
CFG = BorzoiConfig.small(res_filters=(17, 19, 23, 29, 31, 272), num_heads=2, num_kv_heads=1,
                         key_size=136, value_size=136, ffn_dim=544, num_layers=1,
                         attention="rotary", rotary_dim=128, rotary_base=20000.0)


def test_registry_lists_four_flashzoi_replicates():
    known = {m["name"]: m for m in list_known()}
    for i in range(4):
        m = known[f"flashzoi-{i}"]
        assert m["repo_id"] == f"johahi/flashzoi-replicate-{i}"
        assert m["format"] == "borzoi-pytorch" and "model card" in m["license"]


def test_fetch_then_score_with_chrombpnet(tmp_path, monkeypatch):
    install_mha_standin(monkeypatch)
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("VEFF_MODELS", str(tmp_path / "models"))
    torch_flashzoi(CFG, seed=3).save_pretrained(tmp_path / "src")
    _hub_cache(cache, "johahi/flashzoi-replicate-0", "2" * 40, tmp_path / "src")
    # the shipped entry, with options for the tiny model (fetch converts the weights file
    # alone: the published model's 8 heads and 6144 bins are the converter's defaults) and
    # without the 7611-track table
    entry = yaml.safe_load(known_models_path().read_text())["flashzoi-0"]
    assert entry["options"] == {}
    entry.pop("targets_from_package")
    entry["options"] = {"window_len": CFG.window_len, "bins_to_return": CFG.output_len,
                        "num_heads": CFG.num_heads}
    (tmp_path / "known.yaml").write_text(yaml.safe_dump({"flashzoi-0": entry}))
    fetch("flashzoi-0", known_models=str(tmp_path / "known.yaml"))
    handle = load_model("flashzoi-0")
    assert handle.window_len == CFG.window_len and handle.apply_pair is not None

    lines = (DEMO / "variants.vcf").read_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    (tmp_path / "v.vcf").write_text("".join(head + [x for x in lines if not x.startswith("#")][:12]))
    # and a scBasset model (1,344-bp windows): three window lengths from one genome read
    from helpers_scbasset import random_weights, write_keras_h5

    from veff.convert import convert

    w = random_weights(np.random.default_rng(7), window_len=1344, stem=(5, 17),
                       tower=(5, 6, 7, 6, 5, 7), pre=3)
    convert([str(write_keras_h5(tmp_path / "scb.h5", w))], "scbasset-keras", str(tmp_path / "scb"),
            name="scb")
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, [
        "score", str(tmp_path / "v.vcf"), "--genome", str(DEMO / "genome.fa"),
        "--model", "flashzoi-0", "--model", str(DEMO / "nobias"), "--model", str(tmp_path / "scb"),
        "--out", str(out), "--quiet", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    import zarr

    scores = zarr.open_group(str(out), mode="r")["scores"]
    assert set(scores.group_keys()) == {"flashzoi-0", "demo_nobias", "scb"}
    for name in ("flashzoi-0", "demo_nobias", "scb"):
        arrays = {k: np.asarray(v[:]) for k, v in scores[name].arrays()}
        assert arrays, name
        for k, v in arrays.items():
            if v.dtype.kind == "f" and v.ndim == 2:
                assert v.shape[0] == 12 and np.isfinite(v).all(), (name, k)
                assert np.abs(v).max() > 0, (name, k)
