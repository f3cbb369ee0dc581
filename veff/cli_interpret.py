"""Interpretation commands: ``ism``, ``contrib``, ``motifs`` (see docs/interpret.md).

``veff/cli.py`` adds them with ``register(main)`` at its end, as it does the cluster
commands; the one-line error wrapper is taken from there.
"""

from __future__ import annotations

import click


def _baseline_syntax(ctx, param, value: str) -> str:
    """shuffle:N needs a whole N ≥ 1 (a usage error, exit 2, before any work)."""
    if value.startswith("shuffle:"):
        n = value.split(":", 1)[1]
        if not (n.isascii() and n.isdigit() and int(n) >= 1):
            raise click.BadParameter(f"shuffle:N needs a whole number N ≥ 1, got {value!r}")
    return value


def _odd_width(ctx, param, value: int) -> int:
    if value < 1 or value % 2 == 0:
        raise click.BadParameter(f"needs an odd number ≥ 1 (positions centred on the variant), got {value}")
    return value


def register(group: click.Group) -> None:
    from veff.cli import _MAX_INDEL, _REF_MISMATCH, _one_line_errors

    @group.command()
    @click.argument("variants", type=click.Path(dir_okay=False))
    @click.option("--genome", required=True, type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
    @click.option("--model", required=True, help="Checkpoint directory or registered name.")
    @click.option("--out", required=True, type=click.Path(), help="Output Zarr store.")
    @click.option("--width", type=int, default=101, show_default=True, callback=_odd_width, help="Map positions centred on the variant (odd).")
    @click.option("--on-alt", is_flag=True, help="Also map on the ALT background.")
    @click.option("--tracks", default=None, help="Binned models: comma-separated track names or indices (default: all).")
    @click.option("--stats", default=None, help="Statistics (default: logfc,jsd for profile models, SUM for binned).")
    @click.option("--no-rc", is_flag=True, help="Forward strand only (default: average with the reverse complement).")
    @click.option("--batch-size", type=int, default=8, show_default=True, help="Variants per compiled step.")
    @click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
    @click.option("--shifts", default="0", show_default=True, help="Binned models: shift ensemble in bp.")
    @click.option("--center-bp", type=int, default=None, help="Binned models: centre mask width for masked statistics.")
    @click.option("--overwrite", is_flag=True, help="Replace an existing store.")
    @_REF_MISMATCH
    @_MAX_INDEL
    @_one_line_errors
    def ism(variants, genome, model, out, width, on_alt, tracks, stats, no_rc, batch_size, precision,
            shifts, center_bp, overwrite, ref_mismatch, max_indel_len):
        """In-silico saturation mutagenesis around every variant of VARIANTS."""
        from veff.cli import _shifts
        from veff.engine import ScoreOptions
        from veff.interpret.ism import run_ism

        options = ScoreOptions(
            stats=tuple(s.strip() for s in stats.split(",") if s.strip()) if stats else None,
            rc=not no_rc, batch_size=batch_size, precision=precision, center_bp=center_bp,
            shifts=_shifts(shifts),
        )
        n = run_ism(variants, genome, model, out, width=width, on_alt=on_alt, tracks=tracks,
                    options=options, overwrite=overwrite, ref_mismatch=ref_mismatch,
                    max_indel_len=max_indel_len)
        click.echo(f"wrote {out}: {n} variant(s) × {width} positions × 3 bases")

    @group.command()
    @click.argument("inputs", type=click.Path(dir_okay=False))
    @click.option("--genome", required=True, type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
    @click.option("--model", required=True, help="Checkpoint directory or registered name.")
    @click.option("--out", required=True, type=click.Path(), help="Output Zarr store.")
    @click.option("--method", type=click.Choice(["deeplift", "ig", "ixg"]), default="deeplift", show_default=True)
    @click.option("--head", default=None, help="counts | profile (profile models; default counts) or track:NAME,… (binned).")
    @click.option("--baseline", default="shuffle:20", show_default=True, callback=_baseline_syntax, help="shuffle:N, zeros or FILE.npz (array 'baselines', (N, S, L, 4)).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--ig-steps", type=int, default=50, show_default=True, help="Gauss-Legendre nodes for --method ig.")
    @click.option("--overwrite", is_flag=True, help="Replace an existing store.")
    @_one_line_errors
    def contrib(inputs, genome, model, out, method, head, baseline, seed, ig_steps, overwrite):
        """Contribution scores of INPUTS (a VCF/TSV of variants, REF and ALT windows, or a
        BED/narrowPeak of regions)."""
        from veff.interpret.contrib_run import run_contrib

        n = run_contrib(inputs, genome, model, out, method=method, head=head, baseline=baseline,
                        seed=seed, ig_steps=ig_steps, overwrite=overwrite)
        click.echo(f"wrote {out}: {n} item(s)")
