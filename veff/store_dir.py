"""What lies at a store's path, its writer lock, and writes that fail.

``path_kind`` tells veff's own stores from everything else: a directory is a veff store
when its root ``zarr.json`` attrs carry ``veff_format`` (written first, before any row) or,
from older versions, ``veff_version``. Only such a store is ever replaced or restarted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_NAME = ".veff.lock"


class StoreError(Exception):
    """The store cannot be created, opened or written as asked."""


# What a path at --out is (Store.kind): only veff's own stores are ever replaced.
ABSENT, EMPTY, NOT_A_DIR, FOREIGN, UNSTARTED, STARTED = (
    "absent", "empty", "not a directory", "foreign", "unstarted", "started")


def path_kind(path: str | os.PathLike) -> str:
    """ABSENT, EMPTY (a directory holding nothing, or only a lock file), NOT_A_DIR,
    FOREIGN (anything but a veff store), UNSTARTED (veff's, killed while being created)
    or STARTED."""
    p = Path(path)
    if not p.exists():
        return NOT_A_DIR if p.is_symlink() else ABSENT
    if not p.is_dir():
        return NOT_A_DIR
    if {e.name for e in os.scandir(p)} <= {LOCK_NAME}:
        return EMPTY
    attrs = root_attrs(p)
    if attrs is None or not ("veff_format" in attrs or "veff_version" in attrs):
        return FOREIGN
    if "veff_version" in attrs and attrs.get("ready", True):
        return STARTED
    return UNSTARTED


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.EIO: "an I/O error"}


def write_error(path: Path, exc: OSError, after: str) -> StoreError:
    where = f" ({exc.filename})" if exc.filename else ""
    return StoreError(f"cannot write {path}: {WRITE_ERRORS[exc.errno]}{where}; {after}")


@contextlib.contextmanager
def write_errors(path: Path, after: str) -> Iterator[None]:
    """A full disk, a read-only or forbidden directory: one line that says what is kept."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise write_error(path, exc, after) from None


def root_attrs(path: str | os.PathLike) -> dict[str, Any] | None:
    """The root group's attrs as ``zarr.json`` holds them; None if it is not a Zarr v3 group."""
    try:
        doc = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None


def empty_dir(path: Path, *, keep: str | None) -> None:
    """Delete everything in ``path`` but ``keep`` (the lock file, held by the caller)."""
    for entry in os.scandir(path):
        if entry.name == keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def take_lock(path: str | os.PathLike, *, shared: bool, busy: str) -> int:
    """Take the store's ``.veff.lock`` without waiting: exclusive for a whole-store writer,
    shared for one of several partition writers. Returns the descriptor that holds it (closing
    it, or the process ending, releases it). ``busy`` completes the refusal message and may
    name ``{holder}``, the last exclusive writer."""
    lock_path = Path(path) / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            holder = lock_path.read_text().strip() or "another process"
            raise StoreError(f"{path} " + busy.format(holder=holder)) from None
        raise
    return fd
