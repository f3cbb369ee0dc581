"""Thin command-line layer: each command parses its options and calls one library function.

User errors (bad files, bad options) become one line on stderr and exit status 2; a
traceback means a bug in veff.
"""

from __future__ import annotations

import functools
import os
import sys

import click


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError, ValueError)):
        return True
    # Every exception class veff defines describes bad input, not a bug.
    return type(exc).__module__.startswith("veff.") and isinstance(exc, Exception)


def _one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - filtered right below
            if not _is_user_error(exc) or os.environ.get("VEFF_DEBUG"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"veff: error: {msg}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="veff")
def main() -> None:
    """veff: score genetic variants with sequence-to-function models."""


# ----------------------------------------------------------------------------- check
_REF_MISMATCH = click.option(
    "--ref-mismatch",
    type=click.Choice(["skip", "error", "flip"]),
    default="skip",
    show_default=True,
    help="REF differs from the genome: mark the row ref_mismatch, stop, or swap REF/ALT "
    "when ALT matches (GWAS allele lists).",
)
_MAX_INDEL = click.option(
    "--max-indel-len", type=int, default=50, show_default=True, help="Longer indels get status indel_too_long."
)


@main.command()
@click.argument("variants", type=click.Path(dir_okay=False))
@click.option("--genome", required=True, type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
@_REF_MISMATCH
@_MAX_INDEL
@_one_line_errors
def check(variants, genome, ref_mismatch, max_indel_len):
    """Read VARIANTS against the genome and report a status count per row."""
    from veff.check import check_variants

    report = check_variants(variants, genome, ref_mismatch=ref_mismatch, max_indel_len=max_indel_len)
    click.echo(report.format())


# ----------------------------------------------------------------------------- score
@main.command()
@click.argument("variants", type=click.Path(dir_okay=False))
@click.option("--genome", required=True, type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
@click.option("--model", "models", multiple=True, required=True, help="Checkpoint directory or registered name; repeat for several.")
@click.option("--out", required=True, type=click.Path(), help="Output Zarr store.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--no-rc", is_flag=True, help="Forward strand only (default: average with the reverse complement).")
@click.option("--stats", default=None, help="Comma-separated statistics (default: all that apply).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--center-bp", type=int, default=None, help="Binned models: centre mask width in bp for masked statistics.")
@click.option("--chunk-size", type=int, default=None, help="Variants per resumable chunk (default ~1024).")
@click.option("--shifts", default="0", show_default=True, help="Binned models: shift ensemble in bp, e.g. 0,-1,1.")
@click.option("--untransform", type=click.Choice(["new", "legacy"]), default=None,
              help="Binned models: undo Borzoi's target squashing (baskerville untransform_preds / _preds1).")
@click.option("--peaks", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Profile models: narrowPeak set for the active-allele quantile statistics.")
@click.option("--null-shuffles", type=int, default=0, show_default=True,
              help="Profile models: dinucleotide shuffles per null variant for empirical p-values.")
@click.option("--null-variants", type=int, default=1000, show_default=True, help="Ok rows that seed the null.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--devices", type=int, default=None, help="Use the first N local devices (default: all).")
@click.option("--groups", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Track-group YAML for the consensus (default: accessibility group).")
@click.option("--background-n", type=int, default=10_000, show_default=True,
              help="Random SNVs per model for the consensus background (cached).")
@click.option("--no-consensus", is_flag=True, help="Do not write consensus/ when several models are scored.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run: score only chunks not marked done.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@_REF_MISMATCH
@_MAX_INDEL
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_one_line_errors
def score(variants, genome, models, out, batch_size, no_rc, stats, precision, center_bp, chunk_size,
          shifts, untransform, peaks, null_shuffles, null_variants, seed, devices, groups,
          background_n, no_consensus, resume, overwrite, ref_mismatch, max_indel_len, quiet):
    """Score VARIANTS with one or more models into a Zarr store."""
    from veff.engine import ScoreOptions
    from veff.pipeline import RunSpec, default_chunk_size, run
    from veff.progress import progress_bar

    options = ScoreOptions(
        stats=tuple(s.strip() for s in stats.split(",") if s.strip()) if stats else None,
        rc=not no_rc,
        batch_size=batch_size,
        precision=precision,
        center_bp=center_bp,
        devices=devices,
        shifts=_int_list(shifts, "--shifts"),
        untransform=untransform,
    )
    spec = RunSpec(
        variants=variants,
        genome=genome,
        models=tuple(models),
        out=out,
        options=options,
        chunk_size=chunk_size or default_chunk_size(batch_size),
        resume=resume,
        overwrite=overwrite,
        ref_mismatch=ref_mismatch,
        max_indel_len=max_indel_len,
        peaks=peaks,
        null_shuffles=null_shuffles,
        null_variants=null_variants,
        seed=seed,
        consensus=not no_consensus,
        groups=groups,
        background_n=background_n,
    )
    with progress_bar("scoring", disable=quiet) as update:
        result = run(spec, progress=update)
    click.echo(
        f"{result.out}: {result.num_variants} rows ({result.num_ok} ok), "
        f"{result.chunks_scored} chunk(s) scored in {result.seconds:.1f} s"
        + (f"; consensus groups: {', '.join(result.consensus_groups)}" if result.consensus_groups else ""),
        err=True,
    )


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None


# ----------------------------------------------------------------------------- simulate
@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tiny", is_flag=True, help="A few-second simulation (2 × 40 kb) for tests.")
@click.option("--num-contigs", type=int, default=None)
@click.option("--contig-len", type=int, default=None)
@click.option("--num-peaks", type=int, default=None)
@_one_line_errors
def simulate(out_dir, seed, tiny, num_contigs, contig_len, num_peaks):
    """Simulate ATAC-seq with planted JASPAR motifs, Tn5 bias and a labelled truth VCF."""
    from veff.simulate import SimulationConfig
    from veff.simulate import simulate as run_simulation

    overrides = {k: v for k, v in dict(num_contigs=num_contigs, contig_len=contig_len,
                                        num_peaks=num_peaks).items() if v is not None}
    config = SimulationConfig.tiny(seed=seed) if tiny else SimulationConfig(seed=seed)
    result = run_simulation(out_dir, config=config, **overrides)
    for field in ("genome", "cuts", "fragments", "peaks", "nonpeaks", "variants", "accessibility"):
        click.echo(f"{field:14} {getattr(result, field)}")


# ----------------------------------------------------------------------------- models
@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", required=True,
              type=click.Choice(["chrombpnet-h5", "bpnet-lite", "enformer-pytorch", "borzoi-pytorch", "baskerville", "grelu"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory to write.")
@click.option("--name", default=None, help="Model name (default: the output directory's name).")
@click.option("--params", "params_json", default=None, type=click.Path(exists=True, dir_okay=False), help="baskerville: params.json.")
@click.option("--targets", default=None, type=click.Path(exists=True, dir_okay=False), help="baskerville/borzoi: targets.txt with track names and strand pairs.")
@_one_line_errors
def convert(sources, fmt, out, name, params_json, targets):
    """Convert published weights (SOURCES; several = fold ensemble) into a veff checkpoint."""
    from veff.convert import convert as do_convert

    ckpt = do_convert(list(sources), fmt, out, name=name, params=params_json, targets=targets)
    click.echo(f"wrote {out} ({ckpt.arch}, sha256 {ckpt.sha256[:12]})")


@main.command()
@_one_line_errors
def models():
    """List converted and registered models."""
    from veff.models.registry import list_models

    rows = list_models()
    if not rows:
        click.echo("no models registered (set VEFF_MODELS to a directory of converted checkpoints)")
        return
    click.echo(f"{'name':24} {'arch':12} {'window':>8} {'tracks':>7}  path")
    for r in rows:
        click.echo(f"{r['name']:24} {r['arch']:12} {r['window']:>8} {r['tracks']:>7}  {r['path']}")


if __name__ == "__main__":  # pragma: no cover
    main()
