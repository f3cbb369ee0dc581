"""How the CLI ends: one line on stderr and an exit status, never a traceback.

Exit status: 0 success; 1 an error (bad input, a file that cannot be read or written, a full
or read-only disk, and also a bug in veff, reported as an internal error); 2 a usage error
(an unknown option, a bad option value); 128 + N after signal N (130 SIGINT, 143 SIGTERM).
``VEFF_DEBUG=1`` re-raises, so the traceback is shown.
"""

from __future__ import annotations

import errno
import functools
import os
import sys

import click

from veff.signals import Interrupted

EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT = 1, 2, 130

_EXTRAS = {"h5py": "convert", "pandas": "export", "pyarrow": "export", "dask": "cluster",
           "distributed": "cluster", "dask_jobqueue": "cluster", "torch": "test"}
# Exceptions raised by these libraries describe the files they read or write (a damaged
# store, an unreadable checkpoint), not a bug in veff.
_FILE_LIBRARIES = ("zarr", "numcodecs", "safetensors", "h5py", "yaml", "pyfaidx", "pysam",
                   "pyBigWig", "pyarrow", "pandas", "huggingface_hub", "json", "gzip", "zlib",
                   "zipfile", "tarfile", "pickle", "_pickle", "torch.serialization")
_OS_HINTS = {
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "no space left on the device; free some space or write somewhere else",
    errno.EDQUOT: "disk quota exceeded; free some space or write somewhere else",
    errno.EACCES: "permission denied; check the permissions or choose another path",
    errno.EPERM: "operation not permitted; check the permissions or choose another path",
    errno.ENOTDIR: "a part of this path is a file, not a directory",
    errno.EISDIR: "this is a directory; a file was expected",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "input/output error from the device",
}


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


def _os_message(exc: OSError) -> str:
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    what = hint or exc.strerror or _first_line(str(exc)) or type(exc).__name__
    if exc.filename is None:
        if exc.errno is None:  # a library's OSError: its message names what failed
            return _first_line(str(exc)) or what
        return what
    name = str(exc.filename)
    if exc.filename2 is not None:
        name = f"{name} -> {exc.filename2}"
    return f"{name}: {what}"


def message(exc: BaseException) -> str:
    """The one line that describes ``exc`` to a user."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        root = exc.name.split(".")[0]
        extra = _EXTRAS.get(root)
        hint = f"pip install 'veff[{extra}]'" if extra else f"pip install {root}"
        return f"this needs the optional package {root}; install it with {hint}"
    if isinstance(exc, OSError):
        return _os_message(exc)
    lines = getattr(exc, "lines", None)  # several independent problems (a resume): one line each
    if lines:
        return "\nveff: error: ".join(lines)
    if isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc):
        return ("out of memory" + (" on the device" if "RESOURCE_EXHAUSTED" in str(exc) else "")
                + "; lower --batch-size (or score fewer models at once)")
    if isinstance(exc, OverflowError):
        return f"a number is too large ({_first_line(str(exc)) or 'overflow'})"
    text = _first_line(str(exc))
    if not text:
        return type(exc).__name__
    module = type(exc).__module__ or ""
    if not module.startswith("veff") and module.split(".")[0] in {m.split(".")[0] for m in _FILE_LIBRARIES}:
        return f"{type(exc).__name__}: {text}"
    return text


def is_user_error(exc: BaseException) -> bool:
    """True: bad input or a failing file system. False: a bug in veff."""
    if isinstance(exc, (OSError, ValueError, OverflowError, EOFError, MemoryError)):
        return True  # OSError covers FileNotFoundError, PermissionError, EROFS, ENOSPC, …
    if "RESOURCE_EXHAUSTED" in str(exc):  # XLA: the device ran out of memory
        return True
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return True
    module = type(exc).__module__ or ""
    if any(module == m or module.startswith(m + ".") for m in _FILE_LIBRARIES):
        return True
    # Every exception class veff defines describes bad input, not a bug.
    return module.startswith("veff.") and isinstance(exc, Exception)


def exit_for(exc: BaseException) -> None:
    """Print ``exc`` as one line and exit with its status (re-raise under VEFF_DEBUG)."""
    if isinstance(exc, Interrupted):  # a clean stop on SIGTERM/SIGINT: 128 + signal
        click.echo(f"veff: {exc}", err=True)
        sys.exit(128 + exc.signum)
    if isinstance(exc, KeyboardInterrupt):
        if os.environ.get("VEFF_DEBUG"):
            raise exc
        click.echo("veff: interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    if os.environ.get("VEFF_DEBUG"):
        raise exc
    if isinstance(exc, BrokenPipeError):  # `veff models | head`: the reader left; say nothing
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(EXIT_ERROR)
    if is_user_error(exc):
        click.echo(f"veff: error: {message(exc)}", err=True)
    else:
        click.echo(f"veff: internal error: {type(exc).__name__}: {_first_line(str(exc))} "
                   "(set VEFF_DEBUG=1 for the traceback; please report)", err=True)
    sys.exit(EXIT_ERROR)


def one_line_errors(fn):
    """Command decorator: any exception becomes one line and exit status 1 (see module doc);
    click's own exceptions (usage errors, exit) pass through to :class:`VeffGroup`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported, never lost
            exit_for(exc)

    return wrapper


class VeffGroup(click.Group):
    """The ``veff`` group: click's usage errors as one line (exit 2), and anything that
    escapes a command reported by :func:`exit_for`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            see = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"veff: error: {_first_line(e.format_message())}{see}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"veff: error: {_first_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("veff: interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        except SystemExit:
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
            exit_for(exc)
        sys.exit(rv if isinstance(rv, int) else 0)
