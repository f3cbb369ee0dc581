"""Data parallelism over the local devices — the only module that touches sharding APIs.

One ``('data',)`` mesh over the devices veff may use; parameters are replicated, batches
are split along their first axis. A batch whose size is not a multiple of the device count
is padded by the caller (``padded_batch_size``) and the padding rows are dropped after; a
short last batch is padded only to its bucket (``bucket_size``), not to the full batch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` local devices (all when None)."""
    devices = jax.local_devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"--devices {num_devices}: this process sees {len(devices)} device(s)"
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """Smallest multiple of the device count that holds ``batch_size`` rows."""
    n = mesh.size
    return -(-batch_size // n) * n


def bucket_size(rows: int, step_size: int, mesh: Mesh) -> int:
    """Static size for a batch of ``rows`` ≤ ``step_size`` rows: the next power of two ≥
    ``rows``, rounded up to a multiple of the device count, at most ``step_size``. A run
    compiles at most log2(step_size) + 1 shapes, and 3 variants never run 64 windows."""
    if not 1 <= rows <= step_size:
        raise ValueError(f"{rows} rows for a step of {step_size}")
    return min(padded_batch_size(1 << (rows - 1).bit_length(), mesh), step_size)


def batch_spec(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: split along its first axis over the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(arrays: tuple[np.ndarray, ...], mesh: Mesh) -> tuple[jax.Array, ...]:
    """Split every array along its first axis over the mesh."""
    sharding = batch_spec(mesh)
    return tuple(jax.device_put(a, sharding) for a in arrays)
