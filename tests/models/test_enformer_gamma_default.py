"""The enformer-pytorch converter's gamma basis follows the source's own config by default.

A ``save_pretrained`` directory records ``use_tf_gamma`` in config.json; converted without
options, the veff model must run as enformer-pytorch runs that directory, to the parity
tolerance of tests/models/test_enformer_parity.py, for both settings. An explicit option
overrides it and says so on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ep = pytest.importorskip("enformer_pytorch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_enformer_parity import ATOL, REL_TOL, onehot, torch_model  # noqa: E402

from veff.convert import enformer_pytorch as conv  # noqa: E402
from veff.convert.common import ConvertError  # noqa: E402
from veff.models import enformer  # noqa: E402
from veff.models.enformer import EnformerConfig  # noqa: E402


def _saved(model, path: Path, use_tf_gamma: bool) -> Path:
    model.save_pretrained(path, safe_serialization=False)
    assert json.loads((path / "config.json").read_text())["use_tf_gamma"] is use_tf_gamma
    return path


def _max_err(c, model, x) -> tuple[float, float]:
    cfg = EnformerConfig.from_dict(c.config)
    params = jax.tree.map(jnp.asarray, c.params)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(lambda p, v: enformer.apply(p, v, config=cfg))(params, x)["tracks"])
    with torch.no_grad():
        want = model(torch.from_numpy(x))["human"].numpy()
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def test_config_false_gives_enformer_pytorch_gamma(tmp_path, capsys):
    cfg = EnformerConfig.tiny()
    model = torch_model(cfg, use_tf_gamma=False, seed=11)
    src = _saved(model, tmp_path / "hf", use_tf_gamma=False)
    x = onehot(cfg.window_len, seed=12, batch=2)

    c = conv.read(src, window_len=cfg.window_len)  # no gamma option: as config.json says
    assert c.facts["gamma_basis"] == "enformer_pytorch"
    assert "note" not in capsys.readouterr().err  # the source's own setting: nothing to say
    err, scale = _max_err(c, model, x)
    assert err <= REL_TOL * scale + ATOL, (err, scale)

    # TF's formula (the old default here) is a different model: the check tells them apart
    other = conv.read(src, window_len=cfg.window_len, gamma_basis="tf")
    assert "gamma basis 'tf' as requested (its config.json says use_tf_gamma=false)" in (
        capsys.readouterr().err)
    err_tf, _ = _max_err(other, model, x)
    assert err_tf > 10 * (REL_TOL * scale + ATOL), err_tf


@pytest.mark.slow
def test_config_true_gives_tf_table(tmp_path, capsys):
    """196,608 bp and dim/heads = 192: the only shape the TF table exists in."""
    cfg = EnformerConfig.tiny(window_len=196_608, dim=192, heads=1, depth=1, target_length=896)
    model = torch_model(cfg, use_tf_gamma=True, seed=13)
    src = _saved(model, tmp_path / "hf", use_tf_gamma=True)
    x = onehot(cfg.window_len, seed=14)

    c = conv.read(src, window_len=cfg.window_len)
    assert c.facts["gamma_basis"] == "tf_table"
    assert "note" not in capsys.readouterr().err
    err, scale = _max_err(c, model, x)
    assert err <= REL_TOL * scale + ATOL, (err, scale)

    override = conv.read(src, window_len=cfg.window_len, use_tf_gamma=False)
    assert override.facts["gamma_basis"] == "enformer_pytorch"
    assert "as requested (its config.json says use_tf_gamma=true)" in capsys.readouterr().err
    err_py, _ = _max_err(override, model, x)
    assert err_py > 2 * (REL_TOL * scale + ATOL), err_py  # measured 2.5x


def test_config_true_where_no_table_exists_is_an_error(tmp_path):
    cfg = EnformerConfig.tiny()
    src = _saved(torch_model(cfg, use_tf_gamma=True, seed=15), tmp_path / "hf", True)
    with pytest.raises(ConvertError, match="use_tf_gamma=true.*--no-use-tf-gamma"):
        conv.read(src, window_len=cfg.window_len)
    # an explicit choice converts it
    assert conv.read(src, window_len=cfg.window_len, use_tf_gamma=False).facts[
        "gamma_basis"] == "enformer_pytorch"


def test_unrecorded_setting_keeps_tf_default_and_says_so(tmp_path, capsys):
    cfg = EnformerConfig.tiny()
    path = tmp_path / "state.pt"
    torch.save(torch_model(cfg, use_tf_gamma=False, seed=16).state_dict(), path)
    c = conv.read(path, window_len=cfg.window_len)
    assert c.facts["gamma_basis"] == "tf"  # no table at 2,944 bp: TF's formula
    err = capsys.readouterr().err
    assert "does not record use_tf_gamma" in err and "--no-use-tf-gamma" in err
