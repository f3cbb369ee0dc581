"""Compare two veff stores array by array, bitwise (NaN payloads included)."""

from __future__ import annotations

import numpy as np
import zarr


def arrays(path) -> dict[str, np.ndarray]:
    out = {}

    def walk(group, prefix):
        for name, node in group.members():
            if isinstance(node, zarr.Array):
                out[prefix + name] = node[...]
            else:
                walk(node, prefix + name + "/")

    walk(zarr.open_group(str(path), mode="r"), "")
    return out


def assert_same_store(a, b) -> None:
    """Every array of the two stores equal, bitwise (NaN payloads included)."""
    x, y = arrays(a), arrays(b)
    assert sorted(x) == sorted(y)
    for name in x:
        assert x[name].dtype == y[name].dtype and x[name].shape == y[name].shape, name
        if x[name].dtype.kind == "f":
            assert np.array_equal(x[name].view(np.uint32), y[name].view(np.uint32)), name
        else:
            assert np.array_equal(x[name], y[name]), name
