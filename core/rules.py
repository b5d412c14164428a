"""Rules every generated row holds (issue 30): relations between columns that every training row holds
(found at training, training/rules.py) or that the user declared, stored as the manifest's `rules`.

What the model's rows can be made to hold is made so, after decoding (by construction):
- `fixed` (B fixed by A: a city always in one state): B is set from A's value, as the training rows pair
  them; where B is the label of a conditional model (the label a row was asked for stands), the row is
  checked instead;
- `equal` (B is A) and `sum` (A + B = C): B, or the sum's column with the most decimals, is computed from
  the others (C = A + B, or B = C - A), written at the data's decimals; rules are made in an order where
  none reads a column a later one writes.
What it cannot be made to hold is checked, and a row that breaks it is not answered (`Model.block` draws
more rows in its place): `order` (A <= B, A < B), a `fixed` rule onto the label, two dates `equal`. Every
rule is checked after the making too: where two rules would write one column, or write in a cycle, the later
is checked only. A rule holds where its columns are present: a gap breaks none.

`RowRules.hold` does both on a block of decoded rows (in place) and returns which rows hold; a request's
`Conditions` say which rows meet them. `Model.block` is the one place both act, for /generate,
/generate/stream and `python -m training sample` alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from core.codecs import CODECS, DAY, CellError, short, text_seconds
from core.errors import InvalidInput
from core.manifest import Manifest, Rule
from core.table import Table, category_key


@dataclass
class Values:
    """A block's columns as floats for the rules (NaN: missing), read once per column and kept in step as
    the rules write columns."""

    table: Table
    numeric: np.ndarray
    codes: np.ndarray | None
    missing: np.ndarray | None
    labels: np.ndarray | None
    label_column: str | None

    def __post_init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        if name == self.label_column and self.labels is not None:
            return self.labels.astype(np.float64)
        if name not in self._cache:
            self._cache[name] = self.table.column_array(name, self.numeric, self.codes, self.missing)
        return self._cache[name]

    def set(self, name: str, values: np.ndarray, rows: np.ndarray) -> None:
        self.table.set_column(name, self.numeric, self.codes, values[rows], rows)
        self._cache.pop(name, None)


Check = Callable[[Values], np.ndarray]  # which rows hold a rule
Make = Callable[[Values], None]  # writes a rule's column so that the rows hold it


class RowRules:
    """A manifest's rules, resolved against its table once (category values as indices): each rule that can
    be made has its column written (in an order where no rule reads a column a later one writes), then every
    rule is checked, the made ones too (a safety net: two rules writing one column, or a cycle, leave a rule
    checked only)."""

    def __init__(self, manifest: Manifest, table: Table) -> None:
        self.rules = list(manifest.rules or [])
        self.table = table
        self.label_column = manifest.training.label_column if manifest.conditional else None
        self._labels = {category_key(v): i for i, v in enumerate(manifest.labels or [])}
        self.drawn = self.redrawn = 0  # rows checked, and those that broke a rule (drawn again): the rejection rate
        self.checks: list[Check] = [self._check(r) for r in self.rules]
        self.makes: list[Make] = self._plan()

    @classmethod
    def of(cls, manifest: Manifest, table: Table | None) -> RowRules | None:
        return cls(manifest, table) if manifest.rules and table is not None else None

    def hold(self, values: Values) -> np.ndarray:
        """Make the rows hold what can be made (in place), and say which rows hold every rule."""
        for make in self.makes:
            make(values)
        keep = np.ones(len(values.numeric), dtype=bool)
        for check in self.checks:
            keep &= check(values)
        self.drawn += len(keep)
        self.redrawn += int(len(keep) - keep.sum())
        return keep

    @property
    def redrawn_share(self) -> float:
        """The share of the rows drawn so far that broke a rule and were drawn again."""
        return self.redrawn / self.drawn if self.drawn else 0.0

    # ---- what each rule writes, and the order to write in ----

    def _writes(self, rule: Rule) -> str | None:
        """The column a rule is made by writing (None: it is only checked): a fixed or equal rule's second
        column, a sum's column with the most decimals (its value then exact: C = A + B, or B = C - A)."""
        a, b, *rest = rule.columns
        if rule.kind == "order" or b == self.label_column:
            return None
        if rule.kind in ("fixed", "equal"):
            return None if CODECS[self.table._by_name[b].kind].block not in ("numeric", "onehot") else b

        def places(name: str) -> float:
            column = self.table._by_name[name]
            return 0 if column.kind == "integer" else np.inf if column.decimals is None else column.decimals

        return max([rest[0], a, b], key=places)  # the total first among equals

    def _plan(self) -> list[Make]:
        """The rules that can be made, in an order where a rule writes its column before any rule reads it; a
        column two rules would write, or a cycle, leaves the later rules checked only."""
        pending = [(r, w) for r in self.rules if (w := self._writes(r)) is not None]
        written: set[str] = set()
        makes: list[Make] = []
        while pending:
            later = {w for _, w in pending}
            ready = next(((r, w) for r, w in pending if not (set(r.columns) - {w}) & later - {w}), None)
            if ready is None:
                break  # a cycle: what is left is checked only
            pending.remove(ready)
            rule, column = ready
            if column in written:
                continue
            written.add(column)
            makes.append(self._make(rule, column))
        return makes

    # ---- resolved values ----

    def _index(self, name: str) -> Callable[[object], float]:
        """A value of column `name` as the data wrote it -> the float `Values` holds for it."""
        if name == self.label_column:
            return lambda v: float(self._labels.get(category_key(v), np.nan))
        column = self.table._by_name[name]
        if column.categories is not None:
            index = {category_key(c): i for i, c in enumerate(column.categories)}
            return lambda v: float(index.get(category_key(v), np.nan))
        return lambda v: float(v)  # type: ignore[arg-type]

    def _rounding(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        column = self.table._by_name[name]
        if column.kind == "integer":
            return np.round
        decimals = column.decimals
        return (lambda x: np.round(x, decimals)) if decimals is not None else (lambda x: x)

    def _targets(self, rule: Rule) -> Callable[[Values], np.ndarray]:
        """A fixed rule: per row the value its first column fixes for its second (NaN: none, or a gap)."""
        a, b = rule.columns
        key, value = self._index(a), self._index(b)
        size = len(self._labels) if a == self.label_column else len(self.table._by_name[a].categories or [])
        target = np.full(size + 1, np.nan)  # [size]: missing A, or a value the pairs do not name
        for x, y in rule.pairs or []:
            i = key(x)
            if np.isfinite(i):
                target[int(i)] = value(y)

        def targets(v: Values) -> np.ndarray:
            source = v.get(a)
            return target[np.where(np.isnan(source), size, source).astype(np.int64)]

        return targets

    def _check(self, rule: Rule) -> Check:
        a, b, *rest = rule.columns
        if rule.kind == "order":
            strict = rule.strict

            def order(v: Values) -> np.ndarray:
                with np.errstate(invalid="ignore"):
                    broken = v.get(a) >= v.get(b) if strict else v.get(a) > v.get(b)
                return ~broken  # NaN compares False: a gap breaks nothing

            return order
        if rule.kind == "sum":
            total = rest[0]

            def summed(v: Values) -> np.ndarray:
                x, y, t = v.get(a), v.get(b), v.get(total)
                with np.errstate(invalid="ignore"):
                    return ~(np.abs(x + y - t) > 1e-6 * np.maximum(1.0, np.abs(t)))

            return summed
        targets = self._targets(rule) if rule.kind == "fixed" else (lambda v: v.get(a))

        def same(v: Values) -> np.ndarray:
            wanted, y = targets(v), v.get(b)
            with np.errstate(invalid="ignore"):
                return ~(np.abs(wanted - y) > 1e-9 * np.maximum(1.0, np.abs(wanted)))

        return same

    def _make(self, rule: Rule, column: str) -> Make:
        a, b, *rest = rule.columns
        rounding = self._rounding(column)
        if rule.kind == "sum":
            total = rest[0]

            def made(v: Values) -> np.ndarray:
                if column == total:
                    return v.get(a) + v.get(b)
                return v.get(total) - v.get(b if column == a else a)

        else:
            made = self._targets(rule) if rule.kind == "fixed" else (lambda v: v.get(a))

        def make(v: Values) -> None:
            value = rounding(made(v))
            v.set(column, value, np.flatnonzero(np.isfinite(value) & np.isfinite(v.get(column))))

        return make


# ---- conditions -----------------------------------------------------------------------------------------
# A request's `conditions` (issue 30): per column a value (a category, a boolean, an integer, a number at the
# data's decimals, a date or time as the column writes them, or None for a gap) or a range {"min", "max"}
# (inclusive, either side optional) of a numeric, date or time column. Rows are drawn from the model and those
# outside a condition are not answered: the rows answered are the model's rows under the conditions.


class Conditions:
    """A request's conditions, checked against the model's columns once (InvalidInput naming the condition
    that cannot be met), then applied to blocks of decoded rows (`hold`)."""

    def __init__(self, manifest: Manifest, table: Table, given: dict[str, Any]) -> None:
        self.label: int | None = None  # a condition on a conditional model's label: the label asked for
        self._checks: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
        label_column = manifest.training.label_column if manifest.conditional else None
        dropped = {d.name: d.reason for d in manifest.dropped_columns or []}
        for name, wanted in given.items():
            if name == label_column:
                self.label = self._label(name, wanted, manifest.labels or [])
            elif name in table._by_name:
                self._checks.append((name, self._check(table._by_name[name], wanted)))
            elif name in dropped:
                raise InvalidInput(
                    f"conditions: column {name!r} was left out at training ({dropped[name]}): no condition on it",
                    details={"condition": name},
                )
            else:
                known = [*table.names, *([label_column] if label_column else [])]
                raise InvalidInput(
                    f"conditions: unknown column {name!r}; the model's columns are {known}",
                    details={"condition": name, "columns": known},
                )

    def __bool__(self) -> bool:
        return bool(self._checks)

    def text(self) -> str:
        return ", ".join(name for name, _ in self._checks)

    def hold(self, values: Values) -> np.ndarray:
        keep = np.ones(len(values.numeric), dtype=bool)
        for name, check in self._checks:
            keep &= check(values.get(name))
        return keep

    @staticmethod
    def _label(name: str, wanted: Any, labels: list[str]) -> int:
        index = {category_key(v): i for i, v in enumerate(labels)}
        if isinstance(wanted, dict) or wanted is None or category_key(wanted) not in index:
            raise InvalidInput(
                f"conditions: column {name!r} is the label; it takes one of {labels}, not {short(wanted)}",
                details={"condition": name, "valid_labels": labels},
            )
        return index[category_key(wanted)]

    @staticmethod
    def _check(column: Any, wanted: Any) -> Callable[[np.ndarray], np.ndarray]:
        name, codec = column.name, CODECS[column.kind](column)

        def refuse(why: str) -> InvalidInput:
            return InvalidInput(f"conditions: column {name!r}: {why}", details={"condition": name})

        if wanted is None:
            if not column.gaps:
                raise refuse("null asks for a gap, but the column has none in the training rows")
            return np.isnan
        timed = column.kind in ("date", "datetime", "time")
        if isinstance(wanted, dict):
            if not (column.numeric or timed):
                raise refuse(f"a range takes a numeric, date or time column; this {column.kind} column takes a value")
            unknown = set(wanted) - {"min", "max"}
            if unknown or not wanted:
                raise refuse(f"a range is {{'min': a, 'max': b}} (either may be left out), not {short(wanted)}")
            low, high = (
                _bound(codec, column, wanted.get("min"), refuse),
                _bound(codec, column, wanted.get("max"), refuse),
            )
            if low is not None and high is not None and low > high:
                raise refuse(f"min {short(wanted['min'])} is above max {short(wanted['max'])}")
            if column.kind == "datetime" and high is not None and _date_only(wanted["max"]):
                high += DAY - 1e-6  # a bare date as the end of a range of timestamps: that whole day
            first, last = column.output_bounds if column.numeric else (column.min, column.max)
            if (low is not None and low > last) or (high is not None and high < first):
                raise refuse(f"the range {short(wanted)} is outside {_training_range(codec, column)}")
            low = -np.inf if low is None else low
            high = np.inf if high is None else high
            if column.kind == "integer" and np.ceil(low) > np.floor(high):
                raise refuse(f"the range {short(wanted)} holds no whole number")
            return lambda v: (v >= low) & (v <= high)
        if timed:
            if column.kind == "time" or (column.kind == "datetime" and not _date_only(wanted)):
                raise refuse(
                    f"a {column.kind} column takes a range {{'min': a, 'max': b}} (or, of timestamps, a day as "
                    "YYYY-MM-DD): an exact instant is not drawn"
                )
            at = _bound(codec, column, wanted, refuse)
            at = np.floor(at / DAY) * DAY  # the day, whatever time of it was written
            if not column.min - DAY < at <= column.max:
                raise refuse(f"{short(wanted)} is outside {_training_range(codec, column)}")
            return lambda v: (v >= at) & (v < at + DAY)
        if column.kind == "continuous" and column.decimals is None:
            raise refuse("a continuous column takes a range {'min': a, 'max': b}: an exact value of it is not drawn")
        try:
            parsed = codec.parse(wanted)
        except CellError as e:
            raise refuse(f"{str(e).lstrip(': ')}") from None
        if column.numeric:
            first, last = column.output_bounds
            if not first <= parsed <= last:
                raise refuse(f"{short(wanted)} is outside {_training_range(codec, column)}")
            if column.kind == "integer" and parsed != round(parsed):
                raise refuse(f"{short(wanted)} is not a whole number")
            if column.decimals is not None and abs(round(parsed, column.decimals) - parsed) > 1e-9 * max(
                1, abs(parsed)
            ):
                raise refuse(f"{short(wanted)} has more decimals than the column's values ({column.decimals})")
            return lambda v: np.abs(v - parsed) <= 1e-9 * max(1.0, abs(parsed))
        if codec.block == "none":
            return lambda v: np.ones(len(v), dtype=bool)  # a constant column: its value (parse checked it)
        return lambda v: v == parsed


def _date_only(value: Any) -> bool:
    """Whether a range's end is written as a bare ISO date (2024-06-30), not an instant."""
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except (TypeError, ValueError):
        return False
    return True


def _training_range(codec: Any, column: Any) -> str:
    """The values a column's generated cells take, as a person reads them."""
    if column.kind in ("date", "datetime", "time"):
        first, last = codec.text(np.array([column.min, column.max]))
    else:
        first, last = (f"{v:.10g}" for v in column.output_bounds)
    return f"the training range {first} to {last}"


def _bound(codec: Any, column: Any, value: Any, refuse: Callable[[str], InvalidInput]) -> float | None:
    """A range's end (or a date's or time's value) as the column's values compare: a number, or seconds."""
    if value is None:
        return None
    if column.kind in ("date", "datetime", "time"):
        if not isinstance(value, str):
            raise refuse(f"{short(value)} is not a {column.kind}; give it as {column.format!r} or in ISO 8601")
        try:
            return text_seconds(value, column.format, column.kind == "time")
        except (ValueError, OverflowError):
            raise refuse(f"{short(value)} is not a {column.kind} written as {column.format!r} or in ISO 8601") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse(f"{short(value)} is not a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: beyond every training value too
        return math.inf if value > 0 else -math.inf
