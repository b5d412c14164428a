"""How good a model's synthetic rows are, measured against real rows it never saw.

One function, `quality_report`, scores synthetic rows against the real training and test splits;
training stores its report in the manifest (`evaluation.quality`) and bench/synthetic.py scores
SDV's synthesizers with the same code. Every figure is "higher is better" unless it says otherwise:

- quality, column_shapes, column_pair_trends: SDMetrics' QualityReport (SDV's metrics library) of
  the synthetic rows against the real test split: per column KS / total-variation complements, per
  pair of columns correlation / contingency similarity; quality is their mean.
- column_pair_trends_real_bins, quality_real_bins: the same, with each numeric column of both tables
  cut on the real table's histogram edges (the outer ones open), as SDMetrics' maintainers describe
  the method (sdv-dev/SDMetrics#368). SDMetrics 0.32 cuts each table over its own range, so rows
  that reach the training split's extremes move every bin of the synthetic table: on 5,000 rows of
  diamonds the real training rows themselves score 0.907 against the test split that way.
- label_shapes: the column shapes within each label (synthetic rows asked for a label against the
  real test rows of that label), averaged over labels.
- validity: share of synthetic rows whose every value lies within the training split's bounds and
  categories.
- tstr_auc: a random forest trained on synthetic rows predicts the label of real test rows (ROC AUC,
  one-vs-rest macro for more than two labels); trtr_auc is the same forest trained on real rows.
- label_faithfulness: share of synthetic rows that a random forest trained on real rows recognises as
  the label they were asked for; real_recognition the same for real test rows (the ceiling); both
  per label under *_by_label.
- nearer_to_train_share (lower is better, 0.5: no memorisation): share of synthetic rows whose nearest
  real row lies in a random sample of the training split as large as the test split rather than in
  the test split, averaged over 20 such samples. exact_copies (lower is better): synthetic rows equal
  to a training row in every column.
- calendar_tvd (lower is better, 0: the same shares), for tables with dates or times: per date or time
  column, the total-variation distance between the synthetic and the real test rows' shares of each hour
  of the day (times and timestamps), day of the week and month (dates and timestamps), keyed
  "<column> <hour|weekday|month>"; calendar_tvd_within_labels the same within each label (synthetic rows
  asked for a label against the real test rows of that label), averaged over labels.

`reference` describes real rows column by column (the share missing, the values' quantiles or each
category's share): training stores the training split's, per label, as `Manifest.reference`, which the
web page draws generated rows against.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.codecs import HOUR_PART, WEEKDAY_PART, time_parts
from core.manifest import REFERENCE_QUANTILES, ColumnReference, Reference
from training.tables import TEMPORAL_KINDS, temporal_seconds

FOREST_TREES = 200
PRIVACY_DRAWS = 20  # random samples of the training split the nearer-to-train share is averaged over


@dataclass(frozen=True)
class Schema:
    """The columns a report compares: numeric (continuous and integer) and categorical (with booleans),
    and the label (categorical), if the rows have one."""

    numeric: list[str]
    categorical: list[str]
    label: str | None = None
    temporal: dict[str, Any] = field(default_factory=dict)  # dates and times among `numeric`: their Columns

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def discrete(self) -> list[str]:
        return [*self.categorical, *([self.label] if self.label else [])]


def prepared(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Numeric columns as float (NaN: missing), categorical ones as text (None: missing)."""
    out = {
        c: temporal_seconds(frame[c], schema.temporal[c])
        if c in schema.temporal
        else pd.to_numeric(frame[c], errors="coerce").astype(float)
        for c in schema.numeric
    }
    out |= {c: frame[c].map(_text).astype(object) for c in schema.discrete}
    return pd.DataFrame(out)[[*schema.features, *([schema.label] if schema.label else [])]]


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quality_report(
    train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0
) -> dict:
    """Score `synthetic` rows against the real `train` and `test` splits (all three with the schema's
    columns, the label's too). Returns the figures above, rounded to 4 places."""
    train, test, synthetic = (prepared(f, schema) for f in (train, test, synthetic))
    report: dict = sdmetrics_quality(test, synthetic, schema)
    report["validity"] = validity(train, synthetic, schema)
    if schema.label is not None:
        report["label_shapes"] = float(
            np.mean(
                [
                    column_shapes(test[test[schema.label] == v], synthetic[synthetic[schema.label] == v], schema)
                    for v in sorted(test[schema.label].dropna().unique())
                ]
            )
        )
        report |= label_scores(train, test, synthetic, schema, seed)
    if schema.temporal:
        report |= calendar_distances(test, synthetic, schema)
    report |= privacy(train, test, synthetic, schema, seed)
    report["rows"] = len(synthetic)
    return _rounded(report)


def sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[str, float]:
    with warnings.catch_warnings():  # 0.32 points at its multi-table report; this one does the same for one table
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

    metadata = {
        "columns": {c: {"sdtype": "numerical"} for c in schema.numeric}
        | {c: {"sdtype": "categorical"} for c in schema.discrete}
    }
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, metadata, verbose=False)
    scores = dict(zip(*report.get_properties().to_dict("list").values(), strict=True))
    real_bins = _pair_trends_on_real_bins(real, synthetic, metadata)
    return {
        "quality": float(report.get_score()),
        "column_shapes": float(scores["Column Shapes"]),
        "column_pair_trends": float(scores["Column Pair Trends"]),
        "column_pair_trends_real_bins": float(real_bins),
        "quality_real_bins": float((scores["Column Shapes"] + real_bins) / 2),
    }


def _pair_trends_on_real_bins(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> float:
    from sdmetrics.reports.single_table._properties import ColumnPairTrends

    class RealBinned(ColumnPairTrends):
        def _generate_details(self, real_data, synthetic_data, metadata, progress_bar=None, column_pairs=None):
            self._edges = {}
            for name, meta in metadata["columns"].items():
                if meta["sdtype"] == "numerical" and real_data[name].notna().any():
                    edges = np.histogram_bin_edges(real_data[name].dropna()).astype(float)
                    edges[0], edges[-1] = -np.inf, np.inf
                    self._edges[name] = edges
            return super()._generate_details(real_data, synthetic_data, metadata, progress_bar, column_pairs)

        def _discretize_column(self, column_name, data, bin_edges=None):
            return super()._discretize_column(column_name, data, self._edges.get(column_name))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(RealBinned().get_score(real, synthetic, metadata))


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> float:
    """Mean over feature columns of SDMetrics' KSComplement (numeric) or TVComplement (categorical)."""
    from sdmetrics.single_column import KSComplement, TVComplement

    scores = []
    for c in schema.features:
        r, s = real[c].dropna(), synthetic[c].dropna()
        if len(r) == 0 or len(s) == 0:
            scores.append(float(len(r) == len(s)))  # both empty: alike; one empty: as unlike as can be
            continue
        metric = KSComplement if c in schema.numeric else TVComplement
        scores.append(float(metric.compute(r, s)))
    return float(np.mean(scores))


CALENDAR_PARTS = {"date": ("weekday", "month"), "datetime": ("hour", "weekday", "month"), "time": ("hour",)}


def calendar_distances(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[str, dict[str, float]]:
    """calendar_tvd and calendar_tvd_within_labels (above) of prepared frames (dates and times as seconds)."""
    label = schema.label
    labels = sorted(real[label].dropna().unique()) if label else []
    overall, within = {}, {}
    for name, column in schema.temporal.items():
        r, s = _calendar(real[name]), _calendar(synthetic[name])
        for part in CALENDAR_PARTS[column.kind]:
            key = f"{name} {part}"
            overall[key] = _tvd(r[part], s[part])
            if labels:
                per_label = [_tvd(r[part][real[label] == v], s[part][synthetic[label] == v]) for v in labels]
                within[key] = float(np.mean(per_label))
    return {"calendar_tvd": overall} | ({"calendar_tvd_within_labels": within} if labels else {})


def _calendar(seconds: pd.Series) -> dict[str, pd.Series]:
    """Seconds since 1970 (since midnight for a time of day) -> hour, weekday (0 Monday) and month."""
    hour, weekday = time_parts(seconds.to_numpy(dtype=float), (HOUR_PART, WEEKDAY_PART))
    month = pd.to_datetime(seconds, unit="s").dt.month.astype(float)
    return {"hour": pd.Series(hour, seconds.index), "weekday": pd.Series(weekday, seconds.index), "month": month}


def _tvd(real: pd.Series, synthetic: pd.Series) -> float:
    """Total-variation distance between two columns' shares of each value (missing values left out)."""
    r, s = real.dropna(), synthetic.dropna()
    if len(r) == 0 or len(s) == 0:
        return float(len(r) != len(s))  # both empty: alike; one empty: as unlike as can be
    p, q = r.value_counts(normalize=True), s.value_counts(normalize=True)
    return float(p.sub(q, fill_value=0.0).abs().sum() / 2)


def validity(train: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> float:
    valid = np.ones(len(synthetic), dtype=bool)
    for c in schema.numeric:
        lo, hi, v = train[c].min(), train[c].max(), synthetic[c]
        valid &= (v.isna() | ((v >= lo) & (v <= hi))).to_numpy()
    for c in schema.discrete:
        known = set(train[c].dropna())
        valid &= synthetic[c].map(lambda v, k=known: v is None or v in k).to_numpy(dtype=bool)
    return float(valid.mean()) if len(valid) else 0.0


def features(frame: pd.DataFrame, reference: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Numbers for a classifier: numeric columns as they are (NaN kept: forests handle it), one 0/1
    column per category of the reference rows."""
    parts = [frame[schema.numeric].to_numpy(dtype=float)]
    for c in schema.categorical:
        categories = sorted(reference[c].dropna().unique())
        parts.append(
            np.column_stack([(frame[c] == k).to_numpy(dtype=float) for k in categories] or [np.zeros(len(frame))])
        )
    return np.column_stack(parts)


def label_scores(
    train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int
) -> dict[str, float | dict[str, float]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    label = schema.label
    assert label is not None
    labels = sorted(train[label].dropna().unique())
    x_train, x_test, x_syn = (features(f, train, schema) for f in (train, test, synthetic))
    y_train, y_test, y_syn = (f[label].to_numpy() for f in (train, test, synthetic))

    def forest(x: np.ndarray, y: np.ndarray) -> RandomForestClassifier:
        return RandomForestClassifier(FOREST_TREES, random_state=seed, n_jobs=1).fit(x, y)

    def auc(model: RandomForestClassifier) -> float:
        proba = pd.DataFrame(model.predict_proba(x_test), columns=model.classes_).reindex(columns=labels, fill_value=0)
        if len(labels) == 2:
            return float(roc_auc_score(y_test == labels[1], proba[labels[1]]))
        return float(roc_auc_score(y_test, proba.to_numpy(), multi_class="ovr", labels=labels))

    real = forest(x_train, y_train)
    synthetic_forest = forest(x_syn, y_syn)

    def recognised(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        hit = real.predict(x) == y
        return {v: float(hit[y == v].mean()) for v in labels if (y == v).any()}

    by_label = recognised(x_syn, y_syn)
    return {
        "tstr_auc": auc(synthetic_forest),
        "trtr_auc": auc(real),
        "label_faithfulness": float((real.predict(x_syn) == y_syn).mean()),
        "real_recognition": float((real.predict(x_test) == y_test).mean()),
        "label_faithfulness_by_label": by_label,
        "real_recognition_by_label": recognised(x_test, y_test),
    }


def privacy(
    train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int
) -> dict[str, float]:
    """Nearest-row distances on a shared scale: numeric columns over the training range (a missing
    value: -1), one 0/1 column per category; L1 (Manhattan) distance."""
    from sklearn.neighbors import NearestNeighbors

    columns = [*schema.features, *([schema.label] if schema.label else [])]
    cat_schema = Schema(schema.numeric, schema.discrete)
    lo, hi = train[schema.numeric].min(), train[schema.numeric].max()

    def scaled(frame: pd.DataFrame) -> np.ndarray:
        x = features(frame, train, cat_schema)
        n = len(schema.numeric)
        span = (hi - lo).replace(0, 1).to_numpy(dtype=float)
        x[:, :n] = np.nan_to_num((x[:, :n] - lo.to_numpy(dtype=float)) / span, nan=-1.0)
        return x

    # the share depends on which training rows stand beside the test split: averaged over draws
    rng = np.random.default_rng(seed)
    x_syn, x_train = scaled(synthetic), scaled(train)
    d_test = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(scaled(test)).kneighbors(x_syn)[0][:, 0]
    shares = []
    for _ in range(PRIVACY_DRAWS):
        sample = x_train[rng.choice(len(train), size=min(len(train), len(test)), replace=False)]
        d_train = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(sample).kneighbors(x_syn)[0][:, 0]
        shares.append(np.where(d_train < d_test, 1.0, np.where(d_train == d_test, 0.5, 0.0)).mean())
    seen = set(_row_keys(train[columns], schema.temporal))
    copies = sum(key in seen for key in _row_keys(synthetic[columns], schema.temporal))
    return {"nearer_to_train_share": float(np.mean(shares)), "exact_copies": copies}


def _row_keys(frame: pd.DataFrame, temporal: dict | None = None) -> list[tuple]:
    """Rows as hashable tuples; numbers to 6 significant digits (a date or time: whole seconds, since 1970
    takes 10 digits), missing as None."""
    whole = [c in (temporal or {}) for c in frame.columns]

    def key(v: object, exact: bool) -> object:
        if pd.isna(v):
            return None
        if exact:
            return int(v)  # type: ignore[call-overload]
        return f"{v:.6g}" if isinstance(v, float) else v

    return [tuple(key(v, e) for v, e in zip(row, whole, strict=True)) for row in frame.itertuples(index=False)]


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def format_report(report: dict) -> str:
    """The report as indented lines for the CLI."""
    lines, width = [], max(map(len, report), default=0)
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.3f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4f}"
        lines.append(f"  {key:<{width}}  {value}")
    return "\n".join(lines)


REPORT_MAX_ROWS = 10_000  # synthetic rows a training report makes at most (in the label proportions)


def schema_of(columns: list | None, feature_names: list[str], label: str | None) -> Schema:
    """From a manifest's column schema (core.manifest.Column), or all-numeric features; constant columns
    are left out (nothing to compare)."""
    if columns is None:
        return Schema(list(feature_names), [], label)
    numeric = [c.name for c in columns if c.kind in ("continuous", "integer", *TEMPORAL_KINDS)]
    temporal = {c.name: c for c in columns if c.kind in TEMPORAL_KINDS}
    return Schema(numeric, [c.name for c in columns if c.kind in ("categorical", "boolean")], label, temporal)


def real_frame(frame: pd.DataFrame | None, x: np.ndarray | None, y, labels, schema: Schema) -> pd.DataFrame:
    """A split's rows in original units as a frame (a table's own, or the array's features), with the label."""
    out = frame.copy() if frame is not None else pd.DataFrame(x, columns=schema.numeric)
    if schema.label is not None:
        out[schema.label] = [labels[i] for i in y]
    return out


def synthetic_frame(sampler, counts: list[int], labels: list[str] | None, schema: Schema, seed: int) -> pd.DataFrame:
    """Rows from `sampler` (core.offline.Sampler): counts[k] rows for label k (one count: unconditional)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, n in enumerate(counts):
        values = sampler.generate(n, k if labels else None, rng)
        part = (
            pd.DataFrame(dict(zip(sampler.names, values, strict=True)))
            if sampler.table is not None
            else pd.DataFrame(values, columns=sampler.names)
        )
        if labels and schema.label is not None:
            part[schema.label] = labels[k]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def reference(
    numeric: np.ndarray, numeric_names: list[str], codes: np.ndarray, categories: dict[str, list[str]]
) -> Reference:
    """Real rows as the web page draws them behind generated ones (`Manifest.reference`): `numeric`
    [rows, numeric_names] in original units (NaN: missing), `codes` [rows, categories] the index of
    each row's category (-1: missing) in `categories` (name -> category keys, in one-hot order)."""
    rows = len(numeric)
    columns = {}
    for j, name in enumerate(numeric_names):
        present = numeric[:, j][~np.isnan(numeric[:, j])]
        quantiles = np.quantile(present, np.linspace(0, 1, REFERENCE_QUANTILES + 1)) if len(present) else None
        columns[name] = ColumnReference(
            missing=_share(rows - len(present), rows),
            quantiles=None if quantiles is None else [float(f"{v:.10g}") for v in quantiles],
        )
    for j, (name, keys) in enumerate(categories.items()):
        counts = np.bincount(codes[:, j][codes[:, j] >= 0], minlength=len(keys))
        columns[name] = ColumnReference(
            missing=_share(rows - int(counts.sum()), rows),
            shares={k: _share(int(c), rows) for k, c in zip(keys, counts, strict=True)},
        )
    return Reference(rows=rows, columns=columns)


def _share(count: int, rows: int) -> float:
    return round(count / rows, 6) if rows else 0.0


def report_counts(y: np.ndarray | None, n_labels: int, rows: int) -> list[int]:
    """Synthetic rows per label: as many as the training split has of that label, scaled down to at
    most REPORT_MAX_ROWS in all."""
    counts = np.bincount(y, minlength=n_labels) if n_labels else np.array([rows])
    factor = min(1.0, REPORT_MAX_ROWS / max(1, counts.sum()))
    return [max(1, round(c * factor)) if c else 0 for c in counts]
