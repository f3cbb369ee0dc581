"""`veff demo`: the whole main job, offline, on the shipped demo files.

checkpoints/demo/ holds a small simulated genome, a labelled VCF and chromBPNet models that
veff trained on the simulation (each with a MANIFEST.json recording the exact command). The
demo scores the VCF with the bias-corrected (nobias) and the full model in one pass, writes
the consensus and agreement report, and exports a TSV.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from veff.engine import ScoreOptions
from veff.pipeline import ProgressFn, RunResult, RunSpec, run


class DemoError(Exception):
    """The demo files are not where veff looks for them."""


def demo_dir() -> Path:
    """checkpoints/demo next to the package (a source checkout or editable install), or
    $VEFF_DEMO_DIR."""
    env = os.environ.get("VEFF_DEMO_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
    if not (path / "variants.vcf").is_file():
        raise DemoError(
            f"demo files not found at {path}; run veff from a clone of its repository "
            "(pip install -e .) or set VEFF_DEMO_DIR"
        )
    return path


@dataclasses.dataclass(frozen=True)
class DemoResult:
    store: Path
    report: Path
    table: Path
    run: RunResult


def run_demo(out_dir: str | os.PathLike, *, progress: ProgressFn | None = None) -> DemoResult:
    from veff.export import export
    from veff.report import write_report

    src = demo_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = (str(src / "nobias"), str(src / "full"))
    spec = RunSpec(
        variants=str(src / "variants.vcf"),
        genome=str(src / "genome.fa"),
        models=models,
        out=str(out / "demo.zarr"),
        options=ScoreOptions(batch_size=64),
        chunk_size=64,
        overwrite=True,
        peaks=str(src / "peaks.narrowPeak") if (src / "peaks.narrowPeak").is_file() else None,
        background_n=500,
    )
    result = run(spec, progress=progress)
    report = write_report(spec.out, out / "report.html", genome=spec.genome, models=list(models),
                          peaks=spec.peaks, assembly=None)  # a simulated genome: no browser links
    table = out / "scores.tsv"
    export(spec.out, "tsv", table, wide=True)
    return DemoResult(store=Path(spec.out), report=Path(report), table=table, run=result)
