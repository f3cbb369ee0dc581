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
    from veff.settings import click_option as _setting

    @group.command()
    @_setting("variants")
    @_setting("genome")
    @click.option("--model", required=True, help="Checkpoint directory or registered name.")
    @_setting("out")
    @click.option("--width", type=int, default=101, show_default=True, callback=_odd_width, help="Map positions centred on the variant (odd).")
    @click.option("--on-alt", is_flag=True, help="Also map on the ALT background.")
    @click.option("--tracks", default=None, help="Binned models: comma-separated track names or indices (default: all).")
    @_setting("stats", help="Statistics (default: logfc,jsd for profile models, SUM for binned).")
    @_setting("rc")
    @_setting("batch_size", type=click.IntRange(min=1), default=8, help="Variants per compiled step.")
    @_setting("precision")
    @_setting("shifts")
    @_setting("center_bp")
    @_setting("overwrite")
    @_REF_MISMATCH
    @_MAX_INDEL
    @_one_line_errors
    def ism(variants, genome, model, out, width, on_alt, tracks, stats, rc, batch_size, precision,
            shifts, center_bp, overwrite, ref_mismatch, max_indel_len):
        """In-silico saturation mutagenesis around every variant of VARIANTS."""
        from veff.engine import ScoreOptions
        from veff.interpret.ism import run_ism

        options = ScoreOptions(stats=stats, rc=rc, batch_size=batch_size, precision=precision,
                               center_bp=center_bp, shifts=shifts)
        n = run_ism(variants, genome, model, out, width=width, on_alt=on_alt, tracks=tracks,
                    options=options, overwrite=overwrite, ref_mismatch=ref_mismatch,
                    max_indel_len=max_indel_len)
        click.echo(f"wrote {out}: {n} variant(s) × {width} positions × 3 bases")

    @group.command()
    @click.argument("inputs", type=click.Path(dir_okay=False))
    @click.option("--genome", required=True, type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
    @click.option("--model", required=True, help="Checkpoint directory or registered name.")
    @click.option("-o", "--out", required=True, type=click.Path(), help="Output Zarr store.")
    @click.option("--method", type=click.Choice(["deeplift", "ig", "ixg"]), default="deeplift", show_default=True)
    @click.option("--head", default=None, help="counts | profile (profile models; default counts) or track:NAME,… (binned).")
    @click.option("--baseline", default="shuffle:20", show_default=True, callback=_baseline_syntax, help="shuffle:N, zeros or FILE.npz (array 'baselines', (N, S, L, 4)).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--ig-steps", type=int, default=50, show_default=True, help="Gauss-Legendre nodes for --method ig.")
    @_setting("overwrite")
    @_one_line_errors
    def contrib(inputs, genome, model, out, method, head, baseline, seed, ig_steps, overwrite):
        """Contribution scores of INPUTS (a VCF/TSV of variants, REF and ALT windows, or a
        BED/narrowPeak of regions)."""
        from veff.interpret.contrib_run import run_contrib

        n = run_contrib(inputs, genome, model, out, method=method, head=head, baseline=baseline,
                        seed=seed, ig_steps=ig_steps, overwrite=overwrite)
        click.echo(f"wrote {out}: {n} item(s)")

    @group.command()
    @click.argument("store", type=click.Path(file_okay=False))
    @click.option("--out", default=None, type=click.Path(), help="Directory for TF-MoDISco's inputs, results, pattern table and report.")
    @click.option("--motifs", "meme", default=None, type=click.Path(dir_okay=False),
                  help="MEME database for TOMTOM and the variant scan (default: the shipped JASPAR subset).")
    @click.option("--variants", is_flag=True, help="Annotate each variant's motif effect into STORE (motif_* arrays).")
    @click.option("--min-rel-score", type=float, default=0.8, show_default=True, help="--variants: relative PWM score of an instance.")
    @click.option("--min-delta", type=float, default=0.0, show_default=True, help="--variants: smallest |Δ contribution| listed.")
    @click.option("--max-seqlets", type=click.IntRange(min=1), default=2000, show_default=True, help="modisco-lite: seqlets per metacluster.")
    @click.option("--window", type=click.IntRange(min=1), default=400, show_default=True, help="modisco-lite: central bases used.")
    @click.option("--n-leiden", type=click.IntRange(min=1), default=2, show_default=True, help="modisco-lite: Leiden runs.")
    @click.option("--no-report", is_flag=True, help="Skip the HTML report.")
    @_one_line_errors
    def motifs(store, out, meme, variants, min_rel_score, min_delta, max_seqlets, window, n_leiden, no_report):
        """Motifs of a contribution STORE (veff contrib): TF-MoDISco patterns annotated with
        TOMTOM (--out DIR), and/or per-variant motif effects written into STORE (--variants)."""
        if not out and not variants:
            raise click.UsageError("give --out DIR (motif discovery) and/or --variants (variant annotation)")
        if out:
            from veff.interpret.motifs import ModiscoParams, run_motifs

            pats = run_motifs(store, out, meme=meme, report=not no_report,
                              params=ModiscoParams(max_seqlets=max_seqlets, window=window, n_leiden=n_leiden))
            click.echo(f"wrote {out}: {len(pats)} pattern(s)")
            for p in pats:
                best = f"{p.matches[0][0]} (q={p.matches[0][2]:.2g})" if p.matches else "-"
                click.echo(f"  {p.name}\t{p.n_seqlets} seqlets\t{p.consensus}\t{best}")
        if variants:
            from veff.interpret.motif_effect import annotate_store

            n, hit = annotate_store(store, meme, min_rel_score=min_rel_score, min_delta=min_delta)
            click.echo(f"annotated {store}: {n} variant(s), {hit} with a motif effect")
