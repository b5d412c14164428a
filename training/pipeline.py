"""Data -> training -> evaluation on the test split -> export, as stages.

`train_and_export` runs them in order, each returning a typed piece of the manifest:

- prepare: load, check, split, encode (a table's encodings, or the normalisation, fitted on the
  training split) -> `Prepared`
- fit: the model, its quantile calibration and latent prior -> `Fitted`
- evaluate: the test split's metrics, band coverage, warnings, the Gaussian baseline -> `Evaluation`
- export: graphs and manifest written to a staging directory (training/export.py)
- review: the staged export's anomaly calibration and quality report join its `Evaluation`
- promote: decide whether the name resolves to it, write it into place (training/export.py)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from core.codecs import category_key
from core.heads import HEADS
from core.manifest import (
    MAX_GAP_PATTERNS,
    MIN_ROWS_PER_GAP_PATTERN,
    Column,
    DroppedColumn,
    Evaluation,
    LatentPrior,
    Manifest,
    NumericEncoding,
    Reference,
    Rule,
    TrainingInfo,
)
from core.offline import AnomalyScorer
from core.repository import COLUMNS_FIGURE, HISTORY_FILE, LOSS_FIGURE, Choice, read_manifest
from core.table import Table, original_order
from training import data, evaluate, figures, quality, rules, tables
from training.calibrate import MIN_CALIBRATION_ROWS, calibrate_quantiles
from training.datasets import DataError, Dataset, ReadOptions, Splits
from training.export import promote, stage, staging_dir
from training.model import DEFAULT_QUANTILES, VAE, ModelConfig
from training.prior import fit_latent_prior
from training.train import TrainConfig, TrainResult, fit


@dataclass(frozen=True)
class TrainOptions:
    data: str
    name: str
    head: str | None = None  # None: chosen from the data (data.default_head)
    conditional: bool = False
    label_column: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    numeric_encoding: NumericEncoding = "quantile"  # a table's numeric columns: quantile | standard
    rules: tuple[str, ...] = ()  # declared rules (training/rules.py), as --rule writes them
    discover_rules: bool = True  # and those found in the training rows
    models_dir: Path = Path("models")
    latent_dim: int = 8
    hidden: tuple[int, ...] = (256, 128)
    quantile_levels: tuple[float, ...] = DEFAULT_QUANTILES
    train: TrainConfig = field(default_factory=TrainConfig)
    iwae_samples: int = evaluate.IWAE_SAMPLES
    baseline: bool = True  # train a Gaussian-head baseline beside a quantile model
    calibration: str = "auto"  # quantile bands recalibrated on the validation split: auto | on | off
    formats: tuple[str, ...] = ("onnx", "torchscript")
    quality_report: bool = True  # score generated rows against the test split (training/quality.py)
    promote: Choice = "auto"  # core/repository.py: by the figures (auto), or by hand (yes / no)


Rows = tuple[np.ndarray, np.ndarray | None]  # a split as the model takes it: encoded features, labels if conditional


@dataclass(frozen=True)
class Prepared:
    """The data as the model sees it: the seeded splits, encoded with maps fitted on the training split."""

    dataset: Dataset
    splits: Splits
    head: str  # as asked for, or chosen from the data
    columns: list[Column] | None  # a table's columns with their fitted encodings; None for all-numeric data
    gap_patterns: list[list[str]] | None  # a table's combinations of gaps generated rows may have
    rules: list[Rule] | None  # a table's rules every generated row holds (None: none)
    table: Table | None  # the encoder of a table's rows; None for all-numeric data
    feature_names: list[str]  # the encoded features the graphs take
    shift: np.ndarray  # normalisation x_norm = (x - shift) / scale; zeros and ones for a table (its encoding)
    scale: np.ndarray
    train: Rows
    val: Rows
    test: Rows

    @property
    def input_dim(self) -> int:
        return self.train[0].shape[1]


@dataclass(frozen=True)
class Fitted:
    """The trained model, and what was fitted beside it before evaluation."""

    config: ModelConfig
    result: TrainResult
    calibration_offset_max: float | None  # the largest quantile band offset; None: bands not recalibrated
    latent_prior: list[LatentPrior] | None  # None: generation draws z ~ N(0, I)
    fit_seconds: float  # training alone: calibration and the prior's fit included


def train_and_export(opts: TrainOptions, log=print) -> Path:
    """Train, evaluate and export one model; returns its version directory."""
    prepared = prepare(opts, log)
    opts = replace(opts, head=prepared.head)  # the head chosen from the data when none was asked for
    fitted = fit_model(opts, prepared, log)
    evaluation = evaluate_model(opts, prepared, fitted)
    fields = _manifest_fields(opts, prepared, fitted, evaluation)
    files = {
        HISTORY_FILE: json.dumps(fitted.result.history, indent=1) + "\n",
        LOSS_FIGURE: figures.loss_curves(fitted.result.history, opts.name),
    }
    with staging_dir(opts.models_dir, opts.name) as staging:
        staged = stage(fitted.result.model, fields, *prepared.test, staging, opts.formats, files)
        reviewed = review(staging.path, staged.evaluation, opts, prepared, log)
        path = promote(staging, staged, reviewed, opts.promote)
    _log_summary(opts, path, fitted.result, evaluation, log)
    return path


def prepare(opts: TrainOptions, log) -> Prepared:
    """Load and check the data, split it (seeded), and fit the encoding (a table's) or normalisation on the
    training split."""
    started = time.perf_counter()
    ds = data.load(opts.data, opts.label_column, opts.read)
    for warning in ds.warnings:
        log(f"warning: {ds.source}: {warning}")
    if opts.conditional and ds.labels is None:
        raise DataError(f"{ds.source}: --conditional needs labels (a --label-column for a table, 'y' in NPZ)")
    head = opts.head
    if head is None:
        head = data.default_head(ds)
        log(f"{opts.name}: head {head} (chosen from the data; --head to choose)")
    data.check_head(ds, head)
    _check_levels(opts.quantile_levels)
    splits = data.split(ds, opts.train.seed)
    if ds.columns is not None:
        assert splits.train.frame is not None
        columns = tables.fit_encodings(ds.columns, splits.train.frame, opts.numeric_encoding)
        gap_patterns, rare = tables.common_gap_patterns(columns, splits.train.frame)
        if rare:
            log(
                f"{opts.name}: {rare} training row(s) have a combination of gaps that generated rows will not "
                f"have (fewer than {MIN_ROWS_PER_GAP_PATTERN} rows share it, or it is not among the "
                f"{MAX_GAP_PATTERNS} most common); generated rows take the nearest kept combination instead"
            )
        found_rules = _rules(opts, ds, splits, columns, log)
        table = Table(columns, gap_patterns)
        shift, scale = np.zeros(table.width, np.float32), np.ones(table.width, np.float32)
        feature_names = table.encoded_names()

        def features(part: Dataset) -> np.ndarray:
            return table.encode(*tables.frame_arrays(table, part.frame))
    else:
        assert splits.train.x is not None
        columns, table, feature_names, gap_patterns, found_rules = None, None, ds.feature_names, None, None
        if opts.rules:
            raise DataError(f"{ds.source}: --rule needs a table (named columns); this data is all-numeric")
        shift, scale = data.fit_normalization(splits.train.x, head)

        def features(part: Dataset) -> np.ndarray:
            return ((part.x - shift) / scale).astype(np.float32)

    def rows(part: Dataset) -> Rows:
        return features(part), part.y if opts.conditional else None

    prepared = Prepared(
        dataset=ds,
        splits=splits,
        head=head,
        columns=columns,
        gap_patterns=gap_patterns,
        rules=found_rules,
        table=table,
        feature_names=feature_names,
        shift=shift,
        scale=scale,
        train=rows(splits.train),
        val=rows(splits.val),
        test=rows(splits.test),
    )
    described = (
        f"{len(ds.feature_names)} columns ({prepared.input_dim} encoded features)"
        if columns
        else f"{prepared.input_dim} features"
    )
    log(
        f"{opts.name}: {len(ds)} rows x {described} from {ds.source}, read and encoded in "
        f"{time.perf_counter() - started:.2f} s; split {len(splits.train)}/{len(splits.val)}/{len(splits.test)} "
        "(train/val/test)"
    )
    return prepared


def fit_model(opts: TrainOptions, prepared: Prepared, log) -> Fitted:
    """Train the model (early stopping on the validation split), recalibrate a quantile model's bands on the
    validation split, and fit the latent prior of a table or conditional model."""
    assert opts.head is not None
    table = prepared.table
    layout = (
        {}
        if table is None
        else {
            "numeric_dim": table.n_numeric,
            "categories": tuple(len(c.categories or []) for c in table.discrete),
            "numeric_gap": table.numeric_gap(),
        }
    )
    config = ModelConfig(
        input_dim=prepared.input_dim,
        latent_dim=opts.latent_dim,
        hidden=opts.hidden,
        head=opts.head,
        n_labels=len(prepared.dataset.labels) if opts.conditional else 0,
        quantile_levels=opts.quantile_levels,
        **layout,
    )
    started = time.perf_counter()
    result = fit(config, prepared.train, prepared.val, opts.train, desc=opts.name)
    offset_max = None
    if HEADS[opts.head].levelled and _should_calibrate(opts.calibration, len(prepared.splits.val), log):
        offsets = calibrate_quantiles(result.model, *prepared.val)
        offset_max = float(np.abs(offsets).max())
    # a table model generates from a mixture fitted to its codes (training/prior.py); others from N(0, I)
    latent_prior = (
        fit_latent_prior(result.model, *prepared.train, opts.train.seed)
        if prepared.columns is not None or opts.conditional
        else None
    )
    return Fitted(config, result, offset_max, latent_prior, time.perf_counter() - started)


def evaluate_model(opts: TrainOptions, prepared: Prepared, fitted: Fitted) -> Evaluation:
    """The test split's figures; a quantile model's band coverage per feature, and its Gaussian baseline
    (trained here) with a warning when the baseline's bands are more accurate."""
    assert opts.head is not None
    model, test = fitted.result.model, prepared.test
    calibration = (
        {} if fitted.calibration_offset_max is None else {"calibration_offset_max": fitted.calibration_offset_max}
    )
    metrics = {**_test_metrics(model, opts, prepared.train, test, fitted.latent_prior), **calibration}
    warnings, coverage = [], None
    if HEADS[opts.head].levelled:
        coverage = evaluate.coverage_by_feature(model, *test, prepared.feature_names)
    if HEADS[opts.head].levelled and opts.baseline:
        baseline = fit(
            replace(fitted.config, head="gaussian"),
            prepared.train,
            prepared.val,
            opts.train,
            desc=f"{opts.name} (gaussian baseline)",
        )
        metrics.update(evaluate.gaussian_band_coverage(baseline.model, *test, opts.quantile_levels))
        if metrics["pinball_loss"] > metrics["baseline_gaussian_pinball_loss"]:
            warnings.append(
                f"the quantile head scores worse than its Gaussian baseline on the test split (pinball "
                f"{metrics['pinball_loss']:.4f} vs {metrics['baseline_gaussian_pinball_loss']:.4f}): its bands are "
                "less accurate than mean +- k sigma; train longer (--epochs) or use --head gaussian"
            )
    return Evaluation(
        split="test", rows=len(prepared.splits.test), metrics=metrics, coverage_by_feature=coverage, warnings=warnings
    )


def review(staged: Path, evaluation: Evaluation, opts: TrainOptions, prepared: Prepared, log) -> Evaluation:
    """`evaluation` with what the staged export's own ONNX graphs show, read as the service will: its anomaly
    score thresholds, and the quality report of its generated rows (with their figure, written beside it).
    Unchanged without ONNX graphs."""
    if "onnx" not in opts.formats:
        return evaluation
    found = {"anomaly": _anomaly_calibration(staged, prepared.val, prepared.test)}
    log(format_anomaly(opts.name, found["anomaly"]))
    if opts.quality_report and prepared.dataset.image_shape is None:
        t0 = time.perf_counter()
        report = _quality_report(staged, prepared.dataset, prepared.splits, opts)
        log(
            f"{opts.name}: quality of {report['rows']} generated rows against the test split "
            f"({time.perf_counter() - t0:.1f} s):\n{quality.format_report(report)}"
        )
        found["quality"] = report
    return Evaluation.model_validate(evaluation.model_copy(update=found).model_dump())


def _manifest_fields(opts: TrainOptions, prepared: Prepared, fitted: Fitted, evaluation: Evaluation) -> dict:
    """The manifest's fields but for its graphs (training/export.py's) and promotion."""
    assert opts.head is not None
    ds, result = prepared.dataset, fitted.result
    training = TrainingInfo(
        data=ds.source,
        label_column=ds.label_column,
        seed=opts.train.seed,
        epochs_run=result.epochs_run,
        max_epochs=opts.train.max_epochs,
        fit_seconds=round(fitted.fit_seconds, 3),
        hyperparameters={**_hyperparameters(opts), "best_epoch": result.best_epoch},
        versions=_versions(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return {
        "head": opts.head,
        "quantile_levels": list(opts.quantile_levels) if HEADS[opts.head].levelled else None,
        "labels": ds.labels if opts.conditional else None,
        "label_weights": _label_shares(prepared) if opts.conditional else None,
        "label_position": ds.label_position if opts.conditional and ds.columns is not None else None,
        "dropped_columns": _dropped(ds, opts.conditional),
        "input_dim": prepared.input_dim,
        "image_shape": ds.image_shape,
        "feature_names": prepared.feature_names,
        "columns": prepared.columns,
        "gap_patterns": prepared.gap_patterns,
        "rules": prepared.rules,
        "latent_dim": opts.latent_dim,
        "reference": _references(prepared, opts.conditional),
        "latent_prior": fitted.latent_prior,
        # a dict, not yet a Normalization: validated with the rest of the manifest at export, as it always was
        "normalization": {"shift": prepared.shift.tolist(), "scale": prepared.scale.tolist()},
        "evaluation": evaluation,
        "training": training,
    }


def _rules(opts: TrainOptions, ds: Dataset, splits: Splits, columns: list[Column], log) -> list[Rule] | None:
    """The declared rules, checked on the training rows, and (unless asked not to) those found in them, each
    printed with its support; None where there are none."""
    train = splits.train
    assert train.frame is not None
    labels = None
    if opts.conditional and ds.labels is not None and train.y is not None:
        labels = (ds.label_column or "label", pd.Series(np.asarray(ds.labels, dtype=object)[train.y]))
    given = rules.declared(opts.rules, columns, train.frame, labels)
    taken = {tuple(r.columns) for r in given} | {tuple(reversed(r.columns)) for r in given}
    found = [r for r in rules.discover(columns, train.frame, labels) if tuple(r.columns) not in taken]
    kept = [*given, *(found if opts.discover_rules else [])]
    for rule in kept:
        where = "declared" if rule.declared else "found"
        log(f"{opts.name}: rule {rule.text()} ({where}; holds in all {rule.support} training rows with its columns)")
    if found and not opts.discover_rules:
        log(f"{opts.name}: {len(found)} rule(s) found in the data not held (--no-discovered-rules)")
    return kept or None


def _label_shares(prepared: Prepared) -> list[float]:
    """Each label's share of the training split's rows: what /generate draws labels from by default."""
    y, labels = prepared.splits.train.y, prepared.dataset.labels
    assert y is not None and labels is not None
    counts = np.bincount(y, minlength=len(labels))
    return [round(float(c), 6) for c in counts / counts.sum()]


def _dropped(ds: Dataset, conditional: bool) -> list[DroppedColumn] | None:
    """A table's columns the model leaves out, with why (the label too, when the model does not generate it)."""
    if ds.columns is None:
        return None
    dropped = list(ds.dropped)
    if ds.label_column is not None and not conditional:
        reason = "the label column of an unconditional model (train with --conditional to generate it)"
        order = original_order(len(ds.columns), ds.label_position, dropped)
        position = None if order is None else order.index("label")
        dropped.append(DroppedColumn(name=ds.label_column, reason=reason, position=position))
        dropped.sort(key=lambda d: d.position if d.position is not None else len(order or []))
    return dropped


def _references(prepared: Prepared, conditional: bool) -> list[Reference] | None:
    """The training split's rows per label (all of them for an unconditional model) as the web page draws
    them behind generated rows; None for images, which it shows as pictures."""
    ds, train, table = prepared.dataset, prepared.splits.train, prepared.table
    if ds.image_shape is not None:
        return None
    if table is not None:
        assert train.frame is not None
        # numbers (a date or time as its seconds: the page draws it on a time axis) and categories, by column
        measured = [c for c in table.columns if c.numeric or c.kind in tables.TEMPORAL_KINDS]
        numeric = np.column_stack(
            [np.zeros(len(train))]  # keeps the shape of a table without numbers
            + [
                tables.temporal_seconds(train.frame[c.name], c)
                if c.kind in tables.TEMPORAL_KINDS
                else pd.to_numeric(train.frame[c.name], errors="coerce").to_numpy(dtype=np.float64)
                for c in measured
            ]
        )[:, 1:]
        names = [c.name for c in measured]
        _, all_codes = tables.frame_arrays(table, train.frame)
        kept = [j for j, c in enumerate(table.discrete) if c.name in table.names]  # not a date's parts
        codes = all_codes[:, kept]
        categories = {
            table.discrete[j].name: [category_key(v) for v in table.discrete[j].categories or []] for j in kept
        }
    else:
        assert train.x is not None
        numeric, names = train.x.astype(np.float64), list(ds.feature_names)
        codes, categories = np.zeros((len(train), 0), dtype=np.int64), {}
    if not conditional:
        return [quality.reference(numeric, names, codes, categories)]
    assert ds.labels is not None and train.y is not None
    return [
        quality.reference(numeric[train.y == k], names, codes[train.y == k], categories) for k in range(len(ds.labels))
    ]


def _log_summary(opts: TrainOptions, path: Path, result: TrainResult, evaluation: Evaluation, log) -> None:
    log(f"{opts.name}: wrote {path} (best epoch {result.best_epoch} of {result.epochs_run})")
    log(format_metrics(evaluation.metrics))
    if evaluation.coverage_by_feature:
        log(format_coverage(evaluation.coverage_by_feature))
    for warning in evaluation.warnings:
        log(f"WARNING: {opts.name}@{path.name}: {warning}")
    log(format_promotion(read_manifest(path)))


def format_promotion(manifest: Manifest) -> str:
    ref, promotion = f"{manifest.name}@{manifest.version}", manifest.promotion
    if promotion is None:
        return f"{ref}: made before promotion checks (promoted)"
    lines = [f"{ref}: {'PROMOTED' if promotion.promoted else 'HELD BACK'}: {promotion.reason}"]
    lines += [f"  {figure}: {verdict}" for figure, verdict in promotion.checks.items()]
    return "\n".join(lines)


def _test_metrics(model: VAE, opts: TrainOptions, train: Rows, test: Rows, prior: list | None) -> dict[str, float]:
    seed = opts.train.seed
    metrics = evaluate.elbo_metrics(model, *test, seed)
    if not HEADS[opts.head].levelled:
        metrics["iwae_log_likelihood"] = evaluate.iwae_log_likelihood(model, *test, opts.iwae_samples, seed)
        metrics["iwae_k"] = float(opts.iwae_samples)
    else:
        metrics.update(evaluate.quantile_metrics(model, *test, train[0]))
    if opts.conditional:
        metrics["conditional_accuracy"] = evaluate.conditional_accuracy(model, train[0], train[1], seed, prior)
    return metrics


def _anomaly_calibration(staged: Path, val: Rows, test: Rows) -> dict:
    """Thresholds of core/scoring.py's score on the validation split's rows (normal, held out from
    the fit), and the false-alarm rate the 1% threshold gives on the test split's."""
    scorer = AnomalyScorer(staged)
    calibration = scorer.calibration(*val)
    test_scores = scorer.score(*test).score
    calibration["test_false_alarm_rate"] = float((test_scores > calibration["thresholds"]["0.01"]).mean())
    return calibration


def format_anomaly(name: str, calibration: dict) -> str:
    thresholds = ", ".join(f"{float(r):.1%}: {t:.3f}" for r, t in calibration["thresholds"].items())
    q = calibration["score_quantiles"]
    score = "negative ELBO plus the largest surprise" if calibration.get("surprise") else "negative ELBO"
    return (
        f"{name}: anomaly score ({score}, nats) on {calibration['rows']} held-out normal rows: median "
        f"{q['0.5']:.3f}, 99th percentile {q['0.99']:.3f}; thresholds by false-alarm rate {thresholds}; "
        f"the 1% threshold flags {calibration['test_false_alarm_rate']:.1%} of the test split"
    ) + (
        f"\nWARNING: {name}: only {calibration['rows']} normal rows to calibrate on: the thresholds for "
        f"{', '.join(calibration['coarse_rates'])} are extrapolated beyond the largest score (a Pareto "
        "tail), and their false-alarm rates are rough"
        if calibration.get("coarse_rates")
        else ""
    )


def _quality_report(staged: Path, ds: Dataset, splits: Splits, opts: TrainOptions) -> dict:
    """training/quality.py's report on rows the staged export makes, as /generate would, per label as
    many as the training split has (at most quality.REPORT_MAX_ROWS in all)."""
    from core.offline import Sampler

    labels = ds.labels if opts.conditional else None
    schema = quality.schema_of(ds.columns, ds.feature_names, (ds.label_column or "label") if labels else None)
    train, test = (quality.real_frame(p.frame, p.x, p.y, labels, schema) for p in (splits.train, splits.test))
    counts = quality.report_counts(splits.train.y if labels else None, len(labels or []), len(splits.train))
    sampler = Sampler(staged)
    synthetic = quality.synthetic_frame(sampler, counts, labels, schema, opts.train.seed)
    (staged / COLUMNS_FIGURE).write_text(
        figures.column_histograms(
            quality.prepared(test, schema), quality.prepared(synthetic, schema), schema.numeric, schema.discrete
        )
    )
    report = quality.quality_report(train, test, synthetic, schema, opts.train.seed)
    if sampler.model.rules is not None:  # how many drawn rows broke a rule checked (and were drawn again)
        report["rules_redrawn"] = round(sampler.model.rules.redrawn_share, 4)
    return report


def _should_calibrate(mode: str, val_rows: int, log) -> bool:
    if mode == "auto" and val_rows < MIN_CALIBRATION_ROWS:
        log(f"calibration: skipped, the validation split has {val_rows} rows (auto needs {MIN_CALIBRATION_ROWS})")
        return False
    return mode != "off"


def _check_levels(levels: tuple[float, ...]) -> None:
    if len(levels) < 2 or any(not 0 < q < 1 for q in levels) or list(levels) != sorted(set(levels)):
        raise DataError(f"quantile levels {list(levels)} must be at least two, strictly increasing, inside (0, 1)")


def _hyperparameters(opts: TrainOptions) -> dict:
    return {
        "latent_dim": opts.latent_dim,
        "hidden": list(opts.hidden),
        "head": opts.head or "",
        "numeric_encoding": opts.numeric_encoding,
        **{k: v for k, v in asdict(opts.train).items() if k != "seed"},
    }


def _versions() -> dict[str, str]:
    packages = ("torch", "onnx", "onnxruntime", "numpy", "scikit-learn", "pandas")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def format_metrics(metrics: dict[str, float]) -> str:
    width = max(map(len, metrics))
    return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in metrics.items())


def format_coverage(coverage: dict[str, dict[str, float]]) -> str:
    """Band coverage per feature on the test split, one line each (nominal 0.90 and 0.50)."""
    width = max(map(len, coverage))
    lines = [f"  {'coverage on test':<{width}}  90% band  50% band"]
    lines += [
        f"  {f:<{width}}  {c.get('90', float('nan')):8.3f}  {c.get('50', float('nan')):8.3f}"
        for f, c in coverage.items()
    ]
    return "\n".join(lines)


def progress_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
