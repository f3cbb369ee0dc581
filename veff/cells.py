"""Cell-level outputs of scBasset models: the cell embedding export and cell-group means.

- ``export_cells(model, out)``: one row per cell of the model: name, intercept (the per-cell
  bias) and the projection weights ``emb_0 … emb_{k-1}`` (scBasset's cell embedding,
  calico ``get_cell_embedding``); ``.tsv`` or ``.h5ad`` (when anndata is installed).
- ``write_cell_groups(store, groups_tsv)``: for every kind "cells" model in a scored store,
  each per-cell statistic ``<stat>`` (variant, track=cell) gets ``group_<stat>`` (variant,
  group): the mean over each group's cells, with a ``group`` coordinate; and the cells'
  group labels are stored as ``track_description`` (where the store has none), so a
  consensus member ``{model: M, stat: logit_diff, match: "^B cell$"}`` selects that group's
  cells (veff/track_groups.py matches names and descriptions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class CellsError(Exception):
    """A model or store that has no cells, or a bad cell table."""


def _scbasset_handle(spec: str):
    from veff.models.registry import load_model

    handle = load_model(spec)
    if handle.kind != "cells":
        raise CellsError(f"{handle.name}: a {handle.arch} model has no cells (export-cells "
                         "takes an scBasset checkpoint)")
    return handle


def export_cells(spec: str, out: str) -> Path:
    handle = _scbasset_handle(spec)
    params = handle.params
    kernel = np.asarray(params["cells"]["kernel"], np.float32)
    bias = np.asarray(params["cells"]["bias"], np.float32)
    if handle.num_folds > 1:  # one embedding per fold: export their mean, say so in the name
        kernel, bias = kernel.mean(axis=0), bias.mean(axis=0)
    names = handle.track_names
    out_path = Path(out)
    if out_path.suffix == ".h5ad":
        try:
            import anndata
        except ImportError:
            raise CellsError("writing .h5ad needs anndata (pip install anndata); or write "
                             ".tsv") from None
        import pandas as pd

        ad = anndata.AnnData(obs=pd.DataFrame({"intercept": bias}, index=pd.Index(names, name="cell")))
        ad.obsm["X_scbasset"] = kernel.T.copy()
        ad.uns["veff"] = {"model": handle.name, "checkpoint_sha256": handle.sha256,
                          "num_folds": handle.num_folds}
        ad.write_h5ad(out_path)
        return out_path
    if out_path.suffix not in (".tsv", ".txt"):
        raise CellsError(f"{out}: write .tsv or .h5ad")
    cols = ["cell", "intercept"] + [f"emb_{i}" for i in range(kernel.shape[0])]
    with open(out_path, "w") as f:
        f.write("\t".join(cols) + "\n")
        for i, name in enumerate(names):
            vals = [repr(float(bias[i]))] + [repr(float(v)) for v in kernel[:, i]]
            f.write("\t".join([name, *vals]) + "\n")
    return out_path


def write_cell_groups(store_path: str, groups_tsv: str, model: str | None = None) -> list[str]:
    """Group means for each kind "cells" model (or ``model``); returns the arrays written."""
    from veff.consensus import _consolidate
    from veff.scoring.cells import STATS, group_means, read_groups
    from veff.store import Store

    store = Store.open(store_path, mode="r+")
    try:
        root = store.root
        models = [m for m in root.attrs["models"]
                  if root["scores"][m].attrs.get("kind") == "cells" and model in (None, m)]
        if not models:
            raise CellsError(f"{store_path}: no scBasset (cells) model"
                             + (f" named {model!r}" if model else "") + " in the store")
        written = []
        for m in models:
            g = root["scores"][m]
            cells = [str(c) for c in g["track"][:]]
            groups, assign = read_groups(groups_tsv, cells)
            for stat in [s for s in g.attrs.get("statistics", []) if s in STATS]:
                means = group_means(np.asarray(g[stat][:]), assign, len(groups))
                store.write_model_array(m, f"group_{stat}", means, ["variant", "group"],
                                        {"formula": f"mean over the group's cells of {stat}",
                                         "groups_file": str(Path(groups_tsv).resolve())})
                written.append(f"scores/{m}/group_{stat}")
            store.write_model_array(m, "group", np.array(groups, dtype=object).astype(str),
                                    ["group"])
            if "track_description" not in g:
                labels = [groups[a] if a >= 0 else "" for a in assign]
                store.write_model_array(m, "track_description", np.array(labels).astype(str),
                                        ["track"])
    finally:
        store.close()
    _consolidate(Path(store_path))
    return written
