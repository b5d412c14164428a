"""One codec per column kind, as RDT's transformers are: what a kind's cells may hold, how a cell is
parsed, what a value decodes to, its Arrow type, and what makes its schema valid.

A codec says where its column sits in a model's encoded rows (`block`):

- `numeric`: one value on the model's scale, which the decoder's head describes (continuous, integer);
  the map to and from that scale is the column's `encoding` (core/table.py, vectorised over columns);
- `onehot`: a one-hot block of its categories, a softmax in the decoder (categorical, boolean);
- `none`: not modelled (constant);
- `parts`: several of the above, the column's `parts` (core/manifest.py): a date is the week it falls in
  (an integer) and its weekday (a category), a timestamp those and its time of day, so that the model
  sees the cycles of a week and of a day, not one long number; `compose` makes the parts one value again.

Gaps are handled once, by `Table`, for every kind: a missing cell is a NaN value or category index -1
plus a missing indicator; a codec sees present cells only. `Table` composes the codecs of a schema;
`CODECS` maps each kind's name to its codec, and a new kind is one more class here (`register`).
Numpy only: this module knows a column through the attributes it reads (core/manifest.py's Column).
"""

from __future__ import annotations

import calendar
import hashlib
import itertools
import math
import uuid
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any, ClassVar, Literal

import numpy as np

Cell = float | int | str | bool | None
Block = Literal["numeric", "onehot", "none", "parts"]


class CellError(ValueError):
    """A cell its column does not take: `message` follows "row r, column 'name'", `details` what it allows."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def category_key(value: Any) -> str:
    """One spelling per category, so that 2007, 2007.0 and "2007" (or true and "true") are the same
    category whatever the client's JSON or CSV made of it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Codec:
    kind: ClassVar[str]
    block: ClassVar[Block]

    def __init__(self, column: Any) -> None:
        self.column = column

    @classmethod
    def check(cls, column: Any) -> None:
        """Raise ValueError where a manifest's column of this kind is not servable."""

    def parse(self, value: Cell) -> float:
        """A present cell (not None) -> its value (numeric block) or category index (one-hot block);
        CellError when the column does not take it."""
        raise NotImplementedError

    def cells(self, values: np.ndarray) -> list[Cell]:
        """Decoded values -> the Python values answered: `values` are a numeric column's values in original
        units, a one-hot column's category indices, or one placeholder per row for an unmodelled column."""
        raise NotImplementedError

    def takes(self) -> str:
        """What a present cell may hold, for a person."""
        raise NotImplementedError

    def allowed(self) -> str:
        return self.takes() + (", or null" if self.column.gaps else "")

    def arrow_type(self, pa: Any) -> Any:
        raise NotImplementedError

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        """The column's Arrow array of type `kind` from `values` as `cells` takes them, null where `mask`."""
        raise NotImplementedError

    def numpy_type(self, kind: Any, pa: Any) -> str:
        """The dtype pandas reads the Arrow column `kind` as (named in a file's pandas metadata)."""
        return "object" if pa.types.is_string(kind) else str(kind)

    def known_values(self) -> list[Cell] | None:
        """Every value the column answers, where the manifest lists them (None: open-ended)."""
        return None


CODECS: dict[str, type[Codec]] = {}


def register(codec: type[Codec]) -> type[Codec]:
    """Make `codec` the one for columns of its kind."""
    CODECS[codec.kind] = codec
    return codec


def codec_of(column: Any) -> Codec:
    return CODECS[column.kind](column)


@register
class Continuous(Codec):
    kind, block = "continuous", "numeric"
    rounds: ClassVar[bool] = False  # decoded values rounded to whole numbers

    @classmethod
    def check(cls, column: Any) -> None:
        name = column.name
        if column.min is None or column.max is None or not column.min <= column.max:
            raise ValueError(f"column {name!r}: a numeric column needs min <= max")
        low, high = column.output_bounds
        if not column.min <= low <= high <= column.max:
            raise ValueError(f"column {name!r}: floor and ceiling must lie within min and max, in order")
        if column.encoding == "standard" and (column.shift is None or column.scale is None):
            raise ValueError(f"column {name!r}: the standard encoding needs shift and scale")
        if column.encoding == "quantile":
            knots, scores = column.knots or [], column.scores or []
            if len(knots) < 2 or len(knots) != len(scores):
                raise ValueError(f"column {name!r}: the quantile encoding needs >= 2 knots and one score each")
            if any(b < a for a, b in itertools.pairwise(knots)) or any(b <= a for a, b in itertools.pairwise(scores)):
                raise ValueError(f"column {name!r}: knots must not decrease and scores must increase")
        if column.encoding is None:
            raise ValueError(f"column {name!r}: a numeric column needs an encoding")

    def parse(self, value: Cell) -> float:
        number = math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond any float
                number = math.inf
        if not math.isfinite(number):
            allowed = self.allowed()
            raise CellError(f" holds {short(value)}; it takes {allowed}", {"allowed": allowed})
        return number

    def cells(self, values: np.ndarray) -> list[Cell]:
        return values.tolist()

    def takes(self) -> str:
        return f"a number (training range {self.column.min:g} to {self.column.max:g})"

    def arrow_type(self, pa: Any) -> Any:
        return pa.float64()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array(np.ascontiguousarray(values), type=kind, mask=mask)


@register
class Integer(Continuous):
    kind, rounds = "integer", True

    def cells(self, values: np.ndarray) -> list[Cell]:
        return values.astype(np.int64).tolist()

    def takes(self) -> str:
        return f"an integer (training range {self.column.min:g} to {self.column.max:g})"

    def arrow_type(self, pa: Any) -> Any:
        return pa.int64()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array(values.astype(np.int64), type=kind, mask=mask)

    def numpy_type(self, kind: Any, pa: Any) -> str:
        # pandas reads an integer column with gaps as its nullable Int64, not as float64, when named so
        return "Int64" if self.column.gaps else super().numpy_type(kind, pa)


@register
class Categorical(Codec):
    kind, block = "categorical", "onehot"

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.index = {category_key(v): i for i, v in enumerate(column.categories or [])}
        self.values = np.array(column.categories, dtype=object)
        self._arrow: Any = None  # the categories as an Arrow array, made once

    @classmethod
    def check(cls, column: Any) -> None:
        if not column.categories or len(set(map(repr, column.categories))) != len(column.categories):
            raise ValueError(f"column {column.name!r}: a {column.kind} column needs distinct categories")

    def parse(self, value: Cell) -> float:
        index = self.index.get(category_key(value))
        if index is None:
            valid = self.column.categories
            raise CellError(f": unknown category {short(value)}; valid: {valid}", {"valid": valid})
        return index

    def cells(self, values: np.ndarray) -> list[Cell]:
        return self.values[values].tolist()

    def takes(self) -> str:
        return f"one of {self.column.categories}"

    def known_values(self) -> list[Cell] | None:
        return list(self.column.categories)

    def arrow_type(self, pa: Any) -> Any:
        try:
            return pa.array(self.column.categories).type
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: as text
            return pa.string()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        # the categories as an Arrow array of the column's type, indexed by the codes; categories of mixed
        # kinds as text, spelled as genserve spells categories (`category_key`)
        if self._arrow is None or self._arrow.type != kind:
            categories = self.column.categories or []
            if pa.types.is_string(kind) and not all(isinstance(c, str) for c in categories):
                categories = [category_key(c) for c in categories]
            self._arrow = pa.array(categories, type=kind)
        return self._arrow.take(pa.array(values, mask=mask))


@register
class Boolean(Categorical):
    kind = "boolean"

    @classmethod
    def check(cls, column: Any) -> None:
        super().check(column)
        if column.categories != [False, True]:
            raise ValueError(f"column {column.name!r}: a boolean column's categories are [false, true]")


@register
class Constant(Codec):
    kind, block = "constant", "none"

    @classmethod
    def check(cls, column: Any) -> None:
        if column.missing_rate > 0:
            raise ValueError(f"column {column.name!r}: a constant column has no gaps (one with gaps is categorical)")

    def parse(self, value: Cell) -> float:
        if category_key(value) != category_key(self.column.value):
            raise CellError(
                f" holds {short(value)}; the column was always {self.column.value!r} in training: give that, or null",
                {"allowed": [self.column.value, None]},
            )
        return math.nan

    def cells(self, values: np.ndarray) -> list[Cell]:
        return [self.column.value] * len(values)

    def takes(self) -> str:
        return repr(self.column.value)

    def known_values(self) -> list[Cell] | None:
        return [self.column.value]

    def arrow_type(self, pa: Any) -> Any:
        return pa.array([self.column.value]).type

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array([self.column.value] * len(values), type=kind, mask=mask)


class Identifier(Codec):
    """An ID column training left out, answered with new values in the training IDs' pattern (the
    column's `identifier`, core/manifest.py's Identifier): `values` are each row's place in its answer
    (0 for the first row), so the rows of one answer get distinct IDs, none of them a training ID (a
    counter starts past the largest; a UUID is 122 hashed bits). Not a kind of modelled column: request
    rows may hold the column and it is ignored, as every column training left out is."""

    kind, block = "identifier", "none"

    def cells(self, values: np.ndarray) -> list[Cell]:
        how = self.column.identifier
        if how.kind == "uuid":
            texts = [str(_uuid(how.salt, row)) for row in values.astype(np.int64).tolist()]
            return [t.upper() for t in texts] if how.upper else texts  # type: ignore[misc]
        numbers = (how.start + values.astype(np.int64)).tolist()
        if how.integer:
            return numbers
        return [f"{how.prefix}{n:0{how.width}d}{how.suffix}" for n in numbers]

    def takes(self) -> str:
        return "anything (the column is ignored)"

    def arrow_type(self, pa: Any) -> Any:
        return pa.int64() if self.column.identifier.integer else pa.string()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array(self.cells(values), type=kind)


def _uuid(salt: str, row: int) -> uuid.UUID:
    digest = hashlib.blake2b(f"{salt}:{row}".encode(), digest_size=16).digest()
    return uuid.UUID(bytes=digest, version=4)


# ---- dates and times ----------------------------------------------------------------------------------
# A date or timestamp is held as seconds since 1970-01-01 00:00 of its wall clock (the time zone, where the
# data wrote one, is the column's `zone`: its cells are read and written in it); a time of day as seconds
# since midnight. The model sees them as parts: the week (weeks since the Monday before 1970-01-01, a
# Thursday: an integer), the weekday (0 Monday .. 6 Sunday: a category), the hour (a category) and the
# seconds within the hour (an integer, in the column's `step`: 60 where the data has whole minutes).

DAY = 86_400
WEEK = 7 * DAY
_THURSDAY = 3  # 1970-01-01's weekday
WEEK_PART, WEEKDAY_PART, HOUR_PART, SECONDS_PART = "week", "weekday", "hour", "seconds"
PART_KINDS = {WEEK_PART: "integer", WEEKDAY_PART: "categorical", HOUR_PART: "categorical", SECONDS_PART: "integer"}
PART_CATEGORIES = {WEEKDAY_PART: list(range(7)), HOUR_PART: list(range(24))}


def part_name(column: str, part: str) -> str:
    """The name of a part in the model's encoded rows (and the training frame): `when@week`."""
    return f"{column}@{part}"


def time_parts(seconds: np.ndarray, parts: Sequence[str], step: int = 1) -> list[np.ndarray]:
    """Wall-clock seconds since 1970 (or since midnight) -> each part's values, as floats (NaN stays NaN)."""
    seconds = np.floor(np.asarray(seconds, dtype=np.float64))
    days = np.floor_divide(seconds, DAY)
    clock = seconds - days * DAY
    values = {
        WEEK_PART: np.floor_divide(days + _THURSDAY, 7),
        WEEKDAY_PART: np.mod(days + _THURSDAY, 7),
        HOUR_PART: np.floor_divide(clock, 3600),
        SECONDS_PART: np.floor_divide(np.mod(clock, 3600), step),
    }
    return [values[p] for p in parts]


def text_seconds(text: str, fmt: str, clock_only: bool = False) -> float:
    """A cell written in `fmt` (or ISO 8601) -> wall-clock seconds since 1970 (since midnight for a time
    of day); ValueError when it is neither."""
    try:
        parsed: datetime | time = datetime.strptime(text, fmt)
    except ValueError:
        parsed = time.fromisoformat(text) if clock_only else datetime.fromisoformat(text)
    if isinstance(parsed, time) or clock_only:
        t = parsed if isinstance(parsed, time) else parsed.time()
        return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    return calendar.timegm(parsed.replace(tzinfo=None).timetuple()) + parsed.microsecond / 1e6


_ISO_TEXT = {"%Y-%m-%d": ("D", None), "%Y-%m-%dT%H:%M:%S": ("s", None), "%Y-%m-%d %H:%M:%S": ("s", " ")}


def seconds_text(seconds: np.ndarray, fmt: str, zone: str | None = None, clock_only: bool = False) -> list[str]:
    """Wall-clock seconds since 1970 (since midnight: `clock_only`) -> cells written in `fmt` (ISO formats
    by numpy, vectorised); %z writes the column's `zone`."""
    whole = np.floor(np.asarray(seconds, dtype=np.float64)).astype(np.int64)
    if clock_only:
        whole = np.mod(whole, DAY)
    iso = _ISO_TEXT.get(fmt)
    if iso is not None and zone is None:
        unit, sep = iso
        text = np.datetime_as_string(whole.astype("datetime64[s]"), unit=unit)
        return (np.char.replace(text, "T", sep) if sep else text).tolist()
    fmt = fmt.replace("%z", zone or "").replace("%Z", zone or "")
    stamps = whole.astype("datetime64[s]").tolist()  # datetime.datetime each
    return [stamp.strftime(fmt) for stamp in stamps]


def has_clock(fmt: str) -> bool:
    """Whether a format writes a time of day."""
    return any(d in fmt for d in ("%H", "%I", "%M", "%S", "%X", "%c", "%T", "%R", "%p"))


@register
class Date(Codec):
    """A calendar date, as its week (an integer) and weekday (a category): the model keeps both the
    distribution over the weeks of the training range and the week's cycle, each dependent on the rest of
    the row. Cells are text in the column's `format` (ISO 8601 is taken too). A composed date stays within
    the training range (a week later or earlier, the same weekday, then clipped)."""

    kind, block = "date", "parts"
    parts: ClassVar[tuple[str, ...]] = (WEEK_PART, WEEKDAY_PART)
    clock_only: ClassVar[bool] = False

    @classmethod
    def check(cls, column: Any) -> None:
        name = column.name
        if not column.format:
            raise ValueError(f"column {name!r}: a {column.kind} column needs its text format")
        if column.min is None or column.max is None or not column.min <= column.max:
            raise ValueError(f"column {name!r}: a {column.kind} column needs min <= max")
        wanted = [part_name(name, p) for p in cls.parts]
        if [p.name for p in column.parts or []] != wanted:
            raise ValueError(f"column {name!r}: a {column.kind} column's parts are {wanted}")
        for part, p in zip(column.parts, cls.parts, strict=True):
            if part.kind != PART_KINDS[p] or (p in PART_CATEGORIES and part.categories != PART_CATEGORIES[p]):
                raise ValueError(f"column {name!r}: its part {part.name!r} is {PART_KINDS[p]} (core/codecs.py)")
        if any(p.missing_rate for p in column.parts[1:]):
            raise ValueError(f"column {name!r}: only a {column.kind} column's first part has gaps")

    @property
    def step(self) -> int:
        return self.column.step or 1

    def parse(self, value: Cell) -> tuple[float, ...]:
        """A cell -> its parts' values (a category as its index, which is its value here)."""
        if isinstance(value, str):
            try:
                seconds = text_seconds(value, self.column.format, self.clock_only)
            except (ValueError, OverflowError):
                seconds = math.nan
            if math.isfinite(seconds):
                values = np.array([v[0] for v in time_parts(np.array([seconds]), self.parts, self.step)])
                return tuple(values.tolist())
        allowed = self.allowed()
        raise CellError(f" holds {short(value)}; it takes {allowed}", {"allowed": allowed})

    def compose(self, values: np.ndarray) -> np.ndarray:
        """The parts' decoded values [rows, parts] (a category as its index) -> seconds since 1970 (since
        midnight for a time of day), within the training range."""
        part = dict(zip(self.parts, values.T, strict=True))
        clock = part.get(HOUR_PART, 0.0) * 3600 + part.get(SECONDS_PART, 0.0) * self.step
        low, high = self.column.min, self.column.max
        if WEEK_PART in part:
            seconds = ((part[WEEK_PART] * 7 + part[WEEKDAY_PART] - _THURSDAY) * DAY) + clock
            seconds = np.where(seconds < low, seconds + WEEK, seconds)  # the same weekday and time, a week on
            seconds = np.where(seconds > high, seconds - WEEK, seconds)
        else:
            seconds = clock
        # what is still beyond an end (the seconds drawn in the range's last hour) is mirrored back inside,
        # not piled onto the end: the last training value is one row's own
        seconds = np.where(seconds > high, 2 * high - seconds, seconds)
        seconds = np.where(seconds < low, 2 * low - seconds, seconds)
        return np.clip(seconds, low, high)

    def text(self, seconds: np.ndarray) -> list[str]:
        return seconds_text(seconds, self.column.format, self.column.zone, self.clock_only)

    def cells(self, values: np.ndarray) -> list[Cell]:
        return self.text(self.compose(values))  # type: ignore[return-value]

    def takes(self) -> str:
        low, high = self.text(np.array([self.column.min, self.column.max]))
        what = {"date": "a date", "datetime": "a date and time", "time": "a time of day"}[self.kind]
        return f"{what} written as {self.column.format!r} or in ISO 8601 (training range {low} to {high})"

    def arrow_type(self, pa: Any) -> Any:
        return pa.string()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array(self.cells(values), type=kind, mask=mask)


@register
class Timestamp(Date):
    """A date and a time of day: the date's parts, the hour (a category: the day's cycle) and the seconds
    within the hour."""

    kind = "datetime"
    parts = (WEEK_PART, WEEKDAY_PART, HOUR_PART, SECONDS_PART)


@register
class TimeOfDay(Date):
    """A time of day: its hour (a category) and the seconds within the hour."""

    kind, clock_only = "time", True
    parts = (HOUR_PART, SECONDS_PART)
