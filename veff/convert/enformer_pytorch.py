"""enformer-pytorch (lucidrains, 0.5–0.8.x) weights -> a veff "enformer" checkpoint.

Sources: a state dict saved with ``torch.save`` (.pt/.pth/.bin), a ``.safetensors`` file,
or a Hugging Face directory (``save_pretrained`` / a hub snapshot such as
``EleutherAI/enformer-official-rough``) holding ``config.json`` and ``model.safetensors`` or
``pytorch_model.bin`` (sharded ``*.index.json`` too).

Key spellings. enformer-pytorch registers its blocks twice: as ``stem``/``conv_tower``/
``transformer``/``final_pointwise`` and inside the ``_trunk`` Sequential (indices 1, 2, 4,
6), so ``state_dict()`` carries every trunk tensor under both names, while ``save_pretrained``
with safetensors keeps only one of each tied pair. Both spellings (and ``trunk.`` without
the underscore, ``heads.`` for ``_heads.``, and a whole-dict ``enformer.``/``module.``
prefix) are accepted; duplicates must be equal. ``num_batches_tracked`` counters are
training state and are dropped. Anything else that does not map is an error, listed with
every missing key and shape mismatch in one message.

The config comes from ``config.json`` when there is one, else from the weight shapes. The
input length is not stored in enformer-pytorch weights (positional features are computed
per call): ``window_len`` defaults to enformer-pytorch's 196,608.

Gamma positional features (see docs/models_enformer.md): ``use_tf_gamma=True`` copies
enformer-pytorch's ``precomputed/tf_gammas.pt`` (the table DeepMind's TF model computes at
1536 positions) into the checkpoint as the ``tf_gamma`` param; ``False`` reproduces
enformer-pytorch's ``use_tf_gamma=False`` (its feature-axis normalisation). ``None`` (the
default) runs the model as its source does: config.json's ``use_tf_gamma`` (written by
enformer-pytorch >= 0.8's ``save_pretrained``) where it has one; where the source does not
record it (a bare state dict, or a config.json older than the option, such as
EleutherAI/enformer-official-rough's), the table where it fits (196,608 bp, 32 basis
functions, as ``enformer_pytorch.from_pretrained`` runs the official weights) and TF's own
formula elsewhere, because the published weights were trained in TF. An explicit choice, and
a choice the source does not record, is printed on stderr.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from veff import notes
from veff.checkpoint import Checkpoint, save_checkpoint
from veff.convert.common import ConvertError, Converted, assign, source_record
from veff.convert.torch_files import load_torch
from veff.models import enformer
from veff.models.enformer import EnformerConfig

FORMAT = "enformer-pytorch"
SEQUENCE_LENGTH = 196_608  # enformer-pytorch's default input length

# trunk Sequential index -> named attribute (``Enformer.__init__``: Rearrange at 0, 3, 5).
_TRUNK = {"1": "stem", "2": "conv_tower", "4": "transformer", "6": "final_pointwise"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# --------------------------------------------------------------------------- loading


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    return np.asarray(v)


def _load_file(path: Path, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ConvertError(f"{path}: cannot read as safetensors ({e})") from None
    obj = load_torch(path, trust_pickle=trust_pickle)
    if callable(getattr(obj, "state_dict", None)):  # a whole module (only with trust_pickle)
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise ConvertError(f"{path}: not a state dict of tensors")
    return {str(k): _to_numpy(v) for k, v in obj.items()}


def _weight_files(directory: Path) -> list[Path]:
    for name in _WEIGHT_FILES:
        index = directory / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as e:
                raise ConvertError(f"{index}: malformed index ({e})") from None
            return [directory / s for s in shards]
        if (directory / name).is_file():
            return [directory / name]
    raise ConvertError(f"{directory}: no {' or '.join(_WEIGHT_FILES)} (or sharded index) here")


def load_source(source: str | Path, trust_pickle: bool = False
                ) -> tuple[dict[str, np.ndarray], dict[str, Any], list[Path]]:
    """(state dict as numpy, HF config.json dict or {}, weight files read)."""
    source = Path(source)
    if source.is_dir():
        files = _weight_files(source)
        hf_config = {}
        if (source / "config.json").is_file():
            try:
                hf_config = json.loads((source / "config.json").read_text())
            except json.JSONDecodeError as e:
                raise ConvertError(f"{source / 'config.json'}: invalid JSON ({e})") from None
            if not isinstance(hf_config, dict):
                raise ConvertError(f"{source / 'config.json'}: not a JSON object")
    elif source.is_file():
        files, hf_config = [source], {}
    else:
        raise ConvertError(f"{source}: no such file or directory")
    state: dict[str, np.ndarray] = {}
    for f in files:
        if not f.is_file():
            raise ConvertError(f"{f}: listed in the index but missing")
        state.update(_load_file(f, trust_pickle))
    return state, hf_config, files


# --------------------------------------------------------------------------- key names


def canonical_keys(state: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Fold every spelling onto enformer-pytorch's named-attribute keys
    (``stem.``, ``conv_tower.``, ``transformer.``, ``final_pointwise.``, ``_heads.``)."""
    for prefix in ("module.", "enformer."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    out: dict[str, np.ndarray] = {}
    conflicts = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        canon = key
        m = re.match(r"^_?trunk\.(\d+)\.(.*)$", key)
        if m and m.group(1) in _TRUNK:
            canon = f"{_TRUNK[m.group(1)]}.{m.group(2)}"
        elif key.startswith("heads."):
            canon = "_" + key
        if canon in out:
            if out[canon].shape != value.shape or not np.array_equal(out[canon], value):
                conflicts.append(canon)
            continue
        out[canon] = value
    if conflicts:
        raise ConvertError(f"{source}: tensors stored twice (e.g. under _trunk.* and stem.*) "
                           f"differ: {', '.join(sorted(conflicts))}")
    return out


def _conv1d(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 1, 0)) if w.ndim == 3 else w  # (out, in, k) -> (k, in, out)


def _linear(w: np.ndarray) -> np.ndarray:
    return w.T if w.ndim == 2 else w  # (out, in) -> (in, out)


def _pool(w: np.ndarray) -> np.ndarray:
    # Conv2d(d, d, 1) weight (out, in, 1, 1) -> (in, out)
    return w[:, :, 0, 0].T if w.ndim == 4 and w.shape[2:] == (1, 1) else w


def _head_bias(w: np.ndarray) -> np.ndarray:
    # (1, H, 1, K) -> (H, K)
    return w[0, :, 0, :] if w.ndim == 4 and w.shape[0] == 1 and w.shape[2] == 1 else w


_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_IDENT = lambda w: w  # noqa: E731


def _conv_block_rules(torch_prefix: str, veff_prefix: str) -> list[tuple[str, str, Any]]:
    """BatchNorm at ``.0``, conv at ``.2`` of an enformer-pytorch ConvBlock Sequential."""
    rules = [(rf"{torch_prefix}\.0\.{t}", f"{veff_prefix}/bn/{v}", _IDENT) for t, v in _BN.items()]
    rules += [(rf"{torch_prefix}\.2\.weight", f"{veff_prefix}/conv/kernel", _conv1d),
              (rf"{torch_prefix}\.2\.bias", f"{veff_prefix}/conv/bias", _IDENT)]
    return rules


def _rules() -> list[tuple[re.Pattern, str, Any]]:
    i = r"(?P<i>\d+)"
    r: list[tuple[str, str, Any]] = [
        (r"stem\.0\.weight", "stem/conv/kernel", _conv1d),
        (r"stem\.0\.bias", "stem/conv/bias", _IDENT),
        *_conv_block_rules(r"stem\.1\.fn", "stem/res"),
        (r"stem\.2\.to_attn_logits\.weight", "stem/pool/kernel", _pool),
        *_conv_block_rules(rf"conv_tower\.{i}\.0", "tower/{i}/conv"),
        *_conv_block_rules(rf"conv_tower\.{i}\.1\.fn", "tower/{i}/res"),
        (rf"conv_tower\.{i}\.2\.to_attn_logits\.weight", "tower/{i}/pool/kernel", _pool),
        (rf"transformer\.{i}\.0\.fn\.0\.weight", "transformer/{i}/attn_norm/scale", _IDENT),
        (rf"transformer\.{i}\.0\.fn\.0\.bias", "transformer/{i}/attn_norm/bias", _IDENT),
        *[(rf"transformer\.{i}\.0\.fn\.1\.{n}\.weight", f"transformer/{{i}}/attn/{n}/kernel",
           _linear) for n in ("to_q", "to_k", "to_v", "to_rel_k", "to_out")],
        (rf"transformer\.{i}\.0\.fn\.1\.to_out\.bias", "transformer/{i}/attn/to_out/bias", _IDENT),
        *[(rf"transformer\.{i}\.0\.fn\.1\.{n}", f"transformer/{{i}}/attn/{n}", _head_bias)
          for n in ("rel_content_bias", "rel_pos_bias")],
        (rf"transformer\.{i}\.1\.fn\.0\.weight", "transformer/{i}/ffn_norm/scale", _IDENT),
        (rf"transformer\.{i}\.1\.fn\.0\.bias", "transformer/{i}/ffn_norm/bias", _IDENT),
        (rf"transformer\.{i}\.1\.fn\.1\.weight", "transformer/{i}/ffn_in/kernel", _linear),
        (rf"transformer\.{i}\.1\.fn\.1\.bias", "transformer/{i}/ffn_in/bias", _IDENT),
        (rf"transformer\.{i}\.1\.fn\.4\.weight", "transformer/{i}/ffn_out/kernel", _linear),
        (rf"transformer\.{i}\.1\.fn\.4\.bias", "transformer/{i}/ffn_out/bias", _IDENT),
        *_conv_block_rules(r"final_pointwise\.1", "final"),
        (r"_heads\.(?P<h>[A-Za-z0-9_]+)\.0\.weight", "heads/{h}/kernel", _linear),
        (r"_heads\.(?P<h>[A-Za-z0-9_]+)\.0\.bias", "heads/{h}/bias", _IDENT),
    ]
    return [(re.compile(f"^{p}$"), v, fn) for p, v, fn in r]


_RULES = _rules()


def map_key(key: str) -> tuple[str, Any] | None:
    """Canonical enformer-pytorch key -> (veff flat key, tensor transform), or None."""
    for pattern, target, fn in _RULES:
        m = pattern.match(key)
        if m:
            return target.format(**m.groupdict()), fn
    return None


def to_veff_names(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Canonical enformer-pytorch keys -> ({veff flat key: array}, unmapped torch keys)."""
    found: dict[str, np.ndarray] = {}
    unmapped = []
    for key, value in state.items():
        hit = map_key(key)
        if hit is None:
            unmapped.append(key)
            continue
        target, fn = hit
        found[target] = np.ascontiguousarray(fn(np.asarray(value, np.float32)))
    return found, sorted(unmapped)


# --------------------------------------------------------------------------- config


def _indices(state: dict[str, np.ndarray], prefix: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(rf"^{prefix}\.(\d+)\.", k))})


def _need(state: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in state:
        raise ConvertError(f"{source}: not an enformer-pytorch state dict (no {key!r}; keys "
                           f"start {', '.join(sorted(state)[:8])})")
    return state[key]


def infer_hparams(state: dict[str, np.ndarray], hf_config: dict[str, Any], source: str
                  ) -> dict[str, Any]:
    """enformer-pytorch hyper-parameters from config.json, else from the weight shapes."""
    dim = int(_need(state, "final_pointwise.1.0.weight", source).shape[0])
    half = int(_need(state, "stem.0.weight", source).shape[0])
    tower = _indices(state, "conv_tower")
    depth = len(_indices(state, "transformer"))
    heads, key = 1, 1
    if depth:
        rcb = _need(state, "transformer.0.0.fn.1.rel_content_bias", source)
        heads, key = int(rcb.shape[1]), int(rcb.shape[-1])
    heads_out = {m.group(1): int(v.shape[0]) for k, v in state.items()
                 if (m := re.match(r"^_heads\.([A-Za-z0-9_]+)\.0\.weight$", k))}
    outs = [int(state[f"conv_tower.{i}.0.2.weight"].shape[0]) for i in tower
            if f"conv_tower.{i}.0.2.weight" in state]
    divisible_by = next((d for d in range(dim, 0, -1) if dim % d == 0 and len(outs) >= 2
                         and enformer.exponential_linspace_int(half, dim, len(outs), d) == outs),
                        None)
    hp = {
        "dim": dim, "depth": depth, "heads": heads, "attn_dim_key": key,
        "num_downsamples": len(tower) + 1, "output_heads": heads_out,
        "dim_divisible_by": divisible_by,
    }
    for name in ("dim", "depth", "heads", "attn_dim_key", "num_downsamples", "dim_divisible_by"):
        if name in hf_config:
            hp[name] = int(hf_config[name])
    if isinstance(hf_config.get("output_heads"), dict):
        hp["output_heads"] = {str(k): int(v) for k, v in hf_config["output_heads"].items()}
    if hp["dim_divisible_by"] is None:
        raise ConvertError(f"{source}: tower widths {outs} are not enformer-pytorch's "
                           f"exponential_linspace_int({half}, {dim}) for any dim_divisible_by")
    return hp


def _gamma_basis(use_tf_gamma: bool | None, fits: bool) -> str:
    if use_tf_gamma is None:
        return "tf_table" if fits else "tf"
    return "tf_table" if use_tf_gamma else "enformer_pytorch"


def choose_gamma_basis(hf_config: dict[str, Any], *, fits: bool, use_tf_gamma: bool | None,
                       gamma_basis: str | None, source: str) -> str:
    """The gamma basis to convert with: the explicit choice, else the source's own setting
    (config.json ``use_tf_gamma``), else TF's (the table where it fits). Prints a note on
    stderr whenever the choice is not the source's recorded setting."""
    recorded = hf_config.get("use_tf_gamma")
    recorded = recorded if isinstance(recorded, bool) else None
    says = ("its config.json says use_tf_gamma=" + str(recorded).lower() if recorded is not None
            else "it does not record use_tf_gamma")
    if gamma_basis is not None or use_tf_gamma is not None:
        basis = gamma_basis or _gamma_basis(use_tf_gamma, fits)
        _note(f"{source}: gamma basis {basis!r} as requested ({says})")
        return basis
    if recorded is True and not fits:
        raise ConvertError(
            f"{source}: its config.json says use_tf_gamma=true, but the TF gamma table exists "
            f"only for {enformer.TF_GAMMA_LEN} transformer positions (196,608 bp at 128 bp bins) "
            f"and dim/heads = {6 * enformer.TF_GAMMA_BASIS}, and enformer-pytorch cannot run "
            "this either; convert with --no-use-tf-gamma (enformer-pytorch's computed gamma)")
    if recorded is not None:
        return _gamma_basis(recorded, fits)
    basis = _gamma_basis(None, fits)
    _note(f"{source}: {says}; gamma basis {basis!r} (TF's, as the published weights were "
          "trained); use --no-use-tf-gamma for weights run with enformer-pytorch's "
          "use_tf_gamma=False")
    return basis


def _note(message: str) -> None:
    notes.note(message)


def load_tf_gammas() -> np.ndarray:
    """enformer-pytorch's ``precomputed/tf_gammas.pt`` (3071, 32): gamma features dumped from
    DeepMind's TF model. It cannot be recomputed bit for bit (TF's float32 lgamma
    cancellation is baked into it), so it is read from the installed package."""
    spec = importlib.util.find_spec("enformer_pytorch")
    path = (Path(spec.origin).parent / "precomputed" / "tf_gammas.pt"
            if spec is not None and spec.origin else None)
    if path is None or not path.is_file():
        raise ConvertError(
            "use_tf_gamma needs enformer-pytorch's precomputed/tf_gammas.pt, which is not "
            "installed (pip install enformer-pytorch), or convert with use_tf_gamma=False "
            "(enformer-pytorch's formula) / gamma_basis='tf' (TF's formula)"
        )
    table = _to_numpy(load_torch(path))
    expected = (2 * enformer.TF_GAMMA_LEN - 1, enformer.TF_GAMMA_BASIS)
    if table.shape != expected:
        raise ConvertError(f"{path}: TF gamma table has shape {table.shape}, expected {expected}")
    return table.astype(np.float32)


# --------------------------------------------------------------------------- entry points


def read(
    source: str | Path,
    *,
    use_tf_gamma: bool | None = None,
    gamma_basis: str | None = None,
    window_len: int = SEQUENCE_LENGTH,
    target_length: int | None = None,
    head: str = "human",
    track_names: list[str] | None = None,
    trust_pickle: bool = False,
) -> Converted:
    """One enformer-pytorch source -> veff "enformer" params and config.

    ``gamma_basis`` ("tf", "tf_table", "enformer_pytorch") overrides ``use_tf_gamma``;
    give at most one. ``target_length`` defaults to config.json's when it fits the window,
    else to the derived crop (896 at 196,608 bp). ``trust_pickle``: unpickle a ``.bin``/
    ``.pt`` fully, which runs code from the file (only for files you trust).
    """
    src = str(source)
    if use_tf_gamma is not None and gamma_basis is not None:
        raise ConvertError("give use_tf_gamma or gamma_basis, not both")
    raw, hf_config, _ = load_source(source, trust_pickle)
    state = canonical_keys(raw, src)
    hp = infer_hparams(state, hf_config, src)

    bins = window_len // 2 ** hp["num_downsamples"] if window_len > 0 else 0
    if target_length is None and isinstance(hf_config.get("target_length"), int):
        t = hf_config["target_length"]
        t = bins if t == -1 else t
        if 1 <= t <= bins and (bins - t) % 2 == 0:
            target_length = t
    try:
        probe = EnformerConfig(window_len=window_len, target_length=target_length, head=head,
                               **hp)
        basis = choose_gamma_basis(hf_config, fits=probe.tf_table_fits, use_tf_gamma=use_tf_gamma,
                                   gamma_basis=gamma_basis, source=src)
        config = EnformerConfig(window_len=window_len, target_length=target_length, head=head,
                                gamma_basis=basis, **hp)
    except ValueError as e:
        raise ConvertError(f"{src}: {e}") from None

    found, unmapped = to_veff_names(state)
    if config.gamma_basis == "tf_table":
        found[enformer.TF_GAMMA_KEY] = load_tf_gammas()
    try:
        params = assign(enformer.abstract_params(config), found, source=src)
    except ConvertError as e:
        if unmapped:
            raise ConvertError(f"{e}; unmapped source keys {len(unmapped)}: "
                               f"{', '.join(unmapped)}") from None
        raise
    if unmapped:
        raise ConvertError(f"{src}: weights do not match the model; unexpected "
                           f"{len(unmapped)}: {', '.join(unmapped)}")

    if track_names is not None:
        if len(track_names) != config.num_tracks:
            raise ConvertError(f"{src}: {len(track_names)} track names for the "
                               f"{config.num_tracks} tracks of head {head!r}")
        tracks = [{"name": str(n)} for n in track_names]
    else:
        tracks = [{"name": f"{head}_{i}"} for i in range(config.num_tracks)]
    facts = {"window_len": config.window_len, "output_len": config.output_len,
             "bin_size": config.bin_size, "gamma_basis": config.gamma_basis, "head": head}
    return Converted(arch=enformer.ARCH, config=config.to_dict(), params=params, facts=facts,
                     tracks=tracks)


def convert_enformer_pytorch(
    source: str | Path,
    out: str | Path,
    *,
    use_tf_gamma: bool | None = None,
    name: str | None = None,
    **options: Any,
) -> Checkpoint:
    """Convert one enformer-pytorch source (file or HF directory) into a checkpoint at
    ``out``; ``options`` are :func:`read`'s (gamma_basis, window_len, target_length, head,
    track_names)."""
    converted = read(source, use_tf_gamma=use_tf_gamma, **options)
    files = _weight_files(Path(source)) if Path(source).is_dir() else [Path(source)]
    name = name or Path(out).name
    metadata = {"name": name, "num_folds": 1, **converted.facts,
                **source_record([str(f) for f in files], FORMAT, __name__)}
    return save_checkpoint(out, arch=converted.arch, config=converted.config,
                           params=converted.params, tracks=converted.tracks, metadata=metadata)
