"""Nothing from a file runs: malicious torch pickles are refused by every converter that reads
torch files, and a native checkpoint is verified (digest over weights and config.json,
finite weights, readable header, a JSON object config) before anything uses it."""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from veff.checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    checkpoint_digest,
    load_checkpoint,
    save_checkpoint,
)
from veff.cli import main

torch = pytest.importorskip("torch")

TORCH_FORMATS = ("bpnet-lite", "enformer-pytorch", "borzoi-pytorch", "grelu")
ROOT = Path(__file__).resolve().parents[1]


class _Exec:
    """Unpickling calls builtins.exec(code): the classic payload."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


class _Runstring:
    """numpy.testing's runstring(code, dict) runs code: a numpy global that an allow-list by
    module prefix ("numpy.*") lets through."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return (runstring, (self.code, {}))


def _payloads(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """name -> file; each writes ``marker`` when fully unpickled."""
    code = f"open({str(marker)!r}, 'w').close()"
    w = torch.zeros(3)
    files = {}
    for kind, obj in (("exec", _Exec(code)), ("runstring", _Runstring(code))):
        sd = {"iconv.weight": w, "evil": obj}
        files[f"{kind}.pt"] = sd
        files[f"{kind}.bin"] = sd
        files[f"{kind}.ckpt"] = {"state_dict": {"model.x": w},
                                 "hyper_parameters": {"model_params": {"model_type": "EnformerModel"}},
                                 "performance": {"val": obj}}
    out = {}
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        out[name] = tmp_path / name
    legacy = tmp_path / "legacy.pt"  # torch's pre-zip format
    torch.save({"evil": _Exec(code)}, legacy, _use_new_zipfile_serialization=False)
    out["legacy.pt"] = legacy
    raw = tmp_path / "raw.pt"  # a bare pickle, not a torch file at all
    raw.write_bytes(pickle.dumps({"evil": _Exec(code)}))
    out["raw.pt"] = raw
    return out


def test_payloads_really_run_code_when_fully_unpickled(tmp_path):
    """The test files are live: torch.load(weights_only=False) runs them."""
    marker = tmp_path / "ran"
    files = _payloads(tmp_path, marker)
    for name in ("exec.pt", "runstring.ckpt"):
        torch.load(files[name], weights_only=False)
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
def test_no_converter_runs_a_pickle_payload(tmp_path, fmt):
    marker = tmp_path / "ran"
    files = _payloads(tmp_path, marker)
    for name, path in files.items():
        r = CliRunner().invoke(main, ["convert", str(path), "--format", fmt,
                                      "--out", str(tmp_path / f"out_{name}")])
        assert not marker.exists(), f"{fmt} ran code from {name}"
        assert r.exit_code == 1, (fmt, name, r.output)
        assert r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
        assert r.output.startswith(f"veff: error: {path}"), r.output
        if name != "raw.pt":  # a bare pickle is not a torch file at all
            assert "--trust-pickle" in r.output and "runs code" in r.output, r.output
        assert not (tmp_path / f"out_{name}").exists()


def test_refusal_names_the_global_and_says_what_trust_means(tmp_path):
    files = _payloads(tmp_path, tmp_path / "ran")
    r = CliRunner().invoke(main, ["convert", str(files["runstring.ckpt"]), "--format", "grelu",
                                  "--out", str(tmp_path / "o")])
    assert "numpy.testing._private.utils.runstring" in r.output
    assert "only for files you trust" in r.output
    assert not (tmp_path / "ran").exists()


def test_trust_pickle_is_documented_on_convert():
    r = CliRunner().invoke(main, ["convert", "--help"])
    assert r.exit_code == 0
    assert "--trust-pickle" in r.output and "runs code from the file" in " ".join(r.output.split())


def test_trust_pickle_loads_a_whole_bpnet_lite_module(tmp_path):
    pytest.importorskip("bpnetlite")
    from bpnetlite.bpnet import BPNet

    model = BPNet(n_filters=5, n_layers=2, n_outputs=1, n_control_tracks=0, verbose=False)
    torch.save(model, tmp_path / "m.torch")  # bpnet-lite's own way: a whole pickled module
    args = ["convert", str(tmp_path / "m.torch"), "--format", "bpnet-lite", "--input-len", "300"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 1 and "--trust-pickle" in r.output and not (tmp_path / "a").exists()
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--trust-pickle"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "b").arch == "bpnet"


def test_trust_pickle_is_refused_by_formats_without_torch_files(tmp_path):
    from helpers_h5 import write_chrombpnet_h5

    h5 = tmp_path / "bias.h5"
    write_chrombpnet_h5(h5, kind="bias", filters=5, n_layers=2, seed=0)
    r = CliRunner().invoke(main, ["convert", str(h5), "--format", "chrombpnet-h5",
                                  "--out", str(tmp_path / "o"), "--trust-pickle"])
    assert r.exit_code == 1 and "--trust-pickle is for torch files" in r.output


def test_numpy_allow_list_is_exact():
    from veff.convert.torch_files import numpy_scalar_globals

    names = {f"{g.__module__}.{g.__qualname__}" for g in numpy_scalar_globals()}
    assert "numpy.ndarray" in names and "numpy.dtype" in names
    assert not any("testing" in n or "Object" in n or "Void" in n or "Str" in n for n in names)
    assert all(n.startswith("numpy.") for n in names)


# ----------------------------------------------------------------------------- checkpoints
def _tiny(tmp_path: Path, name: str = "ck", config: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    save_checkpoint(tmp_path / name, arch="bpnet", config=config or {"gamma": "tf"},
                    params={"a": {"kernel": rng.normal(size=(3, 2)).astype(np.float32)},
                            "b": np.arange(5, dtype=np.float32)},
                    tracks=[{"name": "t0"}], metadata={"name": name})
    return tmp_path / name


def _rewrite(path: Path, edit) -> None:
    doc = json.loads((path / CONFIG).read_text())
    edit(doc)
    (path / CONFIG).write_text(json.dumps(doc))


def test_digest_covers_config_json(tmp_path):
    a = load_checkpoint(_tiny(tmp_path, "a", {"gamma": "tf"}))
    b = load_checkpoint(_tiny(tmp_path, "b", {"gamma": "enformer_pytorch"}))
    assert (a.params["b"] == b.params["b"]).all() and a.sha256 != b.sha256
    # editing config.json after the fact (a gamma setting, a track name) is refused
    for edit in (lambda d: d["config"].update(gamma="enformer_pytorch"),
                 lambda d: d["tracks"][0].update(name="other"),
                 lambda d: d["metadata"].update(head_tracks={"human": ["x"]}),
                 lambda d: d.update(arch="enformer")):
        _rewrite(tmp_path / "a", edit)
        with pytest.raises(CheckpointError, match="config.json was changed"):
            load_checkpoint(tmp_path / "a")
        _tiny(tmp_path, "a", {"gamma": "tf"})
    assert load_checkpoint(tmp_path / "a").sha256 == a.sha256  # deterministic
    # the model's name and provenance describe it: a renamed copy keeps the digest
    _rewrite(tmp_path / "a", lambda d: d["metadata"].update(name="renamed", note="x"))
    assert load_checkpoint(tmp_path / "a").sha256 == a.sha256


def test_weights_edit_is_refused(tmp_path):
    path = _tiny(tmp_path)
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_format_1_checkpoints_still_load(tmp_path):
    import hashlib

    path = _tiny(tmp_path)
    sha_w = hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
    _rewrite(path, lambda d: d.update(format_version=1, sha256=sha_w))
    ck = load_checkpoint(path)
    assert ck.sha256 != sha_w  # reported digest covers config.json too
    _rewrite(path, lambda d: d.update(sha256="0" * 64))
    with pytest.raises(CheckpointError, match="weights file was changed"):
        load_checkpoint(path)


def _with_valid_digest(path: Path) -> None:
    _rewrite(path, lambda d: d.update(sha256=checkpoint_digest(d, path / WEIGHTS)))


def test_nan_and_inf_weights_are_refused_by_name(tmp_path):
    from safetensors.numpy import save_file

    for bad, word in ((np.nan, "NaN"), (np.inf, "Inf")):
        path = _tiny(tmp_path)
        save_file({"a/kernel": np.ones((3, 2), np.float32),
                   "b": np.array([0, bad, 1], np.float32)}, str(path / WEIGHTS))
        _with_valid_digest(path)
        with pytest.raises(CheckpointError, match=rf"tensor 'b' holds {word}") as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="tensor 'x' holds NaN"):
        save_checkpoint(tmp_path / "n", arch="bpnet", config={}, params={"x": np.array([np.nan])})


def test_corrupt_header_and_bad_config_are_one_line_errors(tmp_path):
    path = _tiny(tmp_path)
    (path / WEIGHTS).write_bytes(b"\xff" * 8 + b"{not json")
    _with_valid_digest(path)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS}: not a readable safetensors file"):
        load_checkpoint(path)

    for text, match in (("3", "holds a JSON int, not an object"), ("[1]", "not an object"),
                        ("{", "invalid JSON"), ('{"arch": 1, "config": {}, "sha256": ""}',
                                                "field 'arch' is not a JSON string"),
                        ('{"arch": "bpnet", "config": 3, "sha256": ""}', "'config' is not")):
        path = _tiny(tmp_path)
        (path / CONFIG).write_text(text)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(path)

    path = _tiny(tmp_path)
    (path / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=f"no {WEIGHTS}"):
        load_checkpoint(path)


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path):
    (tmp_path / "g.fa").write_text(">chr1\n" + "ACGT" * 50 + "\n")
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
                                    "chr1\t10\t.\tC\tG\n")
    path = _tiny(tmp_path)
    for text in ("3", "{"):
        (path / CONFIG).write_text(text)
        r = CliRunner().invoke(main, ["score", str(tmp_path / "v.vcf"), "--genome",
                                      str(tmp_path / "g.fa"), "--model", str(path), "--out",
                                      str(tmp_path / "o.zarr"), "--quiet"])
        assert r.exit_code == 1, r.output
        assert r.output.startswith(f"veff: error: {path / CONFIG}: ") and r.output.count("\n") == 1
        assert "Traceback" not in r.output and not (tmp_path / "o.zarr").exists()
    r = CliRunner().invoke(main, ["models"], env={"VEFF_MODELS": str(tmp_path)})
    assert r.exit_code == 0 and "invalid" in r.output, r.output


def test_demo_checkpoints_load_with_the_new_digest():
    demo = ROOT / "checkpoints" / "demo"
    if not demo.is_dir():
        pytest.skip("no demo checkpoints")
    for role in ("bias", "nobias", "full"):
        doc = json.loads((demo / role / CONFIG).read_text())
        assert doc["format_version"] == 2
        load_checkpoint(demo / role)
