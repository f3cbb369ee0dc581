"""A real trained mini-Borzoi (calico/baskerville tests/data/eval: 131,072 bp, 74 tracks):
convert the Keras h5 and predict chr1:400,000-531,072 of hg38; compare every block with an
independent float64 numpy forward that walks the h5's own Keras graph
(tests/helpers_numpy_borzoi.py), so the layer mapping, the numerics and the converter are
all checked against the file itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from veff.checkpoint import CheckpointError, load_checkpoint
from veff.convert.baskerville import convert_baskerville, read_targets
from veff.convert.common import ConvertError
from veff.models import borzoi as bz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_numpy_borzoi import keras_forward  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "baskerville"
H5, PARAMS, TARGETS, FASTA = (DATA / n for n in (
    "eval_model.h5", "eval_params.json", "tiny_hg38_targets.txt", "hg38_1m.fa.gz"))
START0, END0 = 400_000, 531_072

# veff block -> Keras layer output of the same tensor
KERAS_BLOCKS = {
    "conv_dna": "max_pooling1d",
    **{f"res_tower/{i}": f"conv1d_{i + 1}" for i in range(6)},
    "transformer_in": "max_pooling1d_6",
    "transformer/0": "add_1",
    "transformer/1": "add_3",
    "unet/0": "separable_conv1d",
    "unet/1": "separable_conv1d_1",
    "crop": "cropping1d",
    "final": "tf.nn.gelu_10",
    "tracks": "switch_reverse",
}


def _need_data() -> None:
    for p in (H5, PARAMS, TARGETS, FASTA):
        if not p.is_file():
            pytest.skip(f"shared test data {p} is not present")


def _onehot_window() -> np.ndarray:
    import pyfaidx

    fa = pyfaidx.Fasta(str(FASTA))
    try:
        seq = str(fa["chr1"][START0:END0]).upper()
    finally:
        fa.close()
    assert len(seq) == END0 - START0
    lut = np.zeros((256, 4), np.float32)
    for i, c in enumerate("ACGT"):
        lut[ord(c), i] = 1.0  # N and anything else: all zero
    return lut[np.frombuffer(seq.encode("ascii"), np.uint8)][None]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    _need_data()
    out = tmp_path_factory.mktemp("borzoi") / "eval"
    convert_baskerville(H5, PARAMS, out, targets=TARGETS)
    return out


def test_params_json_config():
    _need_data()
    cfg = bz.BorzoiConfig.from_baskerville_params(PARAMS)
    assert cfg.window_len == 131_072 and cfg.res_filters == (80, 88, 96, 104, 120, 128)
    assert (cfg.num_heads, cfg.key_size, cfg.value_size, cfg.num_layers) == (2, 32, 64, 2)
    assert cfg.transformer_len == 1024 and cfg.bin_size == 32 and cfg.output_len == 2048
    assert cfg.heads == (("human", 74), ("mouse", 32)) and cfg.final_filters is None


def test_real_weights_match_independent_numpy(converted):
    ckpt = load_checkpoint(converted)
    handle = bz.from_checkpoint(ckpt)
    assert (handle.kind, handle.bin_size, handle.window_len, handle.output_len) == \
        ("binned", 32, 131_072, 2048)
    assert [t["name"] for t in handle.tracks][:2] == ["CNhs10752+", "CNhs10752-"]
    x = _onehot_window()
    assert 0 < x.sum() <= x.shape[1]

    cfg = bz.BorzoiConfig.from_dict(ckpt.config)
    out = jax.jit(lambda p, x: bz.apply(cfg, p, x, return_intermediates=True))(handle.params, x)
    ours = {k: np.asarray(v) for k, v in out["intermediates"].items()}
    ours["tracks"] = np.asarray(out["tracks"])
    ref = keras_forward(str(H5), x)

    report, bad = [], []
    for block, layer in KERAS_BLOCKS.items():
        a, b = ours[block], ref[layer]
        assert a.shape == b.shape, (block, a.shape, b.shape)
        abs_err = float(np.max(np.abs(a - b)))
        rel_err = abs_err / float(np.max(np.abs(b)))
        report.append(f"  {block:16s} {abs_err:.2e}  {rel_err:.2e}")
        if rel_err > 1e-4:
            bad.append(block)
    print("\n[real mini-Borzoi, chr1:400,000-531,072] max abs / rel difference per block:")
    print("\n".join(report))
    assert not bad, f"blocks off by more than 1e-4 relative: {bad}"

    tracks = ours["tracks"]
    assert tracks.shape == (1, 2048, 74)
    assert float(np.max(np.abs(tracks - ref["switch_reverse"]))) <= 1e-4
    assert np.all(np.isfinite(tracks)) and np.all(tracks > 0)
    assert np.all(tracks[0].std(axis=0) > 1e-4), "a track is constant along the window"
    # the handle's pure apply (what the engine jits) matches the reference as well
    engine = np.asarray(jax.jit(handle.apply)(handle.params, x)["tracks"])
    assert float(np.max(np.abs(engine - ref["switch_reverse"]))) <= 1e-4


def test_targets_and_strand_pairs(converted):
    doc = json.loads((Path(converted) / "config.json").read_text())
    tracks = doc["tracks"]
    assert len(tracks) == 74
    assert tracks[0] == {"name": "CNhs10752+", "description":
                         "CAGE:oral squamous cell carcinoma cell line:Ca9-22", "strand_pair": 1,
                         "clip": 384.0, "clip_soft": 64.0, "scale": 1.0, "sum_stat": "sum_sqrt"}
    pairs = [t["strand_pair"] for t in tracks]
    assert all(pairs[p] == i for i, p in enumerate(pairs))
    assert sum(p != i for i, p in enumerate(pairs)) == 54  # 27 stranded pairs: 74 -> 47
    assert read_targets(TARGETS) == tracks


def test_converter_errors(tmp_path):
    _need_data()
    with pytest.raises(ConvertError, match="params.json"):
        from veff.convert.baskerville import read

        read(H5)
    with pytest.raises(ConvertError, match="one head with 74 outputs"):
        convert_baskerville(H5, PARAMS, tmp_path / "m", head="mouse")
    params = json.loads(PARAMS.read_text())
    params["model"]["trunk"][1]["repeat"] = 5  # one res block fewer than the file has
    (tmp_path / "p.json").write_text(json.dumps(params))
    with pytest.raises(ConvertError) as e:
        convert_baskerville(H5, tmp_path / "p.json", tmp_path / "bad")
    assert "does not match" in str(e.value)
    lines = TARGETS.read_text().splitlines()
    bad_targets = tmp_path / "t.txt"
    bad_targets.write_text("\n".join(lines[:11]) + "\n")  # header + 5 closed pairs
    with pytest.raises(ConvertError, match="10 targets, but head 'human' has 74"):
        convert_baskerville(H5, PARAMS, tmp_path / "t", targets=bad_targets)
    rows = [ln.split("\t") for ln in lines]
    assert rows[25][7] == "24" and rows[26][7] == "25"  # two unstranded tracks
    rows[25][7], rows[26][7] = "25", "24"  # pair them: symmetric, but not what the h5 says
    bad_targets.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    with pytest.raises(ConvertError, match="strand pairs differ"):
        convert_baskerville(H5, PARAMS, tmp_path / "t", targets=bad_targets)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "t").exists()


def test_window_length_override(converted):
    ckpt = load_checkpoint(converted)
    longer = bz.from_checkpoint(ckpt, window_len=196_608)
    assert longer.output_len == 196_608 // 32 - 2 * 1024
    with pytest.raises(CheckpointError, match="too few"):
        bz.from_checkpoint(ckpt, window_len=65_536)
    with pytest.raises(CheckpointError, match="multiple of"):
        bz.from_checkpoint(ckpt, window_len=131_072 + 64)
