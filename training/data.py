"""Data sets: the scikit-learn built-ins, user CSV and NPZ files, seeded splits, normalisation.

Everything here is numpy; torch enters only in the training loop.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTINS = ("digits", "breast-cancer")
MIN_ROWS = 40  # enough that each of the three splits holds a handful of rows


class DataError(ValueError):
    """A data set that cannot be trained on; the message says what is wrong and where."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # (rows, features) float32, original units
    y: np.ndarray | None  # (rows,) int64 index into `labels`, or None
    labels: list[str] | None  # label vocabulary
    feature_names: list[str]
    image_shape: list[int] | None
    source: str
    label_column: str | None = None

    def subset(self, index: np.ndarray) -> Dataset:
        y = None if self.y is None else self.y[index]
        return Dataset(
            self.x[index], y, self.labels, self.feature_names, self.image_shape, self.source, self.label_column
        )

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def load(spec: str, label_column: str | None = None) -> Dataset:
    """Load `digits`, `breast-cancer`, a `.csv` or a `.npz` file, and check it."""
    if spec in BUILTINS:
        if label_column is not None:
            raise DataError(f"--label-column applies to CSV files only; {spec!r} has its labels built in")
        dataset = _load_builtin(spec)
    else:
        path = Path(spec)
        if path.suffix.lower() not in (".csv", ".npz"):
            raise DataError(f"unknown data {spec!r}: use one of {', '.join(BUILTINS)}, or a .csv or .npz file")
        if not path.is_file():
            raise DataError(f"data file {spec!r} does not exist")
        if path.suffix.lower() == ".csv":
            dataset = _load_csv(path, label_column)
        else:
            if label_column is not None:
                raise DataError("--label-column applies to CSV files only; an NPZ file holds its labels in 'y'")
            dataset = _load_npz(path)
    _check(dataset)
    return dataset


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        x = bunch.data / 16.0  # pixel intensities 0..16 -> [0, 1]
        features = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
        return Dataset(
            x.astype(np.float32), bunch.target.astype(np.int64), [str(d) for d in range(10)], features, [8, 8], "digits"
        )
    bunch = datasets.load_breast_cancer()
    return Dataset(
        bunch.data.astype(np.float32),
        bunch.target.astype(np.int64),
        [str(n) for n in bunch.target_names],
        [str(f) for f in bunch.feature_names],
        None,
        "breast-cancer",
    )


def _load_csv(path: Path, label_column: str | None) -> Dataset:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: the file is empty; expected a header row and data rows") from None
        rows = [row for row in reader if row]
    if label_column is not None and label_column not in header:
        raise DataError(f"{path}: label column {label_column!r} not found; columns are: {', '.join(header)}")
    feature_cols = [i for i, h in enumerate(header) if h != label_column]
    if not feature_cols:
        raise DataError(f"{path}: no feature columns besides the label column")
    x = np.empty((len(rows), len(feature_cols)), dtype=np.float64)
    for r, row in enumerate(rows):
        line = r + 2  # 1-based, after the header
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
        for j, c in enumerate(feature_cols):
            text = row[c].strip()
            if text == "":
                raise DataError(f"{path}: missing value in column {header[c]!r} at line {line}")
            try:
                x[r, j] = float(text)
            except ValueError:
                raise DataError(
                    f"{path}: column {header[c]!r} at line {line} holds {text!r}, which is not a number"
                ) from None
    y, labels = None, None
    if label_column is not None:
        raw = [row[header.index(label_column)].strip() for row in rows]
        missing = [i + 2 for i, v in enumerate(raw) if v == ""]
        if missing:
            raise DataError(f"{path}: missing label in column {label_column!r} at line {missing[0]}")
        y, labels = _encode_labels(raw)
    return Dataset(x.astype(np.float32), y, labels, [header[c] for c in feature_cols], None, str(path), label_column)


def _encode_labels(raw: list[str]) -> tuple[np.ndarray, list[str]]:
    """Label strings -> (indices, vocabulary); integer labels sort numerically."""
    unique = set(raw)
    try:
        vocabulary = [str(v) for v in sorted({int(v) for v in unique})]
        canonical = {v: str(int(v)) for v in unique}
    except ValueError:
        vocabulary = sorted(unique)
        canonical = {v: v for v in unique}
    position = {name: i for i, name in enumerate(vocabulary)}
    return np.array([position[canonical[v]] for v in raw], dtype=np.int64), vocabulary


def _load_npz(path: Path) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable NPZ file ({e})") from None
    if "x" not in archive:
        raise DataError(f"{path}: no array named 'x'; found: {', '.join(archive.files) or 'none'}")
    x = archive["x"]
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: 'x' must be a numeric array of rows, got dtype {x.dtype} shape {x.shape}")
    image_shape = list(x.shape[1:]) if x.ndim > 2 else None
    x = x.reshape(len(x), -1)
    y, labels = None, None
    if "y" in archive:
        raw = archive["y"]
        if raw.ndim != 1 or len(raw) != len(x):
            raise DataError(f"{path}: 'y' must be 1-D with one label per row of 'x' ({len(x)}), got {raw.shape}")
        y, labels = _encode_labels([str(v) for v in raw.tolist()])
    features = [f"x{i}" for i in range(x.shape[1])]
    return Dataset(x.astype(np.float32), y, labels, features, image_shape, str(path))


def _check(ds: Dataset) -> None:
    if len(ds) < MIN_ROWS:
        raise DataError(f"{ds.source}: {len(ds)} rows; training needs at least {MIN_ROWS}")
    bad = ~np.isfinite(ds.x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{ds.source}: non-finite value in column {ds.feature_names[col]!r} at row {row + 1}")
    if ds.labels is not None and len(ds.labels) < 2:
        raise DataError(
            f"{ds.source}: the label column holds a single class ({ds.labels[0]!r}); a label needs at least two classes"
        )


def split(ds: Dataset, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Splits:
    """Seeded random train/validation/test split."""
    order = np.random.default_rng(seed).permutation(len(ds))
    n_test = max(1, round(test_fraction * len(ds)))
    n_val = max(1, round(val_fraction * len(ds)))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Splits(ds.subset(train), ds.subset(val), ds.subset(test))


def fit_normalization(x_train: np.ndarray, head: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) fitted on the training split only.

    Bernoulli data must already lie in [0, 1] and is left as it is; Gaussian and quantile
    heads see standardised features (a constant feature keeps scale 1).
    """
    dim = x_train.shape[1]
    if head == "bernoulli":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    std = x_train.std(axis=0)
    return x_train.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def check_head(ds: Dataset, head: str) -> None:
    if head == "bernoulli" and (ds.x.min() < 0 or ds.x.max() > 1):
        raise DataError(
            f"{ds.source}: the bernoulli head needs every feature in [0, 1], found values in "
            f"[{ds.x.min():g}, {ds.x.max():g}]; scale the data, or use --head gaussian or --head quantile"
        )
