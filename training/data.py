"""Data sets: the scikit-learn built-ins and NPZ arrays (all-numeric), tables (CSV, Parquet,
the Palmer penguins) with a column schema, seeded splits, normalisation.

Everything here is numpy (and pandas for tables, in training/tables.py); torch enters only
in the training loop. The types (`Dataset`, `Splits`, `ReadOptions`, `DataError`) live in
training/datasets.py, which training/tables.py shares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.heads import HEADS
from training import tables
from training.datasets import MIN_ROWS, DataError, Dataset, ReadOptions, Splits, encode_labels

BUILTINS = ("digits", "breast-cancer", "penguins")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def load(spec: str, label_column: str | None = None, read: ReadOptions | None = None) -> Dataset:
    """Load `digits`, `breast-cancer`, `penguins`, a `.csv`/`.parquet` table or a `.npz` file, and check it."""
    if spec in BUILTINS:
        if label_column is not None:
            raise DataError(f"--label-column applies to tables only; {spec!r} has its labels built in")
        dataset = tables.load_penguins(read or ReadOptions()) if spec == "penguins" else _load_builtin(spec)
    else:
        path = Path(spec)
        suffix = path.suffix.lower()
        if suffix not in (*TABLE_SUFFIXES, *tables.SPREADSHEET_SUFFIXES, ".npz"):
            raise DataError(
                f"unknown data {spec!r}: use one of {', '.join(BUILTINS)}, or a .csv, .parquet or .npz file"
            )
        if not path.is_file():
            raise DataError(f"data file {spec!r} does not exist")
        if suffix != ".npz":  # a spreadsheet is refused there, with how to export it as CSV
            dataset = tables.load_table(path, label_column, read or ReadOptions())
        else:
            if label_column is not None:
                raise DataError("--label-column applies to tables only; an NPZ file holds its labels in 'y'")
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
        y, labels = encode_labels([str(v) for v in raw.tolist()], f"{path}: 'y'")
    features = [f"x{i}" for i in range(x.shape[1])]
    return Dataset(x.astype(np.float32), y, labels, features, image_shape, str(path))


def _check(ds: Dataset) -> None:
    if len(ds) < MIN_ROWS:
        raise DataError(f"{ds.source}: {len(ds)} rows; training needs at least {MIN_ROWS}")
    bad = np.zeros((0, 0), dtype=bool) if ds.x is None else ~np.isfinite(ds.x)
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


def default_head(ds: Dataset) -> str:
    """The head when none is asked for: Bernoulli for all-numeric data in [0, 1] (images), Gaussian otherwise
    (on tables the Gaussian head over normal-score-encoded numeric columns measures best, see the README)."""
    if ds.x is not None and ds.x.min() >= 0 and ds.x.max() <= 1:
        return "bernoulli"
    return "gaussian"


def fit_normalization(x_train: np.ndarray, head: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) fitted on the training split only.

    Bernoulli data must already lie in [0, 1] and is left as it is; Gaussian and quantile
    heads see standardised features (a constant feature keeps scale 1).
    """
    dim = x_train.shape[1]
    if HEADS[head].unit_interval:
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    std = x_train.std(axis=0)
    return x_train.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def check_head(ds: Dataset, head: str) -> None:
    if HEADS[head].unit_interval and ds.x is None:
        raise DataError(
            f"{ds.source}: the bernoulli head is for data in [0, 1] such as images; a table takes --head gaussian "
            "or --head quantile (or no --head: the choice is made from the data)"
        )
    if HEADS[head].unit_interval and (ds.x.min() < 0 or ds.x.max() > 1):
        raise DataError(
            f"{ds.source}: the bernoulli head needs every feature in [0, 1], found values in "
            f"[{ds.x.min():g}, {ds.x.max():g}]; scale the data, or use --head gaussian or --head quantile"
        )
