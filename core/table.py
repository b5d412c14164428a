"""A manifest's column schema as arrays: `Table` composes one codec per column (core/codecs.py) and
handles what is the same for every kind: the layout of encoded rows, gaps, and the numeric block's map
to the model's scale, vectorised over columns.

A table (the manifest's `columns`) is fed to the graphs as encoded rows:

    [ numeric columns on the model's scale | one-hot block per categorical column | missing indicators ]

and the decoder answers the head's outputs for the numeric block (core/heads.py) plus, for a table
with categories or gaps, `discrete_probs`: each categorical column's softmax over its categories,
then P(missing) per column with gaps.

Training encodes its splits with `Table.encode`; serving parses request rows with
`Table.parse_rows`, and turns decoder outputs back into values with the head's draw or central
value (numeric block), `Table.choose` (categories and gaps) and `Table.values`. The losses that
match these encodings (training/model.py) are: the head's likelihood for the numeric block,
masked where a value is missing; cross-entropy per categorical column; a Bernoulli term per
missing indicator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.codecs import CODECS, Cell, CellError, Codec, Identifier, category_key, codec_of, short
from core.manifest import Column, DroppedColumn, Manifest, encoded_width, model_columns


class RowError(ValueError):
    """A request row that does not fit the model's columns; `details` locate it."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


# ---- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelColumn:
    """A conditional model's label as a column of its answered rows: its name, its place among the
    table's columns (where the training table had it), and a categorical codec over the labels (as
    integers where every label is one, as the data most likely had them)."""

    codec: Codec
    position: int

    @classmethod
    def of(cls, manifest: Manifest) -> LabelColumn | None:
        labels = manifest.labels
        if labels is None or manifest.columns is None:
            return None
        typed: list[bool | int | str] = [int(v) for v in labels] if all(_decimal(v) for v in labels) else list(labels)
        name = manifest.training.label_column or "label"
        column = Column(name=name, kind="categorical", categories=typed)
        position = manifest.label_position if manifest.label_position is not None else 0
        return cls(codec_of(column), min(position, len(manifest.columns)))


Slot = int | str | Codec  # an answered column: the model's column i, "label", or a regenerated ID's codec


def original_order(n_columns: int, label_position: int | None, dropped: Sequence[DroppedColumn]) -> list[Any] | None:
    """The training table's columns in their order: the model's column i as i, the label of a conditional
    model as "label", a column left out as its DroppedColumn; None where a manifest made before columns left
    out had a `position` does not say."""
    labelled = label_position is not None
    width = n_columns + len(dropped) + labelled
    placed: dict[int, Any] = {d.position: d for d in dropped}  # type: ignore[misc]
    if len(placed) != len(dropped) or not all(isinstance(p, int) and p < width for p in placed):
        return None  # a position missing (an older manifest), repeated or past the table's end
    kept: list[Any] = list(range(n_columns))
    if labelled:
        kept.insert(min(label_position, n_columns), "label")  # type: ignore[arg-type]
    rest = iter(kept)
    return [placed[i] if i in placed else next(rest, None) for i in range(width)]


def _decimal(text: str) -> bool:
    """An integer spelled as Python spells it ("12", "-3"; not "012" or "+1")."""
    try:
        return str(int(text)) == text
    except ValueError:
        return False


class Table:
    """A manifest's column schema as arrays: encoding, parsing and decoding of rows."""

    def __init__(
        self,
        columns: list[Column],
        gap_patterns: list[list[str]] | None = None,
        label: LabelColumn | None = None,
        ignored: frozenset[str] = frozenset(),
        order: list[Any] | None = None,
    ) -> None:
        """`order`: the training table's columns (`original_order`), which places the label and the
        regenerated IDs among answered columns; None: the label at `label.position`, no IDs."""
        if order is None:
            order = original_order(len(columns), label and label.position, [])
        self.columns = columns
        self.names = [c.name for c in columns]
        self.label = label
        self.ignored = ignored  # columns request rows may hold and the model does not take (the label, an ID)
        self._slots = {labelled: self._answered(order, labelled) for labelled in (False, True)}
        self._by_name = {c.name: c for c in columns}
        parts = model_columns(columns)  # what the model sees: a date's parts in its place
        self.numeric = [c for c in parts if c.numeric]
        self.discrete = [c for c in parts if c.discrete]
        self.gapped = [c for c in parts if c.gaps]
        self.n_numeric, self.n_onehot, self.n_missing = encoded_width(columns)
        self.width = self.n_numeric + self.n_onehot + self.n_missing
        sizes = [len(c.categories or []) for c in self.discrete]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.codecs = [codec_of(c) for c in columns]
        # each column's codec and its place in its block: the numeric block, the one-hot blocks, or none;
        # a column of parts has the places of its parts (`_part_places`), and its gaps are its first part's
        position = {c.name: i for i, c in enumerate(self.numeric)} | {c.name: i for i, c in enumerate(self.discrete)}
        self._places = [(codec, position.get(c.name, -1)) for codec, c in zip(self.codecs, columns, strict=True)]
        self._column_index = {c.name: k for k, c in enumerate(columns)}
        self._part_places = {
            c.name: [("numeric" if p.numeric else "onehot", position[p.name]) for p in c.parts or []] for c in columns
        }
        gap_index = {c.name: k for k, c in enumerate(self.gapped)}
        self._gap_of = {c.name: gap_index.get((c.parts or [c])[0].name) for c in columns}
        self.category_index = [codec_of(c).index for c in self.discrete]  # type: ignore[attr-defined]
        self._gap_source = [(c.numeric, position[c.name]) for c in self.gapped]
        gapped = [c.name for c in self.gapped]
        self._gap_patterns = (
            None
            if gap_patterns is None
            else np.array([[name in p for name in gapped] for p in gap_patterns], dtype=bool).reshape(-1, len(gapped))
        )
        self._gap_bits = None if self._gap_patterns is None else self._gap_patterns.astype(np.int32)
        # numeric encodings, vectorised by kind
        self._standard = np.array([i for i, c in enumerate(self.numeric) if c.encoding == "standard"], dtype=np.int64)
        self._shift = np.array([self.numeric[i].shift for i in self._standard], dtype=np.float64)
        self._scale = np.array([self.numeric[i].scale for i in self._standard], dtype=np.float64)
        self._quantile = [(i, QuantileMap.of(c)) for i, c in enumerate(self.numeric) if c.encoding == "quantile"]
        self._min, self._max = np.array([c.output_bounds for c in self.numeric], dtype=np.float64).reshape(-1, 2).T
        self._integer = np.array([CODECS[c.kind].rounds for c in self.numeric], dtype=bool)  # type: ignore[attr-defined]
        self._decimals = [(i, c.decimals) for i, c in enumerate(self.numeric) if c.decimals is not None]

    @classmethod
    def of(cls, manifest: Manifest) -> Table | None:
        """The manifest's table, or None for an all-numeric model."""
        if manifest.columns is None:
            return None
        dropped = manifest.dropped_columns or []
        ignored = {c.name for c in dropped}
        if manifest.training.label_column is not None:
            ignored.add(manifest.training.label_column)
        label = LabelColumn.of(manifest)
        order = original_order(len(manifest.columns), label and label.position, dropped)
        return cls(manifest.columns, manifest.gap_patterns, label, frozenset(ignored), order)

    def _answered(self, order: list[Any], labelled: bool) -> list[Slot]:
        """The columns of generated rows in their order: the model's, the label's where `labelled` (and the
        model has one), and each ID column training was asked to regenerate."""
        labelled = labelled and self.label is not None
        return [
            Identifier(item) if isinstance(item, DroppedColumn) else item
            for item in order
            if isinstance(item, int)
            or (item == "label" and labelled)
            or (isinstance(item, DroppedColumn) and item.identifier is not None)
        ]

    def arrange(self, labelled: bool, columns: Sequence[Any], label: Any, ids: Any = None) -> list[Any]:
        """Per answered column (`output_names`) its item: columns[i] for the model's column i, `label` for
        the label, ids(codec) for a regenerated ID (left out where `ids` is None)."""
        return [
            columns[s] if isinstance(s, int) else label if isinstance(s, str) else ids(s)
            for s in self._slots[labelled]
            if ids is not None or not isinstance(s, Codec)
        ]

    def output_names(self, labelled: bool) -> list[str]:
        """The columns of generated rows: the model's, the label's in its place when `labelled`, the IDs
        training was asked to regenerate in theirs."""
        return [c.column.name for c in self.output_codecs(labelled)]

    def output_codecs(self, labelled: bool) -> list[Codec]:
        return self.arrange(labelled, self.codecs, self.label and self.label.codec, lambda codec: codec)

    def numeric_gap(self) -> tuple[int, ...]:
        """Per numeric column the index of its missing indicator, or -1 (the model's loss masks by it)."""
        gap_of = {c.name: k for k, c in enumerate(self.gapped)}
        for column in self.columns:  # a date's parts are missing when its first part is
            for part in column.parts or []:
                gap_of[part.name] = gap_of.get(column.parts[0].name, -1)  # type: ignore[index]
        return tuple(gap_of.get(c.name, -1) for c in self.numeric)

    def encoded_names(self) -> list[str]:
        """Names of the encoded features, in the graphs' order (the manifest's feature_names)."""
        onehot = [f"{c.name}={category_key(v)}" for c in self.discrete for v in c.categories or []]
        return [c.name for c in self.numeric] + onehot + [f"{c.name}:missing" for c in self.gapped]

    # ---- values <-> the model's scale ----

    def to_scale(self, values: np.ndarray) -> np.ndarray:
        """Numeric columns' values [rows, n_numeric] (NaN where missing) -> the model's scale (0 where missing)."""
        z = np.zeros(values.shape, dtype=np.float64)
        if len(self._standard):
            z[:, self._standard] = (values[:, self._standard] - self._shift) / self._scale
        for i, mapping in self._quantile:
            z[:, i] = mapping.encode(values[:, i])
        z[np.isnan(values)] = 0.0  # the centre of the scale; the missing indicator says it is a gap
        return z

    def from_scale(self, z: np.ndarray) -> np.ndarray:
        """The model's scale -> values within each column's output bounds (Column.output_bounds), integers rounded."""
        values = np.empty(z.shape, dtype=np.float64)
        if len(self._standard):
            values[:, self._standard] = z[:, self._standard] * self._scale + self._shift
        for i, mapping in self._quantile:
            values[:, i] = np.interp(z[:, i], mapping.scores, mapping.knots)
        values = np.clip(values, self._min, self._max)
        values[:, self._integer] = np.rint(values[:, self._integer])
        for i, decimals in self._decimals:
            values[:, i] = np.round(values[:, i], decimals)
        return values

    # ---- encoding ----

    def encode(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Encoded float32 rows [rows, width] from numeric values [rows, n_numeric] (NaN: missing)
        and category indices [rows, n_discrete] (-1: missing)."""
        rows = len(numeric)
        out = np.zeros((rows, self.width), dtype=np.float32)
        out[:, : self.n_numeric] = self.to_scale(numeric)
        if self.discrete:
            r, j = np.nonzero(codes >= 0)
            out[r, self.n_numeric + self.offsets[j] + codes[r, j]] = 1.0
        base = self.n_numeric + self.n_onehot
        for k, (is_numeric, i) in enumerate(self._gap_source):
            out[:, base + k] = np.isnan(numeric[:, i]) if is_numeric else codes[:, i] < 0
        return out

    def parse_rows(self, rows: Sequence[Sequence[Cell] | dict[str, Cell]]) -> tuple[np.ndarray, np.ndarray]:
        """Request rows (lists in column order, or objects keyed by column name) -> (numeric, codes)
        for `encode`. Raises RowError naming the row, the column and what the column allows."""
        numeric = np.full((len(rows), self.n_numeric), np.nan, dtype=np.float64)
        codes = np.full((len(rows), len(self.discrete)), -1, dtype=np.int64)
        n_columns = len(self.columns)
        for r, row in enumerate(rows):
            if isinstance(row, dict):
                unknown = [k for k in row if k not in self._by_name and k not in self.ignored]
                if unknown:
                    raise RowError(
                        f"row {r}: unknown column {unknown[0]!r}; the model's columns are {self.names}",
                        {"row": r, "column": unknown[0], "columns": self.names},
                    )
                absent = [c.name for c in self.columns if c.name not in row and c.kind != "constant"]
                if absent:
                    raise RowError(
                        f"row {r}: column {absent[0]!r} is absent; give every column (null for a missing value "
                        "where the model allows it)",
                        {"row": r, "column": absent[0], "columns": self.names},
                    )
                cells: Sequence[Cell] = [row.get(name) for name in self.names]
            else:
                if not isinstance(row, list):
                    raise RowError(
                        f"row {r} is {short(row)}; a row is a list of values in the order {self.names}, or an object "
                        "keyed by column name",
                        {"row": r, "columns": self.names},
                    )
                if len(row) != n_columns:
                    raise RowError(
                        f"row {r} has {len(row)} values; the model takes {n_columns}, in the order {self.names}",
                        {"row": r, "expected": n_columns, "got": len(row), "columns": self.names},
                    )
                cells = row
            for (codec, i), value in zip(self._places, cells, strict=True):
                column = codec.column
                if value is None:  # a gap: the same for every kind
                    if codec.block != "none" and not column.gaps:
                        allowed = codec.allowed()
                        raise RowError(
                            f"row {r}, column {column.name!r} is null, but the model saw no missing values in it; "
                            f"give {allowed}",
                            {"row": r, "column": column.name, "allowed": allowed},
                        )
                    continue
                try:
                    parsed = codec.parse(value)
                except CellError as e:
                    where = {"row": r, "column": column.name}
                    raise RowError(f"row {r}, column {column.name!r}{e}", where | e.details) from None
                if codec.block == "numeric":
                    numeric[r, i] = parsed
                elif codec.block == "onehot":
                    codes[r, i] = parsed
                elif codec.block == "parts":
                    for (block, j), part in zip(self._part_places[column.name], parsed, strict=True):  # type: ignore[arg-type]
                        if block == "numeric":
                            numeric[r, j] = part
                        else:
                            codes[r, j] = part
        return numeric, codes

    # ---- decoding ----

    def choose(
        self, probs: np.ndarray | None, rows: int, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(category indices [rows, n_discrete], missing [rows, n_missing]) from `discrete_probs`:
        drawn when `rng` is given, else the most likely category and missing where P > 0.5."""
        codes = np.zeros((rows, len(self.discrete)), dtype=np.int64)
        missing = np.zeros((rows, self.n_missing), dtype=bool)
        if probs is None:
            return codes, missing
        for j in range(len(self.discrete)):
            p = probs[:, self.offsets[j] : self.offsets[j + 1]]
            if rng is None:
                codes[:, j] = p.argmax(axis=1)
            else:  # inverse CDF of the categorical: the first category whose cumulative P exceeds u
                u = rng.random((rows, 1)) * p.sum(axis=1, keepdims=True)
                codes[:, j] = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)
        p_missing = probs[:, self.n_onehot :]
        missing[:] = (rng.random(p_missing.shape) < p_missing) if rng is not None else p_missing > 0.5
        return codes, missing

    def common_gaps(self, missing: np.ndarray) -> np.ndarray:
        """Generated rows' gaps [rows, n_missing] with each combination the manifest's `gap_patterns`
        lacks (fewer than MIN_ROWS_PER_GAP_PATTERN training rows had it) moved to the nearest one it
        holds: the fewest gaps filled or made, the more common pattern among equals. A filled gap
        takes the value the decoder gave."""
        patterns, p = self._gap_patterns, self._gap_bits
        if patterns is None or p is None or not missing.size:
            return missing
        m = missing.astype(np.int32)
        changed = m @ (1 - p).T + (1 - m) @ p.T  # [rows, patterns]: indicators that differ
        return patterns[changed.argmin(axis=1)]  # a pattern it holds differs from itself in none

    def values(
        self,
        numeric: np.ndarray,
        codes: np.ndarray,
        missing: np.ndarray,
        labels: np.ndarray | None = None,
        first_row: int | None = None,
    ) -> list[list[Cell]]:
        """Per column (schema order) the Python values of every row: numbers (integers as int),
        categories as in the data, dates as the data wrote them, None where missing. `numeric` is in
        original units. With `labels` (label indices), the label column in its place; with `first_row`
        (the rows' place in their answer), the regenerated IDs in theirs (`output_names`)."""

        def ids(codec: Codec) -> list[Cell]:
            return codec.cells(np.arange(first_row, first_row + len(numeric)))

        result: list[list[Cell]] = []
        for codec, values in zip(self.codecs, self.column_values(numeric, codes), strict=True):
            cells = codec.cells(values)
            k = self._gap_of[codec.column.name]
            if k is not None:
                for r in np.flatnonzero(missing[:, k]).tolist():
                    cells[r] = None
            result.append(cells)
        label = None if labels is None or self.label is None else self.label.codec.cells(labels)
        return self.arrange(label is not None, result, label, None if first_row is None else ids)

    def gap_mask(self, name: str, missing: np.ndarray | None) -> np.ndarray | None:
        """Where column `name` is missing in rows with these gaps (None: nowhere)."""
        k = self._gap_of.get(name)
        return None if k is None or missing is None else missing[:, k]

    def column_array(
        self, name: str, numeric: np.ndarray, codes: np.ndarray | None, missing: np.ndarray | None
    ) -> np.ndarray:
        """Column `name`'s values as floats, NaN where missing: a number, a category's index, a date's or
        time's seconds (what core/rules.py compares)."""
        codec, i = self._places[self._column_index[name]]
        if codec.block == "parts":
            blocks = {"numeric": numeric, "onehot": codes}
            parts = [blocks[b][:, j] for b, j in self._part_places[name]]  # type: ignore[index]
            values = codec.compose(np.column_stack(parts).astype(np.float64))  # type: ignore[attr-defined]
        elif codec.block == "numeric":
            values = numeric[:, i].astype(np.float64)
        elif codec.block == "onehot" and codes is not None:
            values = codes[:, i].astype(np.float64)
        else:
            values = np.zeros(len(numeric))
        gap = self.gap_mask(name, missing)
        return values if gap is None else np.where(gap, np.nan, values)

    def set_column(
        self, name: str, numeric: np.ndarray, codes: np.ndarray | None, values: np.ndarray, rows: np.ndarray
    ) -> None:
        """Write `values` (numbers in original units, or category indices) into a numeric or one-hot column
        at `rows`, in place."""
        codec, i = self._places[self._column_index[name]]
        if codec.block == "numeric":
            numeric[rows, i] = values
        elif codec.block == "onehot" and codes is not None:
            codes[rows, i] = values
        else:
            raise ValueError(f"column {name!r} is a {codec.column.kind} column: its values are not set")

    def column_values(self, numeric: np.ndarray, codes: np.ndarray | None) -> list[np.ndarray]:
        """Per column (schema order) what its codec decodes: a numeric column's values, a one-hot column's
        category indices, a column of parts its parts' values [rows, parts], a placeholder per row for a
        column not modelled."""
        blocks = {"numeric": numeric.T, "onehot": None if codes is None else codes.T, "none": None}
        values = []
        for codec, i in self._places:
            if codec.block == "parts":
                places = self._part_places[codec.column.name]
                values.append(np.column_stack([blocks[b][j] for b, j in places]).astype(np.float64))  # type: ignore[index]
            else:
                block = blocks[codec.block]
                values.append(np.zeros(len(numeric)) if block is None else block[i])
        return values

    def errors(
        self, encoded: np.ndarray, codes: np.ndarray, z: np.ndarray, recon_codes: np.ndarray, recon_missing: np.ndarray
    ) -> np.ndarray:
        """Per row and column (schema order) a reconstruction error a person can read: numeric
        columns the squared difference on the model's scale, categorical ones 0 (same category) or
        1; 1 where a value is missing on one side only, 0 where on both; constant columns 0."""
        out = np.zeros((len(encoded), len(self.columns)), dtype=np.float64)
        input_missing = encoded[:, self.n_numeric + self.n_onehot :] > 0.5

        def part_error(block: str, i: int) -> np.ndarray:
            if block == "numeric":
                return (z[:, i].astype(np.float64) - encoded[:, i]) ** 2
            return (recon_codes[:, i] != codes[:, i]).astype(np.float64)

        for ci, (codec, i) in enumerate(self._places):
            if codec.block in ("numeric", "onehot"):
                error = part_error(codec.block, i)
            elif codec.block == "parts":  # the mean of its parts' errors
                error = np.mean([part_error(b, j) for b, j in self._part_places[codec.column.name]], axis=0)
            else:
                continue
            k = self._gap_of[codec.column.name]
            if k is not None:
                given, predicted = input_missing[:, k], recon_missing[:, k]
                error = np.where(given & predicted, 0.0, np.where(given ^ predicted, 1.0, error))
            out[:, ci] = error
        return out

    def probabilities(self, probs: np.ndarray | None, rows: int) -> list[dict[str, dict[str, float]]]:
        """Per row, each categorical column's probability of each category (keys as `category_key`
        spells them), and of a gap under "null" where the column has gaps; they sum to 1."""
        result: list[dict[str, dict[str, float]]] = [{} for _ in range(rows)]
        if probs is None:
            return result
        for j, column in enumerate(self.discrete):
            if column.name not in self._by_name:  # a part (a date's weekday), not a column of the table
                continue
            p = probs[:, self.offsets[j] : self.offsets[j + 1]].astype(np.float64)
            keys = [category_key(v) for v in column.categories or []]
            k = self._gap_of[column.name]
            p_gap = probs[:, self.n_onehot + k].astype(np.float64) if k is not None else np.zeros(rows)
            p = p * (1 - p_gap)[:, None]
            for r in range(rows):
                cell = dict(zip(keys, p[r].tolist(), strict=True))
                if k is not None:
                    cell["null"] = float(p_gap[r])
                result[r][column.name] = cell
        return result


def rows_of(columns: list[list[Cell]]) -> list[list[Cell]]:
    """Per-column lists -> per-row lists."""
    return [list(row) for row in zip(*columns, strict=True)]


IQR_SCORES = (-0.6744897501960817, 0.6744897501960817)  # normal scores of the quartiles


@dataclass(frozen=True)
class QuantileMap:
    """A column's quantile encoding: value -> normal score through the training split's quantiles.

    Decoding is `np.interp(z, scores, knots)`: piecewise linear, a run of tied knots (a
    zero-inflated column's 0) decodes to exactly that value, and nothing decodes outside
    [knots[0], knots[-1]]. Encoding is its inverse: a tied value sits at the middle probability of
    its run, a value between two knots on the segment that joins them (so that it
    decodes back to itself), and a value outside the training range continues the outermost
    tenth of the map in a straight line, never flatter than the body's (an outlier stays an outlier
    on the model's scale)."""

    knots: np.ndarray  # as stored: non-decreasing values at increasing scores
    scores: np.ndarray
    distinct: np.ndarray  # the distinct knots, and per distinct knot its run's first, middle, last score
    first: np.ndarray
    middle: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, column: Column) -> QuantileMap:
        knots = np.asarray(column.knots, dtype=np.float64)
        scores = np.asarray(column.scores, dtype=np.float64)
        distinct, start, count = np.unique(knots, return_index=True, return_counts=True)
        stop = start + count - 1
        # knots sit at evenly spaced probabilities: the middle knot of a run is its middle probability
        middle = np.interp((start + stop) / 2, np.arange(len(scores)), scores)
        return cls(knots, scores, distinct, scores[start], middle, scores[stop])

    def encode(self, x: np.ndarray) -> np.ndarray:
        d, n = self.distinct, len(self.distinct)
        if n == 1:
            return np.where(np.isnan(x), np.nan, self.middle[0] + (x - d[0]))
        i = np.clip(np.searchsorted(d, x, side="right") - 1, 0, n - 2)  # segment [d[i], d[i+1]]
        t = (x - d[i]) / (d[i + 1] - d[i])
        z = self.last[i] + t * (self.first[i + 1] - self.last[i])
        z = np.where(x == d[i], self.middle[i], np.where(x == d[i + 1], self.middle[i + 1], z))
        tenth = max(1, n // 10)
        low = (self.middle[tenth] - self.middle[0]) / (d[tenth] - d[0])
        high = (self.middle[-1] - self.middle[-1 - tenth]) / (d[-1] - d[-1 - tenth])
        # never flatter than the body: an IQR beyond the range moves at least the 1.349 normal scores a
        # Gaussian's IQR spans (one extreme training value, such as diamonds' `table` at 95 where the rest
        # end near 70, would otherwise flatten the outer tenth until 5 IQR beyond it encoded as the maximum)
        iqr = float(np.diff(np.interp(IQR_SCORES, self.scores, self.knots))[0])
        if iqr > 0:
            low, high = max(low, 2 * IQR_SCORES[1] / iqr), max(high, 2 * IQR_SCORES[1] / iqr)
        z = np.where(x < d[0], self.middle[0] + (x - d[0]) * low, z)
        return np.where(x > d[-1], self.middle[-1] + (x - d[-1]) * high, z)
