"""Thin command-line layer: each command parses its options and calls one library function.

Every error ends as one line on stderr (veff/cli_errors.py): exit status 1 for an error, 2
for a usage error (a bad option value, found before any work starts), 130/143 after
SIGINT/SIGTERM. ``VEFF_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

import click

from veff.cli_cluster import cluster_option as _cluster_option
from veff.cli_errors import VeffGroup
from veff.cli_errors import one_line_errors as _one_line_errors
from veff.settings import click_option as _setting
from veff.settings import did_you_mean  # noqa: F401 - other modules use veff.cli.did_you_mean
from veff.signals import stop_requests


@click.group(cls=VeffGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="veff")
def main() -> None:
    """veff: score genetic variants with sequence-to-function models."""
    _enable_compilation_cache()


def _enable_compilation_cache() -> None:
    """Reuse compiled steps across runs (XLA compiles each model's step once per shape);
    $VEFF_JAX_CACHE picks the directory, an empty value turns it off."""
    path = os.environ.get("VEFF_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "veff", "jax"))
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ----------------------------------------------------------------------------- check
_REF_MISMATCH = _setting("ref_mismatch")
_MAX_INDEL = _setting("max_indel_len")


@main.command()
@_setting("variants")
@_setting("genome")
@_REF_MISMATCH
@_MAX_INDEL
@_one_line_errors
def check(variants, genome, ref_mismatch, max_indel_len):
    """Read VARIANTS against the genome and report a status count per row."""
    from veff.check import check_variants

    report = check_variants(variants, genome, ref_mismatch=ref_mismatch, max_indel_len=max_indel_len)
    click.echo(report.format())
    blockers = report.blockers(ref_mismatch)
    for line in blockers:
        click.echo(f"veff: error: {line}", err=True)
    if blockers:  # the input cannot be scored as given
        sys.exit(1)


# ----------------------------------------------------------------------------- score
def run_options(fn):
    """The options that define a scoring run (shared by `score` and `plan`), generated from
    the settings (veff/settings.py); each parameter is named after its RunSpec/ScoreOptions field."""
    from veff.settings import command_options

    return command_options("plan")(fn)


def spec_from_options(**options):
    """The RunSpec of the parsed run options (keyword names are the settings' field names)."""
    from veff.settings import from_cli

    if options.get("groups") is not None:  # a bad YAML is an error now, not after every chunk is scored
        from veff.track_groups import load_groups

        load_groups(options["groups"])
    return from_cli(options)


@main.command()
@run_options
@_setting("resume")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_cluster_option
@_one_line_errors
def score(quiet, cluster, **options):
    """Score VARIANTS with one or more models into a Zarr store."""
    from veff.pipeline import run
    from veff.progress import progress_bar

    from veff.backgrounds import phase_hooks

    spec = spec_from_options(**options)
    bg_start, bg_update = _background_lines(quiet)
    with stop_requests() as stop, progress_bar("scoring", disable=quiet) as update, \
            phase_hooks(progress=bg_update, stop=stop, start=bg_start):
        if cluster is not None:
            from veff.cli_cluster import run_on_cluster

            result = run_on_cluster(spec, cluster, progress=update, stop=stop)
        else:
            result = run(spec, progress=update, stop=stop)
    from veff.store import root_attrs

    groups = list((root_attrs(result.out) or {}).get("models") or [])
    named = ", ".join(f"{given} -> scores/{g}" for given, g in zip(spec.models, groups))
    click.echo(
        f"{result.out}: {result.num_variants} rows ({result.num_ok} ok), "
        f"{result.chunks_scored} chunk(s) scored in {result.seconds:.1f} s"
        + (f"; models: {named}" if named else "")
        + (f"; consensus groups: {', '.join(result.consensus_groups)}" if result.consensus_groups else ""),
        err=True,
    )


def _background_lines(quiet: bool):
    """(start, update) for the consensus background phase: one stderr line per model, then
    its progress (rewritten in place on a terminal, at quarters in a log file)."""
    state = {"done": 0, "mark": 0}
    tty = sys.stderr.isatty()

    def start(model: str, total: int) -> None:
        state.update(done=0, mark=0, model=model)
        if not quiet:
            click.echo(f"veff: consensus background for {model}: scoring {total:,} random SNVs "
                       "(cached for later runs; Ctrl-C stops, --resume finishes)", err=True)

    def update(done_now: int, total: int) -> None:
        state["done"] += done_now
        if quiet:
            return
        pct = 100 * state["done"] // max(total, 1)
        if tty:
            click.echo(f"\r  {state['done']:,}/{total:,} ({pct} %)", err=True,
                       nl=state["done"] >= total)
        elif pct >= state["mark"] + 25 or state["done"] >= total:
            state["mark"] = pct - pct % 25
            click.echo(f"  {state['done']:,}/{total:,} ({pct} %)", err=True)

    return start, update


# ----------------------------------------------------------------------------- simulate
@main.command()
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write.")
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
              type=click.Choice(["chrombpnet-h5", "bpnet-lite", "enformer-pytorch", "borzoi-pytorch", "baskerville", "grelu",
                                 "scbasset-keras", "scbasset-scvi", "alphagenome-pytorch"]))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Checkpoint directory to write.")
@click.option("--name", default=None, help="Model name (default: the output directory's name).")
@click.option("--params", "params_json", default=None, type=click.Path(exists=True, dir_okay=False), help="baskerville: params.json.")
@click.option("--targets", default=None, type=click.Path(exists=True, dir_okay=False), help="baskerville/borzoi: targets.txt with track names and strand pairs.")
@click.option("--head", default=None, help="Enformer/Borzoi/gReLU: which output head to keep (human, mouse).")
@click.option("--window-len", type=int, default=None, help="Enformer/Borzoi: input length to run at (any valid length).")
@click.option("--input-len", type=int, default=None, help="chromBPNet/bpnet-lite: input length for files that do not record it.")
@click.option("--output-len", type=int, default=None, help="chromBPNet h5: output length for files that do not record it.")
@click.option("--use-tf-gamma/--no-use-tf-gamma", default=None,
              help="enformer-pytorch: override the gamma basis (default: as the source's config.json says; where it does not, the TF table where it fits).")
@click.option("--trust-pickle", is_flag=True,
              help="Torch files (bpnet-lite, enformer-pytorch, borzoi-pytorch, grelu): unpickle "
              "fully; runs code from the file; only for files you trust.")
@click.option("--cells", default=None, type=click.Path(exists=True, dir_okay=False),
              help="scBasset: cell names, one a line, in the model's cell order.")
@_one_line_errors
def convert(sources, fmt, out, name, params_json, targets, head, window_len, input_len, output_len, use_tf_gamma,
            trust_pickle, cells):
    """Convert published weights (SOURCES; several = fold ensemble) into a veff checkpoint."""
    from veff.convert import convert as do_convert

    ckpt = do_convert(list(sources), fmt, out, name=name, params=params_json, targets=targets,
                      head=head, window_len=window_len, input_len=input_len,
                      output_len=output_len, use_tf_gamma=use_tf_gamma,
                      trust_pickle=trust_pickle or None, cells=cells)
    click.echo(f"wrote {out} ({ckpt.arch}, sha256 {ckpt.sha256[:12]})")


@main.command()
@click.argument("name")
@click.option("--offline", is_flag=True, default=None, help="Use only the local Hugging Face cache.")
@click.option("--force", is_flag=True, help="Convert again even if up to date.")
@_one_line_errors
def fetch(name, offline, force):
    """Download a known model (see `veff models --known`) and convert it into the models dir."""
    from veff.fetch import fetch as do_fetch

    click.echo(str(do_fetch(name, offline=offline, force=force)))


@main.command()
@click.option("--known", is_flag=True, help="List the public models `veff fetch` knows instead.")
@_one_line_errors
def models(known):
    """List converted and registered models."""
    from veff.models.registry import list_models

    if known:
        from veff.fetch import list_known

        for k in list_known():
            click.echo(f"{k['name']:16} {k['format']:18} {k['repo_id']}@{k['revision'][:12]}  {k['license']}")
        return
    rows = list_models()
    if not rows:
        click.echo("no models registered (set VEFF_MODELS to a directory of converted checkpoints)")
        return
    click.echo(f"{'name':24} {'arch':12} {'window':>8} {'tracks':>7}  path")
    for r in rows:
        window = r["window"] if r["window"] is not None else "?"
        click.echo(f"{r['name']:24} {r['arch']:12} {window:>8} {len(r['tracks']):>7}  {r['path']}")


# ----------------------------------------------------------------------------- demo, report, export
@main.command()
@click.option("-o", "--out", "out_dir", default="veff_demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_one_line_errors
def demo(out_dir, quiet):
    """Run the whole main job on the shipped demo genome, VCF and models."""
    from veff.demo import run_demo
    from veff.progress import progress_bar

    with progress_bar("demo", disable=quiet) as update:
        result = run_demo(out_dir, progress=update)
    r = result.run
    click.echo(f"scored {r.num_variants} rows ({r.num_ok} ok) with 2 models in {r.seconds:.1f} s")
    click.echo(f"store   {result.store}")
    click.echo(f"report  {result.report}")
    click.echo(f"table   {result.table}")


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--genome", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With --model: add REF/ALT prediction panels for the top variants.")
@click.option("--model", "models", multiple=True, help="Checkpoints for the prediction panels.")
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True, help="Rows of each top-variants table.")
@click.option("--panels", type=click.IntRange(min=0), default=4, show_default=True,
              help="REF/ALT prediction panels (the first N top variants; needs --model and --genome).")
@click.option("--genes", default=None, type=click.Path(exists=True, dir_okay=False),
              help="GTF: draw genes under the prediction panels.")
@click.option("--peaks", default=None, type=click.Path(exists=True, dir_okay=False),
              help="BED/narrowPeak: draw peaks under the prediction panels.")
@click.option("--assembly", default="hg38", show_default=True,
              help="UCSC assembly of the genome-browser links; 'none' for no links.")
@_one_line_errors
def report(store, out, genome, models, top, panels, genes, peaks, assembly):
    """Write a self-contained HTML report of a store (consensus, agreement, top variants)."""
    from veff.report import write_report

    path = write_report(store, out, genome=genome, models=list(models) or None, top_n=top, num_panels=panels,
                        genes=genes, peaks=peaks, assembly=None if assembly.lower() == "none" else assembly)
    click.echo(f"wrote {path}")


@main.command("export")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["tsv", "parquet", "polyfun", "vcf", "genes"]))
@click.option("-o", "--out", required=True, type=click.Path(allow_dash=True),
              help="File; - writes tsv/genes to standard output; polyfun: prefix for "
              "PATH.<chrom>.annot.parquet; vcf: .vcf plain, .vcf.gz bgzipped and indexed.")
@click.option("--wide", is_flag=True, help="tsv/parquet: one row per variant instead of one per score.")
@click.option("--tracks", default=None, metavar="all|NAME,...",
              help="vcf, binned models: per-track INFO fields for these tracks (all: every "
              "track) instead of the default summary (the largest-|score| track).")
@_one_line_errors
def export_cmd(store, fmt, out, wide, tracks):
    """Export scores for fine-mapping and annotation tools (`veff help export`)."""
    from veff.export import export

    for path in export(store, fmt, out, wide=wide, **({"tracks": tracks} if tracks else {})):
        if str(path) != "-":  # `-o -`: standard output holds the data only
            click.echo(f"wrote {path}")


@main.command("help")
@click.argument("topic", required=False)
@_one_line_errors
def help_cmd(topic):
    """Print a documentation page (TOPIC, e.g. export, store); without TOPIC, list them."""
    from veff.docs_pages import page, topics

    if topic is None:
        for name, title in topics():
            click.echo(f"{name:18} {title}")
        click.echo("\nveff help TOPIC prints one; `veff COMMAND --help` lists a command's options.")
        return
    click.echo(page(topic), nl=False)


# ----------------------------------------------------------------------------- train, predict
@main.group()
def train():
    """Train models."""


@train.command("chrombpnet")
@click.option("--genome", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--signal", required=True, type=click.Path(exists=True, dir_okay=False), help="bigWig of cut counts or fragments file.")
@click.option("--peaks", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--nonpeaks", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
@click.option("--filters", type=int, default=512, show_default=True)
@click.option("--n-layers", type=int, default=8, show_default=True)
@click.option("--bias-filters", type=int, default=128, show_default=True)
@click.option("--bias-n-layers", type=int, default=4, show_default=True)
@click.option("--input-len", type=int, default=2114, show_default=True)
@click.option("--output-len", type=int, default=1000, show_default=True)
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--valid-contigs", default=None, help="Comma-separated (default chromBPNet fold 0: chr8,chr20).")
@click.option("--test-contigs", default=None, help="Comma-separated (default chr1,chr3,chr6).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True)
@_one_line_errors
def train_chrombpnet_cmd(genome, signal, peaks, nonpeaks, out, filters, n_layers, bias_filters,
                         bias_n_layers, input_len, output_len, epochs, batch_size, lr,
                         valid_contigs, test_contigs, seed, quiet):
    """Train a bias model, then the bias-corrected accessibility model (chromBPNet recipe)."""
    from veff.train import TrainConfig, train_chrombpnet

    split = {}
    if valid_contigs:
        split["valid_contigs"] = tuple(c for c in valid_contigs.split(",") if c)
    if test_contigs:
        split["test_contigs"] = tuple(c for c in test_contigs.split(",") if c)
    config = TrainConfig(filters=filters, n_layers=n_layers, bias_filters=bias_filters,
                         bias_n_layers=bias_n_layers, input_len=input_len, output_len=output_len,
                         epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **split)
    result = train_chrombpnet(genome, signal, peaks, nonpeaks, out, config=config,
                              command=" ".join(["veff", *sys.argv[1:]]), progress=not quiet)
    click.echo(f"bias    {result.bias_dir}\nnobias  {result.nobias_dir}\nfull    {result.full_dir}")


@main.command()
@click.argument("regions", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", required=True, help="chromBPNet checkpoint (nobias, or full: bias is removed).")
@click.option("--genome", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="bigWig to write.")
@click.option("--no-rc", is_flag=True)
@click.option("--with-bias", is_flag=True, help="Keep the bias model of a full checkpoint (observed-signal prediction).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@_one_line_errors
def predict(regions, model, genome, out, no_rc, with_bias, batch_size):
    """Bias-corrected per-base accessibility profiles for REGIONS (BED/narrowPeak) as bigWig."""
    from veff.predict import predict_profiles

    predict_profiles(model, genome, regions, out, rc=not no_rc, batch_size=batch_size,
                     bias_corrected=not with_bias)
    click.echo(f"wrote {out}")


from veff.cli_cluster import register as _register_cluster_commands  # noqa: E402

_register_cluster_commands(main)
from veff.cli_interpret import register as _register_interpret_commands  # noqa: E402
_register_interpret_commands(main)
from veff.cli_cells import register as _register_cells_commands  # noqa: E402
_register_cells_commands(main)

if __name__ == "__main__":  # pragma: no cover
    main()
