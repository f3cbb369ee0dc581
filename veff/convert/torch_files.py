"""Reading PyTorch files (``.pt``/``.pth``/``.bin``/``.ckpt``) without running code from them.

A torch file is a pickle, and unpickling can run any code the file names. veff loads torch
files only with ``torch.load(weights_only=True)``: torch's restricted unpickler, which
builds tensors, containers and plain Python values and refuses every other global. A few
extra globals are allowed by name where real checkpoints need them (``NUMPY_SCALARS``
below); nothing is allowed by module prefix. A file that needs more is refused with one
error naming it; ``veff convert --trust-pickle`` (``trust_pickle=True``) unpickles it fully,
which runs code from the file: only for files you trust. There is no silent fallback.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path
from typing import Any

from veff.convert.common import ConvertError

TRUST_HINT = ("`veff convert --trust-pickle` unpickles it fully, which runs code from the "
              "file: only for files you trust")
_MIN_TORCH = (2, 6)  # torch < 2.6: weights_only=True can be bypassed (CVE-2025-32434)

# numpy metrics inside a checkpoint. gReLU's Lightning .ckpt keeps them in ``performance``:
# per-task arrays (``{"val": {"val_mse": array([...], float32)}}``, what
# ``LightningModel.train_on_dataset`` + ``test_on_dataset`` write with grelu 1.x; measured:
# ``get_unsafe_globals_in_checkpoint`` lists numpy._core.multiarray._reconstruct,
# numpy.ndarray, numpy.dtype) or scalars (np.float64, gReLU issue #193:
# numpy.core.multiarray.scalar with numpy 1.x). An array is ``_reconstruct(ndarray, (0,),
# b"b")`` then a BUILD of (shape, dtype, raw bytes); a scalar is ``scalar(dtype, raw bytes)``;
# a dtype is ``numpy.dtype(code, False, True)`` plus a BUILD, which torch allows only for the
# dtype's own class. Numeric and bool dtype classes only: each of these globals builds a
# value from bytes and calls nothing else.
_SCALAR_FUNCS = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
                 "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                 "numpy.ndarray")
_NUMERIC_DTYPES = ("BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType",
                   "Int32DType", "UInt32DType", "Int64DType", "UInt64DType", "LongDType",
                   "ULongDType", "LongLongDType", "ULongLongDType", "ShortDType", "UShortDType",
                   "IntDType", "UIntDType", "ByteDType", "UByteDType", "Float16DType",
                   "Float32DType", "Float64DType", "LongDoubleDType")


def _resolve(name: str) -> Any | None:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def numpy_scalar_globals() -> list[Any]:
    """The exact globals a checkpoint holding numpy arrays or scalars of numbers needs (those
    this numpy has)."""
    import numpy as np

    found = [_resolve(n) for n in _SCALAR_FUNCS] + [np.dtype]
    found += [_resolve(f"numpy.dtypes.{n}") for n in _NUMERIC_DTYPES]
    out: list[Any] = []
    for g in found:
        if g is not None and g not in out:
            out.append(g)
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _torch():
    try:
        import torch
    except ImportError:
        raise ConvertError("reading torch files needs torch (pip install torch); or convert a "
                           ".safetensors file") from None
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit())
    if version < _MIN_TORCH:
        raise ConvertError(f"torch {torch.__version__} cannot load files safely (weights_only "
                           "bypass, CVE-2025-32434); install torch >= 2.6")
    return torch


def _needed_globals(torch, path: str) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - a legacy (non-zip) file cannot be scanned
        return []


def load_torch(path: str | Path, *, trust_pickle: bool = False, allow: list[Any] = ()) -> Any:
    """``torch.load`` of ``path`` to CPU: restricted to tensors and plain values plus the
    globals in ``allow``, or, with ``trust_pickle``, a full unpickle. Errors are one
    :class:`ConvertError` naming the file."""
    torch = _torch()
    path = str(path)
    if not Path(path).is_file():
        raise ConvertError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip, or pickle PROTO
        raise ConvertError(f"{path}: not a torch file (neither torch's zip format nor a "
                           "pickle); check the path and --format")
    if trust_pickle:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - arbitrary code ran: anything can be raised
            raise ConvertError(f"{path}: cannot unpickle ({type(e).__name__}: "
                               f"{_first_line(e)})") from None
    import pickle

    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allow)):
            warnings.simplefilter("ignore")  # torch's multi-line notes about pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "weights only" not in text.lower():
            raise ConvertError(f"{path}: cannot read as a torch file ({_first_line(e)})") from None
        needed = _needed_globals(torch, path) or re.findall(r"GLOBAL ([\w.]+)", text)[:1]
        if needed:
            what = (f"references {', '.join(needed[:4])}{', …' if len(needed) > 4 else ''}, "
                    "which veff does not load (it never runs code from a file)")
        else:
            reason = text.partition("WeightsUnpickler error:")[2].strip()
            what = ("cannot be read by torch's restricted loader"
                    + (f" ({_first_line(ValueError(reason))})" if reason else ""))
        raise ConvertError(f"{path}: {what}; {TRUST_HINT}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for foreign files
        raise ConvertError(f"{path}: cannot read as a torch file ({type(e).__name__}: "
                           f"{_first_line(e)})") from None
