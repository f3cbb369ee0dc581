"""The Python API: what a notebook calls.

    import veff
    tree = veff.score("variants.vcf.gz", genome="hg38.fa", models=["models/k562"])
    tree["scores/k562"]["logfc"]            # xarray DataArray (variant, track)
    tree = veff.open("scores.zarr")         # a store written by `veff score`
    m = veff.load_model("models/k562")
    out = m.predict(["ACGT..." * ...])      # raw outputs, {"logits", "logcounts"} or {"tracks"}

``score`` runs the same pipeline as ``veff score`` (one run path): without ``out`` it writes
a temporary store, loads it into memory and deletes it; with ``out`` the returned tree is
backed by the store it wrote. See docs/python.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["score", "open", "load_model", "Model"]

_builtin_open = open


def _xarray():
    try:
        import xarray as xr
    except ModuleNotFoundError:  # pragma: no cover - xarray is a core dependency
        raise ModuleNotFoundError("veff's Python API needs xarray: pip install xarray", name="xarray") from None
    return xr


def open(store: str | os.PathLike):  # noqa: A001 - veff.open mirrors xarray.open_*
    """A store written by ``veff score`` as an ``xarray.DataTree`` (lazy, Zarr-backed).

    Groups: ``variants`` (chrom, pos, ref, alt, id, status), ``scores/<model>`` (one
    (variant, track) array per statistic) and, with several models, ``consensus/<group>``."""
    xr = _xarray()
    path = Path(store)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"{path}: not a Zarr store written by veff score")
    with warnings.catch_warnings():  # veff's lock file and _veff/ markers are not Zarr nodes
        warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
        return xr.open_datatree(path, engine="zarr", consolidated=False)


def _spec_fields() -> tuple[set[str], set[str]]:
    from veff.engine import ScoreOptions
    from veff.pipeline import RunSpec

    run = {f.name for f in dataclasses.fields(RunSpec)} - {"variants", "genome", "models", "out", "options"}
    return run, {f.name for f in dataclasses.fields(ScoreOptions)}


def _write_tsv(rows: Iterable[Sequence[Any]], path: Path) -> None:
    """(chrom, pos1, ref, alt[, id]) rows -> variant-scorer's TSV, which veff reads."""
    with _builtin_open(path, "w") as fh:
        for i, row in enumerate(rows):
            if len(row) not in (4, 5):
                raise ValueError(f"variant {i}: expected (chrom, pos, ref, alt[, id]), got {row!r}")
            chrom, pos, ref, alt = (str(x) for x in row[:4])
            vid = str(row[4]) if len(row) == 5 else "."
            fh.write(f"{chrom}\t{pos}\t{ref or '-'}\t{alt or '-'}\t{vid}\n")


def _variant_rows(variants: Any) -> Iterable[Sequence[Any]]:
    """A pandas DataFrame (chrom, pos, ref, alt[, id]) or a sequence of tuples."""
    if hasattr(variants, "itertuples"):
        cols = [c for c in ("chrom", "pos", "ref", "alt", "id") if c in variants.columns]
        if cols[:4] != ["chrom", "pos", "ref", "alt"]:
            raise ValueError("a variants DataFrame needs columns chrom, pos, ref, alt (and optionally id)")
        return variants[cols].itertuples(index=False, name=None)
    return variants


def score(
    variants: str | os.PathLike | Any,
    *,
    genome: str | os.PathLike,
    models: str | Sequence[str],
    out: str | os.PathLike | None = None,
    progress: bool = False,
    **options: Any,
):
    """Score ``variants`` with ``models`` and return the store as an ``xarray.DataTree``.

    ``variants``: a VCF/BCF/TSV path, or (chrom, pos (1-based), ref, alt[, id]) rows (a list
    of tuples or a pandas DataFrame). ``models``: checkpoint directories or registered names.
    ``options``: the `veff score` options under their Python names, e.g. ``stats=("logfc",)``,
    ``rc=False``, ``batch_size=16``, ``precision="bf16"``, ``shifts=(0, -1, 1)``,
    ``ref_mismatch="flip"``, ``resume=True``, ``overwrite=True``.
    ``out``: where to write the store; without it the result is loaded into memory and the
    temporary store removed."""
    from veff.engine import ScoreOptions
    from veff.pipeline import RunSpec, run

    run_fields, score_fields = _spec_fields()
    unknown = [k for k in options if k not in run_fields | score_fields]
    if unknown:
        names = sorted(run_fields | score_fields)
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(names)}"
        raise TypeError(f"veff.score: unknown option {unknown[0]!r}{hint}")
    score_kw = {k: options.pop(k) for k in list(options) if k in score_fields}
    for key in ("stats", "shifts"):
        if key in score_kw and score_kw[key] is not None:
            value = score_kw[key]
            score_kw[key] = tuple([value] if isinstance(value, (str, int)) else value)
    score_opts = ScoreOptions(**score_kw)
    models = (models,) if isinstance(models, (str, os.PathLike)) else tuple(models)

    tmp = None
    try:
        if out is None:
            tmp = Path(tempfile.mkdtemp(prefix="veff-"))
            target = tmp / "scores.zarr"
        else:
            target = Path(out)
        if isinstance(variants, (str, os.PathLike)):
            source = str(variants)
        else:
            tmp = tmp or Path(tempfile.mkdtemp(prefix="veff-"))
            source = str(tmp / "variants.tsv")
            _write_tsv(_variant_rows(variants), Path(source))
        spec = RunSpec(variants=source, genome=str(genome), models=tuple(str(m) for m in models),
                       out=str(target), options=score_opts, **options)
        if progress:
            from veff.progress import progress_bar

            with progress_bar("scoring") as update:
                run(spec, progress=update)
        else:
            run(spec)
        tree = open(target)
        if out is None:
            tree = tree.load()
            tree.close()
        return tree
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded checkpoint (weights verified against its sha256)."""

    handle: Any  # veff.models.base.ModelHandle

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def kind(self) -> str:
        """"profile" (chromBPNet/BPNet: per-base logits + log counts) or "binned" (tracks)."""
        return self.handle.kind

    @property
    def window_len(self) -> int:
        return self.handle.window_len

    @property
    def track_names(self) -> list[str]:
        return self.handle.track_names

    def predict(self, sequences: str | Sequence[str] | np.ndarray, *, rc: bool = False,
                batch_size: int = 8, precision: str = "fp32") -> dict[str, np.ndarray]:
        """Raw outputs for windows of exactly ``window_len`` bases.

        ``sequences``: a string, a list of strings (ACGT; anything else is N), or (N, L)
        uint8 tokens (A=0 C=1 G=2 T=3 N=4). Returns ``{"logits": (N, P), "logcounts": (N,)}``
        for profile models, ``{"tracks": (N, P, T)}`` for binned models; folds/replicates and,
        with ``rc``, the reverse complement averaged as in scoring (docs/python.md)."""
        from veff.engine import predict_tokens
        from veff.types import encode

        if isinstance(sequences, str):
            sequences = [sequences]
        if isinstance(sequences, np.ndarray):
            tokens = np.asarray(sequences, np.uint8)
        else:
            tokens = np.stack([encode(s) for s in sequences]) if len(sequences) else np.zeros((0, self.window_len), np.uint8)
        if tokens.ndim != 2 or tokens.shape[1] != self.window_len:
            raise ValueError(
                f"{self.name}: windows must be {self.window_len} bases, got shape {tokens.shape}"
            )
        return predict_tokens(self.handle, tokens, rc=rc, batch_size=batch_size, precision=precision)


def load_model(spec: str | os.PathLike, name: str | None = None) -> Model:
    """A converted checkpoint directory or registered name (see `veff models`)."""
    from veff.models.registry import load_model as _load

    return Model(_load(str(spec), name=name))
