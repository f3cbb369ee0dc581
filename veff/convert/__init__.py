"""Foreign checkpoints -> veff's native format (``veff convert``).

``convert(sources, fmt, out, name)``: each source is one model (one fold); several sources
become one checkpoint whose params carry a leading fold axis. One reader per format, each a
function ``read(path, **options) -> common.Converted``; adding a format is one line in
``_READERS`` plus its module.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from veff.checkpoint import Checkpoint, save_checkpoint
from veff.convert.common import (
    ConvertError,
    Converted,
    check_sources,
    source_record,
    stack_folds,
)

__all__ = ["ConvertError", "Converted", "convert", "FORMATS"]

# format name -> "module:function" (imported lazily: readers pull in h5py / torch).
_READERS = {
    "chrombpnet-h5": "veff.convert.chrombpnet_h5:read",
    "bpnet-lite": "veff.convert.bpnet_lite:read",
    "borzoi-pytorch": "veff.convert.borzoi_pytorch:read",
    "enformer-pytorch": "veff.convert.enformer_pytorch:read",
    "grelu": "veff.convert.grelu:read",
    "baskerville": "veff.convert.baskerville:read",
    "scbasset-keras": "veff.convert.scbasset:read_keras",
    "scbasset-scvi": "veff.convert.scbasset:read_scvi",
    "alphagenome-pytorch": "veff.convert.alphagenome:read",
}
FORMATS = tuple(_READERS)


def _reader(fmt: str):
    if fmt not in _READERS:
        raise ConvertError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    module, func = _READERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def convert(
    sources: list[str], fmt: str, out: str, name: str | None = None, **options: Any
) -> Checkpoint:
    """Convert ``sources`` (one file per fold) of format ``fmt`` into a checkpoint at ``out``.

    ``options`` go to the reader (chrombpnet-h5: ``input_len``, ``output_len`` for files
    without a model_config; bpnet-lite: ``input_len``); None means "not given". All folds must share one
    architecture and config. Raises ConvertError with one clear message.
    """
    sources = [str(s) for s in sources]
    check_sources(sources)
    read = _reader(fmt)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(list(inspect.signature(read).parameters)[1:])
    if options.get("trust_pickle") and "trust_pickle" not in accepted:
        raise ConvertError(f"--trust-pickle is for torch files; format {fmt} reads none "
                           "(nothing from its files is unpickled)")
    if set(options) - accepted:
        raise ConvertError(f"format {fmt} does not take option(s) "
                           f"{', '.join(sorted(set(options) - accepted))}")
    results: list[Converted] = [read(s, **options) for s in sources]
    first = results[0]
    for s, r in zip(sources[1:], results[1:]):
        if (r.arch, r.config, r.facts, r.tracks) != (first.arch, first.config, first.facts,
                                                     first.tracks):
            raise ConvertError(
                f"{s}: {r.arch} model {r.facts} with config {r.config}, but {sources[0]} is "
                f"{first.arch} {first.facts} with config {first.config}; all folds must share "
                "one config"
            )
    trees = [r.params for r in results]
    params = trees[0] if len(trees) == 1 else stack_folds(trees, sources)
    name = name or Path(out).name
    module = _READERS[fmt].split(":")[0]
    metadata = {
        "name": name,
        "num_folds": len(sources),
        **first.facts,
        **source_record(sources, fmt, module),
    }
    return save_checkpoint(out, arch=first.arch, config=first.config, params=params,
                           tracks=first.tracks or [{"name": name}], metadata=metadata)
