"""Every option of a scoring run, defined once (docs/architecture.md, "Settings").

:class:`ScoreOptions` (how one model scores a batch) and :class:`RunSpec` (the whole job:
inputs, output, rows, consensus) are frozen dataclasses. Each field carries its command-line
flag, help, click type or parser, what it changes (``numbers``, ``rows``, ``store``, or
nothing) and the model kinds it applies to, and everything else is derived from that:

- the click options of ``veff score`` / ``veff plan`` (and the shared ones of ``veff ism``):
  :func:`run_options`, :func:`click_option`, and :func:`from_cli` back to a RunSpec;
- the store's ``run`` attrs: :func:`to_attrs` / :func:`from_attrs`;
- the run fingerprint (veff.fingerprint): :func:`fingerprint_fields`;
- the consensus background's options and cache key (veff.backgrounds): :func:`numeric_options`;
- the options a model of one kind is scored with: :meth:`ScoreOptions.for_kind`.

A new option is one field here; nothing else lists the options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import click

ALL_KINDS = ("profile", "binned", "cells")
BINNED = ("binned",)
WINDOWED = ("binned", "cells")  # the window is shifted / re-centred (not profile models)
PROFILE = ("profile",)
RUN_COMMANDS = ("score", "plan")
NUMBERS, ROWS, STORE = "numbers", "rows", "store"  # what a setting changes


def setting(default: Any = dataclasses.MISSING, *, flag: str, help: str = "",
            changes: str | None = None, kinds: tuple[str, ...] = ALL_KINDS,
            commands: tuple[str, ...] = RUN_COMMANDS, invert: bool = False,
            fingerprint: str = "value", **cli: Any) -> Any:
    """A dataclass field with its metadata. ``flag``: the option (``VARIANTS`` for the
    argument); ``invert``: the flag sets the field False (``--no-rc`` -> ``rc=False``);
    ``changes``: what it changes (None: neither rows nor numbers, e.g. ``--batch-size``),
    which puts it in the fingerprint; ``fingerprint``: ``value``, ``file`` (compared by
    content), ``genome``/``models`` (digested by veff.fingerprint) or ``given`` (left out when
    None); ``cli``: extra click keywords (``type``, ``callback``, ``cli_default`` ...)."""
    meta = {"flag": flag, "help": help, "changes": changes, "kinds": kinds, "commands": commands,
            "invert": invert, "fingerprint": fingerprint, "cli": cli}
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------------------- parsers
class BatchSize(click.ParamType):
    """``auto`` or a whole number ≥ 1."""

    name = "N|auto"

    def get_metavar(self, *args, **kwargs):
        return "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        try:
            n = int(str(value))
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r} is not auto or a whole number ≥ 1", param, ctx)
        return n


def parse_shifts(text: str | tuple) -> tuple[int, ...]:
    if isinstance(text, tuple):  # already parsed (a default)
        return text
    try:
        shifts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers",
                                 param_hint="--shifts") from None
    if not shifts:
        raise click.BadParameter("needs at least one shift, e.g. 0", param_hint="--shifts")
    if len(set(shifts)) != len(shifts):
        raise click.BadParameter(f"{text!r} repeats a shift", param_hint="--shifts")
    return shifts


def parse_stats(text: str | None) -> tuple[str, ...] | None:
    """The statistic names, each one a profile or a track statistic (which model each one
    applies to is checked once the models are loaded, still before the store exists)."""
    if text is None or isinstance(text, tuple):
        return text
    names = tuple(s.strip() for s in text.split(","))
    if not names or any(not n for n in names):
        raise click.BadParameter(f"{text!r} has an empty name", param_hint="--stats")
    from veff.scoring.profile import STAT_INFO
    from veff.scoring.tracks import STATS, ScoreSpec

    known = [*STAT_INFO, *STATS]
    for n in names:
        if n in STAT_INFO:
            continue
        try:
            ScoreSpec.parse(n)
        except ValueError:
            raise click.BadParameter(
                f"unknown statistic {n!r}; {did_you_mean(n.partition('@')[0], known)}known: "
                f"{', '.join(known)} (track statistics take @WIDTH_BP; `veff help "
                "scores_profile`, `veff help scores_tracks`)", param_hint="--stats") from None
    return names


def did_you_mean(word: str, choices) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices`` (difflib), or ``""``."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:  # case slips (logsum for logSUM)
        lower = {c.lower(): c for c in choices}
        close = [lower[word.lower()]] if word.lower() in lower else []
    return f"did you mean {close[0]!r}? " if close else ""


def _cb(parse):
    return lambda ctx, param, value: parse(value)


_FILE = click.Path(exists=True, dir_okay=False)
_REF_MISMATCH_HELP = ("REF differs from the genome: mark the row ref_mismatch, stop, or swap REF/ALT "
                      "when ALT matches (GWAS allele lists).")


# ---------------------------------------------------------------------------- the settings
@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """How one model scores REF/ALT windows (veff.engine.ModelScorer)."""

    stats: tuple[str, ...] | None = setting(  # None: every statistic that applies
        None, flag="--stats", changes=NUMBERS, callback=_cb(parse_stats),
        help="Comma-separated statistics (default: all that apply).")
    rc: bool = setting(True, flag="--no-rc", invert=True, changes=NUMBERS,
                       help="Forward strand only (default: average with the reverse complement).")
    shifts: tuple[int, ...] = setting(  # content moves right by each shift
        (0,), flag="--shifts", changes=NUMBERS, kinds=WINDOWED, callback=_cb(parse_shifts),
        cli_default="0", help="Binned models: shift ensemble in bp, e.g. 0,-1,1.")
    untransform: str | None = setting(
        None, flag="--untransform", changes=NUMBERS, kinds=BINNED, type=click.Choice(["new", "legacy"]),
        help="Binned models: undo Borzoi's target squashing (baskerville untransform_preds / _preds1).")
    precision: str = setting("fp32", flag="--precision", changes=NUMBERS, type=click.Choice(["fp32", "bf16"]))
    center_bp: int | None = setting(
        None, flag="--center-bp", changes=NUMBERS, kinds=BINNED, type=click.IntRange(min=1),
        help="Binned models: centre mask width in bp for masked statistics.")
    centering: str = setting(  # "veff": REF's first base at L//2; "baskerville": at L//2 - 1
        "veff", flag="--centering", changes=NUMBERS, kinds=WINDOWED, type=click.Choice(["veff", "baskerville"]),
        help="REF's first base at L//2 (veff) or L//2-1 (baskerville hound_snp, gReLU).")
    keep_strands: bool = setting(
        False, flag="--keep-strands", changes=NUMBERS, kinds=BINNED,
        help="Binned models: keep both strands of strand-paired tracks (default: sum them, as hound_snp).")
    indel_align: bool = setting(
        True, flag="--no-indel-align", invert=True, changes=NUMBERS, kinds=BINNED,
        help="Binned models: compare indel bins unaligned (default: stitch ALT at the variant).")
    indel_windows: str = setting(
        "veff", flag="--indel-windows", changes=NUMBERS, type=click.Choice(["veff", "variant-scorer"]),
        help="Windows at the normalised variant (veff) or at the input's own POS and alleles (variant-scorer).")
    batch_size: int | str = setting(  # rows per step, or "auto" (veff.autobatch)
        "auto", flag="--batch-size", type=BatchSize(),
        help="Variants per device step, or auto: the largest power of two (per device, ≤ 256) "
        "whose compiled step fits in 60% of available RAM on CPU, 80% of free device memory on "
        "GPU/TPU ($VEFF_MEMORY_BUDGET bytes overrides); printed at start. See `veff help performance`.")
    devices: int | None = setting(None, flag="--devices", type=click.IntRange(min=1),
                                  help="Use the first N local devices (default: all).")

    def __post_init__(self):
        bs = self.batch_size
        if bs != "auto" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise ValueError(f"batch size must be auto or a whole number ≥ 1, got {bs!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if not self.shifts or len(set(self.shifts)) != len(self.shifts):
            raise ValueError(f"shifts must be distinct and non-empty, got {self.shifts}")
        if self.untransform not in (None, "new", "legacy"):
            raise ValueError(f"untransform must be new or legacy, got {self.untransform!r}")
        if self.centering not in ("veff", "baskerville"):
            raise ValueError(f"centering must be veff or baskerville, got {self.centering!r}")
        if self.indel_windows not in ("veff", "variant-scorer"):
            raise ValueError(f"indel windows must be veff or variant-scorer, got {self.indel_windows!r}")

    @property
    def centre_offset(self) -> int:
        """Input index of REF's first base minus ``L // 2``: 0 (veff) or -1 (baskerville)."""
        return -1 if self.centering == "baskerville" else 0

    def for_kind(self, kind: str) -> ScoreOptions:
        """These options as a model of ``kind`` is scored with them: the options that do not
        apply to that kind (e.g. ``shifts`` for a profile model) at their defaults."""
        reset = {f.name: f.default for f in dataclasses.fields(self) if kind not in f.metadata["kinds"]}
        return dataclasses.replace(self, **reset) if reset else self

    def unused_by(self, kinds) -> list[str]:
        """The flags given (not at their defaults) that apply to none of ``kinds``."""
        return [f.metadata["flag"] for f in dataclasses.fields(self)
                if not set(kinds) & set(f.metadata["kinds"]) and getattr(self, f.name) != f.default]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    """A whole ``veff score`` run: inputs, models, output, rows, options, consensus."""

    variants: str = setting(flag="VARIANTS", changes=ROWS, fingerprint="file", type=click.Path(dir_okay=False))
    genome: str = setting(flag="--genome", changes=NUMBERS, fingerprint="genome", required=True,
                          type=click.Path(dir_okay=False), help="FASTA (plain or bgzipped).")
    models: tuple[str, ...] = setting(
        flag="--model", changes=NUMBERS, fingerprint="models", multiple=True, required=True,
        metavar="[NAME=]PATH", help="Checkpoint directory or registered name; repeat for several. "
        "NAME= names its scores/<NAME> group (default: the checkpoint's own name).")
    out: str = setting(flag="--out", short="-o", required=True, type=click.Path(), help="Output Zarr store.")
    options: ScoreOptions = dataclasses.field(default=ScoreOptions(), metadata={"nested": True})
    genes: str | None = setting(
        None, flag="--genes", changes=STORE, kinds=BINNED, fingerprint="file", type=_FILE,
        help="Binned models: GTF (plain or .gz); adds the (variant, gene) table scores/<model>/genes/.")
    ref_mismatch: str = setting("skip", flag="--ref-mismatch", changes=ROWS, 
                                type=click.Choice(["skip", "error", "flip"]), help=_REF_MISMATCH_HELP)
    max_indel_len: int = setting(50, flag="--max-indel-len", changes=ROWS, 
                                 type=click.IntRange(min=0), help="Longer indels get status indel_too_long.")
    peaks: str | None = setting(  # profile models: peak set for the active-allele quantile
        None, flag="--peaks", changes=NUMBERS, kinds=PROFILE, fingerprint="file", type=_FILE,
        help="Profile models: narrowPeak set for the active-allele quantile statistics.")
    null_shuffles: int = setting(  # 0: no p-values
        0, flag="--null-shuffles", changes=NUMBERS, kinds=PROFILE, type=click.IntRange(min=0),
        help="Profile models: dinucleotide shuffles per null variant for empirical p-values.")
    null_variants: int = setting(1000, flag="--null-variants", changes=NUMBERS, kinds=PROFILE,
                                 type=click.IntRange(min=1), help="Ok rows that seed the null.")
    seed: int = setting(0, flag="--seed", changes=NUMBERS, type=int)
    groups: str | None = setting(None, flag="--groups", changes=STORE, fingerprint="file", type=_FILE,
                                 help="Track-group YAML for the consensus (default: accessibility group).")
    background_n: int = setting(10_000, flag="--background-n", changes=NUMBERS, type=click.IntRange(min=1),
                                help="Random SNVs per model for the consensus background (cached).")
    consensus: bool = setting(True, flag="--no-consensus", invert=True, changes=STORE,
                              help="Do not write consensus/ when several models are scored.")
    # None: default_chunk_size(batch size) for a new store; a resumed store keeps its own
    chunk_size: int | None = setting(
        1024, flag="--chunk-size", changes=STORE, fingerprint="given", cli_default=None,
        type=click.IntRange(min=1), help="Variants per resumable chunk (default: up to 131,072; `veff help store`).")
    resume: bool = setting(False, flag="--resume", commands=("score",),
                           help="Finish an interrupted run: score only chunks not marked done.")
    overwrite: bool = setting(False, flag="--overwrite",
                              help="Replace an existing store.")

    def __post_init__(self):
        if not self.models:
            raise ValueError("at least one --model is needed")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk size must be ≥ 1")
        if self.null_shuffles < 0 or self.null_variants < 1:
            raise ValueError("--null-shuffles must be ≥ 0 and the null needs ≥ 1 variant")

    def to_json(self) -> dict[str, Any]:
        return to_attrs(self)


# ---------------------------------------------------------------------------- derived views
def settings(spec_type: type = RunSpec) -> Iterator[tuple[dataclasses.Field, bool]]:
    """Every setting of a run as (field, is it a ScoreOptions field?), ScoreOptions' fields in
    place of ``options``."""
    for f in dataclasses.fields(spec_type):
        if f.metadata.get("nested"):
            yield from ((g, True) for g in dataclasses.fields(ScoreOptions))
        else:
            yield f, False


def field(name: str) -> dataclasses.Field:
    for f, _ in settings():
        if f.name == name:
            return f
    raise KeyError(name)


def value_of(spec: RunSpec, f: dataclasses.Field, nested: bool) -> Any:
    return getattr(spec.options if nested else spec, f.name)


def flag_value(f: dataclasses.Field, value: Any) -> Any:
    """The value as the user gave the flag (``--no-rc``: True when rc is False), JSON-ready."""
    if f.metadata["invert"]:
        return not value
    return list(value) if isinstance(value, tuple) else value


def numeric_options(options: ScoreOptions) -> dict[str, Any]:
    """The ScoreOptions that change the numbers (everything but batch size and devices):
    what a consensus background must share with the run, and its cache key."""
    return {f.name: (list(v) if isinstance(v := getattr(options, f.name), tuple) else v)
            for f in dataclasses.fields(options) if f.metadata["changes"] == NUMBERS}


def fingerprint_fields() -> list[tuple[dataclasses.Field, bool]]:
    """The settings the run fingerprint holds (each changes rows, numbers or the store)."""
    return [(f, nested) for f, nested in settings() if f.metadata.get("changes")]


# ---------------------------------------------------------------------------- store attrs
def to_attrs(spec: RunSpec) -> dict[str, Any]:
    """The store's ``run`` attrs (JSON): RunSpec's fields, ``options`` nested."""

    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    d = {f.name: plain(getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.name != "options"}
    d["options"] = {f.name: plain(getattr(spec.options, f.name)) for f in dataclasses.fields(spec.options)}
    return d


def _from_json(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    """The known fields of ``cls`` in ``values``; JSON lists back to tuples."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in values and not f.metadata.get("nested"):
            v = values[f.name]
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def options_from_attrs(attrs: Mapping[str, Any]) -> ScoreOptions:
    """The ScoreOptions of a store's ``run`` attrs (what :func:`from_attrs` puts in ``options``)."""
    return ScoreOptions(**_from_json(ScoreOptions, attrs.get("options") or {}))


def from_attrs(attrs: Mapping[str, Any], **overrides: Any) -> RunSpec:
    """The RunSpec of a store's ``run`` attrs (fields a store lacks take their defaults,
    unknown ones are ignored); ``overrides`` replace fields (e.g. ``out=``, ``resume=``)."""
    fields = _from_json(RunSpec, attrs)
    fields["options"] = options_from_attrs(attrs)
    fields.update(overrides)
    return RunSpec(**fields)


# ---------------------------------------------------------------------------- command line
def click_option(name: str, **overrides: Any):
    """The click decorator of setting ``name`` (its parameter is named after the field;
    ``overrides`` replace click keywords, e.g. another default for one command)."""
    f = field(name)
    m = f.metadata
    cli = dict(m["cli"])
    short = cli.pop("short", None)
    default = cli.pop("cli_default", None if f.default is dataclasses.MISSING else f.default)
    if m["flag"].isupper():  # the argument
        return click.argument(name, **{**cli, **overrides})
    kw: dict[str, Any] = {"help": m["help"] or None, **cli}
    if isinstance(f.default, bool):
        kw.update(is_flag=True, flag_value=not f.default, default=f.default)
    elif default is not None:
        kw.update(default=default, show_default=True)
    elif "required" not in kw and "multiple" not in kw:
        kw.update(default=None)
    kw.update(overrides)
    decls = [*([short] if short else []), m["flag"], name]
    return click.option(*decls, **kw)


def command_options(command: str):
    """A decorator adding every setting of ``command`` (``score``, ``plan``) as an option."""
    decorators = [click_option(f.name) for f, _ in settings() if command in f.metadata["commands"]]

    def apply(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


def from_cli(values: Mapping[str, Any]) -> RunSpec:
    """The RunSpec of a command's parsed settings (keyed by field name; others ignored)."""
    run, opts = {}, {}
    for f, nested in settings():
        if f.name in values:
            v = values[f.name]
            (opts if nested else run)[f.name] = tuple(v) if isinstance(v, list) else v
    run["models"] = tuple(run.get("models", ()))
    return RunSpec(**run, options=ScoreOptions(**opts))
