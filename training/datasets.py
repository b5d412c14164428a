"""The data set types: a loaded `Dataset` (all-numeric arrays, or a table with its column schema),
its seeded `Splits`, the `ReadOptions` a table is read with, and the `DataError` every loader raises.

Shared by training/data.py (loading, checks, splits, normalisation) and training/tables.py (reading
and typing tables), so that neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from core.manifest import Column, DroppedColumn

if TYPE_CHECKING:
    import pandas as pd


MAX_LABELS = 1000  # a label's distinct values: each is a one-hot input (rows x labels floats in training)
MAX_CATEGORIES = 1000  # a categorical column's: an inferred one with more is left out (warned), --categorical refused
MIN_ROWS = 40  # enough that each of the three splits holds a handful of rows


class DataError(ValueError):
    """A data set that cannot be trained on; the message says what is wrong and where."""


@dataclass(frozen=True)
class ReadOptions:
    """How a table is read and typed (the CLI's options)."""

    delimiter: str | None = None  # sniffed when None
    decimal: str | None = None  # "." or ",": numbers' decimal mark in a CSV file (or Parquet text); sniffed when None
    columns: tuple[str, ...] | None = None  # keep only these (besides the label)
    drop_columns: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()  # force these columns categorical
    integer: tuple[str, ...] = ()  # force these columns integer
    datetime: tuple[tuple[str, str | None], ...] = ()  # (column, strptime format or None: sniffed) as dates
    regenerate_ids: bool = False  # generated rows carry the ID columns left out, with new IDs in their pattern


@dataclass(frozen=True)
class Dataset:
    """All-numeric data (`x`), or a table (`frame` and its inferred `columns`, whose numeric
    encodings are fitted later on the training split)."""

    x: np.ndarray | None  # (rows, features) float32, original units; None for a table
    y: np.ndarray | None  # (rows,) int64 index into `labels`, or None
    labels: list[str] | None  # label vocabulary
    feature_names: list[str]
    image_shape: list[int] | None
    source: str
    label_column: str | None = None
    frame: pd.DataFrame | None = None
    columns: list[Column] | None = None
    warnings: list[str] = field(default_factory=list)
    label_position: int | None = None  # a table's: where the label column stood among `columns`
    dropped: list[DroppedColumn] = field(default_factory=list)  # a table's columns left out, with why

    def subset(self, index: np.ndarray) -> Dataset:
        y = None if self.y is None else self.y[index]
        x = None if self.x is None else self.x[index]
        frame = None if self.frame is None else self.frame.iloc[index].reset_index(drop=True)
        return replace(self, x=x, y=y, frame=frame, warnings=[])

    def __len__(self) -> int:
        return len(self.x) if self.x is not None else len(self.frame)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def encode_labels(raw: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    """Label strings -> (indices, vocabulary); integer labels sort numerically. More than
    MAX_LABELS distinct labels (`where` names them) is a DataError, before anything is allocated."""
    unique = set(raw)
    if len(unique) > MAX_LABELS:
        raise DataError(
            f"{where} holds {len(unique):,} distinct labels; a model takes at most {MAX_LABELS:,} "
            f"(each is a one-hot input and a label to ask /generate for): group the rare ones, "
            f"or leave the label out and train on the other columns"
        )
    try:
        vocabulary = [str(v) for v in sorted({int(v) for v in unique})]
        canonical = {v: str(int(v)) for v in unique}
    except ValueError:
        vocabulary = sorted(unique)
        canonical = {v: v for v in unique}
    position = {name: i for i, name in enumerate(vocabulary)}
    return np.array([position[canonical[v]] for v in raw], dtype=np.int64), vocabulary
