"""CLI commands for scBasset's cells: ``veff export-cells`` and ``veff cell-groups``."""

from __future__ import annotations

import click

from veff.cli_errors import one_line_errors


def register(main: click.Group) -> None:
    @main.command("export-cells")
    @click.argument("model")
    @click.option("--out", required=True, type=click.Path(dir_okay=False),
                  help="cells.tsv, or cells.h5ad (needs anndata).")
    @one_line_errors
    def export_cells_cmd(model, out):
        """Write an scBasset MODEL's cells: name, intercept and projection (cell embedding)."""
        from veff.cells import export_cells

        click.echo(f"wrote {export_cells(model, out)}")

    @main.command("cell-groups")
    @click.argument("store", type=click.Path(exists=True, file_okay=False))
    @click.option("--cell-groups", "groups", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="TSV: cell<TAB>label, one line per cell.")
    @click.option("--model", default=None, help="Only this scBasset model (default: every one).")
    @one_line_errors
    def cell_groups_cmd(store, groups, model):
        """Mean per-cell scores over cell groups: scores/<model>/group_<stat> (variant, group)."""
        from veff.cells import write_cell_groups

        for name in write_cell_groups(store, groups, model):
            click.echo(f"wrote {name}")
