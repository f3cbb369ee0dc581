"""chromBPNet's two-stage training recipe in JAX/optax (see docs/training.md).

Stage 1 (bias): a small BPNet on non-peak regions whose counts are at most
``quantile(peak_counts, 0.01) * bias_threshold_factor`` (regions that hold only Tn5/DNase
sequence bias), no jitter. Then the bias model's count-head bias term is shifted by
``mean(log(1 + counts) - predicted logcounts)`` over all train/valid non-peaks, as chromBPNet's
``bias_model_scaled`` does, so its counts match this dataset's depth.

Stage 2 (accessibility): a larger BPNet trained *through* the frozen bias model (profile
logits add, counts combine as logsumexp) on peaks (jittered) plus a fresh random sample of
non-peaks every epoch; the accessibility ("nobias") model alone is the bias-corrected one.

Loss per example (both stages):
    multinomial NLL of the counts under softmax(logits), the full log-probability with the
    multinomial coefficient, + counts_loss_weight * (logcounts - log(1 + total))^2,
with counts_loss_weight = max(1, median total counts / 10) of the stage's training regions.
Batches are reverse-complemented at random (50 %), sequence and counts together.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import gammaln

from veff.checkpoint import save_checkpoint
from veff.io.genome import Genome
from veff.models import bpnet
from veff.models.bpnet import ACCESSIBILITY, BIAS, COUNT, BPNetConfig
from veff.train.data import (
    Examples,
    TrainDataError,
    bias_threshold_keep,
    concat_examples,
    load_examples,
    make_batch,
    open_signal,
    outlier_keep,
    read_regions,
    sha256_file,
    split_by_contig,
)

ROLE_DIRS = {"bias": "bias", "nobias": "nobias", "full": "full"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Defaults are chromBPNet's (parsers.py); tests and the demo use tiny values."""

    filters: int = 512
    n_layers: int = 8
    bias_filters: int = 128
    bias_n_layers: int = 4
    input_len: int = 2114
    output_len: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 50
    bias_epochs: int | None = None  # None: same as epochs
    patience: int = 5
    # Bias-stage overrides (None: the shared value / chromBPNet's median/10 rule). chromBPNet
    # keeps them in the bias model's own params file; small data sets need a faster bias stage
    # for its count head to learn localized Tn5 hotspots (docs/groundtruth.md).
    bias_lr: float | None = None
    bias_patience: int | None = None
    bias_counts_loss_weight: float | None = None
    max_jitter: int = 500
    bias_threshold_factor: float = 0.5
    negative_sampling_ratio: float = 0.1  # non-peaks per peak drawn each stage-2 epoch
    rc_fraction: float = 0.5
    valid_contigs: tuple[str, ...] = ("chr8", "chr20")
    test_contigs: tuple[str, ...] = ("chr1", "chr3", "chr6")
    seed: int = 0
    max_steps_per_epoch: int | None = None
    name: str = "chrombpnet"

    def __post_init__(self):
        for f in ("filters", "n_layers", "bias_filters", "bias_n_layers", "input_len",
                  "output_len", "batch_size", "epochs", "patience"):
            if getattr(self, f) < (0 if f.endswith("n_layers") else 1):
                raise ValueError(f"TrainConfig.{f} must be positive, got {getattr(self, f)}")
        if self.max_jitter < 0 or self.lr <= 0 or self.bias_threshold_factor <= 0:
            raise ValueError("TrainConfig: max_jitter ≥ 0, lr > 0 and bias_threshold_factor > 0")
        for f in ("bias_lr", "bias_patience", "bias_counts_loss_weight", "bias_epochs"):
            v = getattr(self, f)
            if v is not None and v <= 0:
                raise ValueError(f"TrainConfig.{f} must be positive or None, got {v}")
        if not 0 <= self.rc_fraction <= 1 or self.negative_sampling_ratio < 0:
            raise ValueError("TrainConfig: rc_fraction in [0, 1], negative_sampling_ratio ≥ 0")
        object.__setattr__(self, "valid_contigs", tuple(self.valid_contigs))
        object.__setattr__(self, "test_contigs", tuple(self.test_contigs))
        # building the configs validates lengths (crop parity, output not longer than profile)
        self.accessibility_config()
        self.bias_config()

    def accessibility_config(self) -> BPNetConfig:
        return BPNetConfig(filters=self.filters, n_layers=self.n_layers,
                           input_len=self.input_len, output_len=self.output_len)

    def bias_config(self) -> BPNetConfig:
        return BPNetConfig(filters=self.bias_filters, n_layers=self.bias_n_layers,
                           input_len=self.input_len, output_len=self.output_len)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["valid_contigs"], d["test_contigs"] = list(self.valid_contigs), list(self.test_contigs)
        return d


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainResult:
    out_dir: Path
    bias_dir: Path
    nobias_dir: Path
    full_dir: Path
    history: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


# ----------------------------------------------------------------------------- losses


def multinomial_nll(logits: jax.Array, counts: jax.Array) -> jax.Array:
    """-log Multinomial(counts | n = sum(counts), p = softmax(logits)), per example: (B,).

    The full log-probability, multinomial coefficient included, as chromBPNet's
    ``tfp.distributions.Multinomial(...).log_prob``.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    n = counts.sum(axis=-1)
    log_coef = gammaln(n + 1.0) - gammaln(counts + 1.0).sum(axis=-1)
    return -(log_coef + (counts * logp).sum(axis=-1))


def example_losses(out: dict[str, jax.Array], counts: jax.Array, weight) -> dict[str, jax.Array]:
    """Per-example loss terms: (B,) each."""
    mnll = multinomial_nll(out["logits"], counts)
    mse = (out["logcounts"] - jnp.log1p(counts.sum(axis=-1))) ** 2
    return {"loss": mnll + weight * mse, "mnll": mnll, "mse": mse}


def counts_loss_weight(total_counts: np.ndarray) -> float:
    """chromBPNet: median total counts / 10, floored at 1."""
    return float(max(1.0, np.median(total_counts) / 10.0)) if len(total_counts) else 1.0


# ----------------------------------------------------------------------------- stages


def _one_hot(tokens: jax.Array) -> jax.Array:
    return jax.nn.one_hot(tokens, 4, dtype=jnp.float32)  # N (=4) -> all zeros


Forward = Callable[[Any, Any, jax.Array], dict[str, jax.Array]]  # (params, frozen, x) -> out


def _forward_single(cfg: BPNetConfig) -> Forward:
    return lambda params, frozen, x: bpnet.forward(cfg, params, x)


def _forward_through_bias(acc: BPNetConfig, bias: BPNetConfig) -> Forward:
    def f(params, frozen, x):
        full = {ACCESSIBILITY: params, BIAS: jax.lax.stop_gradient(frozen)}
        return bpnet.forward_chrombpnet(acc, bias, full, x)

    return f


class _Stage:
    """Jitted Adam step and masked evaluation for one model being trained."""

    def __init__(self, forward: Forward, lr: float, weight: float):
        self.forward = forward
        self.opt = optax.adam(lr)
        w = jnp.float32(weight)

        def loss_fn(params, frozen, tokens, counts):
            terms = example_losses(forward(params, frozen, _one_hot(tokens)), counts, w)
            return terms["loss"].mean(), terms

        def step(params, opt_state, frozen, tokens, counts):
            (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, frozen, tokens, counts)
            updates, opt_state = self.opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, {
                k: v.mean() for k, v in terms.items()}

        def evaluate(params, frozen, tokens, counts):
            out = forward(params, frozen, _one_hot(tokens))
            return example_losses(out, counts, w), out["logcounts"]

        self.step = jax.jit(step)
        self.evaluate = jax.jit(evaluate)

    def eval_set(self, params, frozen, ex: Examples, cfg: TrainConfig) -> dict[str, Any]:
        """Mean loss terms on centred forward windows, plus predicted log counts (N,)."""
        n, b = len(ex), cfg.batch_size
        sums: dict[str, float] = {}
        preds = np.empty(n, np.float32)
        for s in range(0, n, b):
            idx = np.arange(s, s + b) % n  # wrap the last batch: one static shape
            tokens, counts = make_batch(ex, idx, None, input_len=cfg.input_len,
                                        output_len=cfg.output_len, jitter=0)
            terms, lc = self.evaluate(params, frozen, tokens, counts)
            real = min(b, n - s)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(np.asarray(v)[:real].sum())
            preds[s : s + real] = np.asarray(lc)[:real]
        return {"terms": {k: v / max(n, 1) for k, v in sums.items()}, "logcounts": preds}


def _fit(
    stage: _Stage, params, frozen, *, sample_epoch: Callable[[np.random.Generator], tuple[Examples, np.ndarray]],
    valid: Examples, cfg: TrainConfig, epochs: int, rng: np.random.Generator, label: str,
    bar, patience: int | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Adam with early stopping on the valid loss; returns the best params and the log."""
    opt_state = stage.opt.init(params)
    best, best_loss, since_best = params, np.inf, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        ex, jitter = sample_epoch(rng)
        order = rng.permutation(len(ex))
        steps = -(-len(ex) // cfg.batch_size)
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        bar.start(f"{label} epoch {epoch}/{epochs}", steps)
        sums: dict[str, float] = {}
        for k in range(steps):
            idx = order[np.arange(k * cfg.batch_size, (k + 1) * cfg.batch_size) % len(ex)]
            tokens, counts = make_batch(
                ex, idx, rng, input_len=cfg.input_len, output_len=cfg.output_len,
                jitter=jitter[idx], rc_fraction=cfg.rc_fraction,
            )
            params, opt_state, terms = stage.step(params, opt_state, frozen, tokens, counts)
            for name, v in terms.items():
                sums[name] = sums.get(name, 0.0) + float(v)
            bar.advance(f"loss {sums['loss'] / (k + 1):.2f}")
        v = stage.eval_set(params, frozen, valid, cfg)["terms"]
        row = {"epoch": epoch, "steps": steps, "seconds": round(time.perf_counter() - t0, 3),
               **{f"train_{n}": s / steps for n, s in sums.items()},
               **{f"valid_{n}": x for n, x in v.items()}}
        history.append(row)
        if not np.isfinite(row["valid_loss"]):
            raise FloatingPointError(f"{label}: valid loss became {row['valid_loss']} at epoch {epoch}")
        if row["valid_loss"] < best_loss:
            best, best_loss, since_best = params, row["valid_loss"], 0
        else:
            since_best += 1
            if since_best >= (patience or cfg.patience):
                break
    return best, history


class _Bar:
    """rich progress on stderr, one task per epoch; a no-op when disabled."""

    def __init__(self, enabled: bool):
        self._progress = None
        self._task = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self):
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, label: str, total: int) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(label, total=total, info="")

    def advance(self, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, info=info)


def _set_count_bias(params, value: float):
    p = jax.tree.map(lambda a: a, params)  # shallow copy of the tree
    p[COUNT] = {**p[COUNT], "bias": jnp.full_like(p[COUNT]["bias"], value)}
    return p


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------- entry point


def train_chrombpnet(
    genome: str | Path,
    signal: str | Path,
    peaks: str | Path,
    nonpeaks: str | Path,
    out_dir: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    command: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train bias then accessibility models; writes ``out_dir/{bias,nobias,full}/`` native
    checkpoints and ``out_dir/log.json``."""
    t_start = time.perf_counter()
    cfg = config
    out_dir = Path(out_dir)
    acc_cfg, bias_cfg = cfg.accessibility_config(), cfg.bias_config()
    rng = np.random.default_rng(cfg.seed)
    seed_bias, seed_acc = 2 * cfg.seed + 1, 2 * cfg.seed + 2  # int seeds for bpnet.init

    with Genome(genome) as g:
        sig = open_signal(signal)
        try:
            load = dict(input_len=cfg.input_len, output_len=cfg.output_len, max_jitter=cfg.max_jitter)
            peak_ex = load_examples(g, sig, read_regions(peaks), **load)
            non_ex = load_examples(g, sig, read_regions(nonpeaks), **load)
        finally:
            sig.close()
    if len(peak_ex) == 0 or len(non_ex) == 0:
        raise TrainDataError("training needs at least one peak and one non-peak region")

    split = {
        "peaks": split_by_contig(peak_ex.regions, valid_contigs=cfg.valid_contigs, test_contigs=cfg.test_contigs),
        "nonpeaks": split_by_contig(non_ex.regions, valid_contigs=cfg.valid_contigs, test_contigs=cfg.test_contigs),
    }
    for kind in ("peaks", "nonpeaks"):
        for part in ("train", "valid"):
            if not split[kind][part].any():
                raise TrainDataError(
                    f"no {kind} on the {part} contigs (valid={list(cfg.valid_contigs)}, "
                    f"test={list(cfg.test_contigs)}); choose contigs that hold some"
                )
    peak_tot, non_tot = peak_ex.total_counts, non_ex.total_counts
    trval_p = split["peaks"]["train"] | split["peaks"]["valid"]
    keep_peaks = outlier_keep(peak_tot[trval_p])
    peaks_kept = np.zeros(len(peak_ex), bool)
    peaks_kept[np.flatnonzero(trval_p)[keep_peaks]] = True

    # ---- stage 1: bias model on low-count non-peaks
    bias_keep = bias_threshold_keep(peak_tot[trval_p], non_tot, cfg.bias_threshold_factor)
    bias_train = non_ex.subset(bias_keep & split["nonpeaks"]["train"])
    bias_valid = non_ex.subset(bias_keep & split["nonpeaks"]["valid"])
    if len(bias_train) == 0 or len(bias_valid) == 0:
        raise TrainDataError(
            f"the bias-threshold filter (factor {cfg.bias_threshold_factor}) left "
            f"{len(bias_train)} train / {len(bias_valid)} valid non-peaks; raise the factor "
            "or supply more non-peak regions"
        )
    w_bias = (cfg.bias_counts_loss_weight if cfg.bias_counts_loss_weight is not None
              else counts_loss_weight(bias_train.total_counts))
    bias_stage = _Stage(_forward_single(bias_cfg), cfg.bias_lr or cfg.lr, w_bias)
    bias_params = _set_count_bias(  # start the count head at the mean target: fewer wasted steps
        bpnet.init(bias_cfg, seed_bias), float(np.log1p(bias_train.total_counts).mean()))
    no_jitter_bias = np.zeros(len(bias_train), np.int64)

    with _Bar(progress) as bar:
        bias_params, bias_hist = _fit(
            bias_stage, bias_params, None,
            sample_epoch=lambda r: (bias_train, no_jitter_bias),
            valid=bias_valid, cfg=cfg, epochs=cfg.bias_epochs or cfg.epochs, rng=rng,
            label="bias", bar=bar, patience=cfg.bias_patience or cfg.patience,
        )

        # ---- bias_model_scaled: shift the count bias term to this dataset's non-peak depth
        trval_n = split["nonpeaks"]["train"] | split["nonpeaks"]["valid"]
        non_trval = non_ex.subset(trval_n)
        pred = bias_stage.eval_set(bias_params, None, non_trval, cfg)["logcounts"]
        delta = float(np.mean(np.log1p(non_trval.total_counts) - pred))
        bias_params = jax.tree.map(lambda a: a, bias_params)
        bias_params[COUNT] = {**bias_params[COUNT], "bias": bias_params[COUNT]["bias"] + delta}

        # ---- stage 2: accessibility model through the frozen bias model
        p_train = peak_ex.subset(peaks_kept & split["peaks"]["train"])
        p_valid = peak_ex.subset(peaks_kept & split["peaks"]["valid"])
        n_train = non_ex.subset(split["nonpeaks"]["train"])
        n_valid = non_ex.subset(split["nonpeaks"]["valid"])
        num_neg = int(round(cfg.negative_sampling_ratio * len(p_train)))
        num_neg_valid = int(round(cfg.negative_sampling_ratio * len(p_valid)))
        valid_rng = np.random.default_rng(cfg.seed + 1)
        acc_valid = concat_examples(
            p_valid, n_valid.subset(valid_rng.permutation(len(n_valid))[: num_neg_valid]))
        w_acc = counts_loss_weight(peak_tot[peaks_kept])
        acc_stage = _Stage(_forward_through_bias(acc_cfg, bias_cfg), cfg.lr, w_acc)
        acc_params = _set_count_bias(bpnet.init(acc_cfg, seed_acc),
                                     float(np.log1p(p_train.total_counts).mean()))

        def sample_epoch(r: np.random.Generator):
            neg = n_train.subset(r.permutation(len(n_train))[: min(num_neg, len(n_train))])
            ex = concat_examples(p_train, neg)
            # peaks are jittered, non-peaks are not (chromBPNet's batch generator)
            jitter = np.concatenate([np.full(len(p_train), cfg.max_jitter), np.zeros(len(neg), np.int64)])
            return ex, jitter

        acc_params, acc_hist = _fit(
            acc_stage, acc_params, bias_params, sample_epoch=sample_epoch, valid=acc_valid,
            cfg=cfg, epochs=cfg.epochs, rng=rng, label="chrombpnet", bar=bar,
        )

    # ---- final metrics on the held-out sets (test when it has regions, else valid)
    metrics: dict[str, float] = {
        "bias_valid_loss": min(r["valid_loss"] for r in bias_hist),
        "valid_loss": min(r["valid_loss"] for r in acc_hist),
        "bias_count_shift": delta,
        "counts_loss_weight_bias": w_bias,
        "counts_loss_weight": w_acc,
    }
    for part in ("valid", "test"):
        pe = peak_ex.subset(split["peaks"][part])
        if len(pe) == 0:
            continue
        ev = acc_stage.eval_set(acc_params, bias_params, pe, cfg)
        metrics[f"{part}_peaks_loss"] = ev["terms"]["loss"]
        metrics[f"{part}_peaks_mnll"] = ev["terms"]["mnll"]
        metrics[f"{part}_peaks_logcounts_pearson"] = _pearson(ev["logcounts"], np.log1p(pe.total_counts))

    data = {
        name: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)}
        for name, p in (("genome", genome), ("signal", signal), ("peaks", peaks), ("nonpeaks", nonpeaks))
    }
    counts_info = {
        "peaks": int(len(peak_ex)), "peaks_train": int(len(p_train)), "peaks_valid": int(len(p_valid)),
        "nonpeaks": int(len(non_ex)), "bias_nonpeaks_train": int(len(bias_train)),
        "bias_nonpeaks_valid": int(len(bias_valid)), "nonpeaks_per_epoch": num_neg,
    }
    meta = {
        "trained_by": "veff.train.chrombpnet", "command": command, "train_config": cfg.to_json(),
        "data": data, "metrics": metrics, "examples": counts_info,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    dirs = {k: out_dir / v for k, v in ROLE_DIRS.items()}
    np_tree = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
    save_checkpoint(dirs["bias"], arch=bpnet.ARCH_SINGLE, config=bias_cfg.to_dict(),
                    params=np_tree(bias_params), tracks=[{"name": "bias"}],
                    metadata={**meta, "name": f"{cfg.name}_bias", "role": BIAS,
                              "note": "bias_model_scaled: count bias shifted by bias_count_shift"})
    save_checkpoint(dirs["nobias"], arch=bpnet.ARCH_SINGLE, config=acc_cfg.to_dict(),
                    params=np_tree(acc_params), tracks=[{"name": "accessibility"}],
                    metadata={**meta, "name": f"{cfg.name}_nobias", "role": ACCESSIBILITY})
    save_checkpoint(dirs["full"], arch=bpnet.ARCH_COMBINED,
                    config={ACCESSIBILITY: acc_cfg.to_dict(), BIAS: bias_cfg.to_dict()},
                    params={ACCESSIBILITY: np_tree(acc_params), BIAS: np_tree(bias_params)},
                    tracks=[{"name": "accessibility+bias"}],
                    metadata={**meta, "name": f"{cfg.name}_full", "role": "full"})
    seconds = time.perf_counter() - t_start
    history = {"bias": bias_hist, "chrombpnet": acc_hist, "metrics": metrics,
               "examples": counts_info, "config": cfg.to_json(), "command": command,
               "seconds": round(seconds, 2)}
    (out_dir / "log.json").write_text(json.dumps(history, indent=2) + "\n")
    return TrainResult(out_dir=out_dir, bias_dir=dirs["bias"], nobias_dir=dirs["nobias"],
                       full_dir=dirs["full"], history=history, metrics=metrics, seconds=seconds)
