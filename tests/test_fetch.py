"""``veff fetch``: known models from a Hugging Face cache, offline, converted and loadable.

No network: each test builds a hub cache in tmp in the real layout
(``models--owner--name/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}``)
holding a tiny re-randomised enformer-pytorch model written by ``save_pretrained``, and
runs with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import jax
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
ep = pytest.importorskip("enformer_pytorch")
pytest.importorskip("huggingface_hub")

from veff import fetch as fetch_mod  # noqa: E402
from veff.fetch import FetchError, fetch, list_known  # noqa: E402
from veff.models.enformer import EnformerConfig  # noqa: E402
from veff.models.registry import load_model  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
ENFORMER_COMMIT = "affe5713ae9017460706a44108289b13c5fee16c"


def _tiny_enformer(seed: int):
    cfg = EnformerConfig.tiny()
    model = ep.Enformer.from_hparams(
        dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, attn_dim_key=cfg.attn_dim_key,
        num_downsamples=cfg.num_downsamples, dim_divisible_by=cfg.dim_divisible_by,
        output_heads=cfg.heads_dict, target_length=cfg.output_len, use_tf_gamma=False,
    ).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1 / math.sqrt(int(np.prod(p.shape[1:]))) if p.ndim > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return cfg, model


def _hub_cache(cache, repo_id: str, commit: str, src_dir, ref: str | None = "main") -> None:
    """Put every file of ``src_dir`` into the hub cache as snapshot ``commit``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in sorted(src_dir.iterdir()):
        data = f.read_bytes()
        sha = hashlib.sha256(data).hexdigest()  # LFS blobs are named by their sha256
        (repo / "blobs" / sha).write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", sha), snap / f.name)
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("VEFF_MODELS", str(tmp_path / "models"))
    return cache


def _registry(tmp_path, **entry) -> str:
    path = tmp_path / "known.yaml"
    path.write_text(yaml.safe_dump({"tiny": {
        "repo_id": "veff-test/tiny-enformer", "revision": "main",
        "weights": ["model.safetensors", "pytorch_model.bin"], "files": ["config.json"],
        "format": "enformer-pytorch", "license": "test only",
        "options": {"window_len": 2944, "target_length": 15, "use_tf_gamma": False},
        **entry}}))
    return str(path)


def test_fetch_offline_converts_matches_torch_and_is_idempotent(tmp_path, offline_env,
                                                                monkeypatch):
    cfg, model = _tiny_enformer(seed=1)
    model.save_pretrained(tmp_path / "src", safe_serialization=False)
    _hub_cache(offline_env, "veff-test/tiny-enformer", "1" * 40, tmp_path / "src")
    known = _registry(tmp_path)

    out = fetch("tiny", known_models=known)
    assert out == tmp_path / "models" / "tiny"
    handle = load_model("tiny")  # by name, from $VEFF_MODELS
    assert (handle.name, handle.window_len, handle.output_len) == ("tiny", 2944, 15)
    rng = np.random.default_rng(2)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, cfg.window_len))]
    with torch.no_grad():
        want = model(torch.from_numpy(x))["human"].numpy()
    got = np.asarray(jax.jit(handle.apply)(handle.params, x)["tracks"])
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert meta["fetch"]["commit"] == "1" * 40 and meta["fetch"]["license"] == "test only"
    sha1 = meta["source_sha256"]

    def boom(*a, **k):
        raise AssertionError("converted again")

    with monkeypatch.context() as mp:
        mp.setattr(fetch_mod, "convert", boom)
        assert fetch("tiny", known_models=known) == out  # same bytes: no work

    # the branch moves to new weights -> converted again, from the new commit
    _, model2 = _tiny_enformer(seed=3)
    model2.save_pretrained(tmp_path / "src2", safe_serialization=False)
    _hub_cache(offline_env, "veff-test/tiny-enformer", "2" * 40, tmp_path / "src2")
    fetch("tiny", known_models=known)
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert meta["fetch"]["commit"] == "2" * 40 and meta["source_sha256"] != sha1
    assert not list((tmp_path / "models").glob(".tiny.fetch-*"))  # no leftovers


def test_shipped_enformer_entry_from_pinned_snapshot(tmp_path, offline_env):
    _, model = _tiny_enformer(seed=4)
    model.save_pretrained(tmp_path / "src", safe_serialization=False)
    _hub_cache(offline_env, "EleutherAI/enformer-official-rough", ENFORMER_COMMIT,
               tmp_path / "src", ref=None)  # a pinned commit needs no refs/
    out = fetch("enformer")
    handle = load_model(str(out))
    # the entry converts at enformer-pytorch's 196,608 bp: 1536 bins cropped to 896
    assert (handle.window_len, handle.output_len, handle.bin_size) == (196_608, 896, 128)
    assert handle.track_names[:2] == ["human_0", "human_1"] and len(handle.tracks) == 11
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert meta["fetch"]["repo_id"] == "EleutherAI/enformer-official-rough"
    assert meta["format"] == "enformer-pytorch"


def test_offline_missing_and_unknown_names(tmp_path, offline_env):
    with pytest.raises(FetchError) as e:
        fetch("enformer")
    msg = str(e.value)
    assert "\n" not in msg and "EleutherAI/enformer-official-rough" in msg
    assert "`veff fetch enformer`" in msg and "offline" in msg
    with pytest.raises(FetchError, match="unknown model 'nope'; known: .*borzoi-0"):
        fetch("nope")
    # a snapshot without the weights file is named as missing too
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text("{}")
    _hub_cache(offline_env, "veff-test/tiny-enformer", "3" * 40, tmp_path / "src")
    with pytest.raises(FetchError, match="lacks model.safetensors or pytorch_model.bin"):
        fetch("tiny", known_models=_registry(tmp_path))


def test_list_known():
    known = {m["name"]: m for m in list_known()}
    assert {"enformer", "borzoi-0", "borzoi-1", "borzoi-2", "borzoi-3"} <= set(known)
    assert known["enformer"]["repo_id"] == "EleutherAI/enformer-official-rough"
    assert known["borzoi-2"]["repo_id"] == "johahi/borzoi-replicate-2"
    assert all(m["license"] and m["format"] for m in known.values())
