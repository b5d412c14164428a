"""One codec per column kind, as RDT's transformers are: what a kind's cells may hold, how a cell is
parsed, what a value decodes to, its Arrow type, and what makes its schema valid.

A codec says where its column sits in a model's encoded rows (`block`):

- `numeric`: one value on the model's scale, which the decoder's head describes (continuous, integer);
  the map to and from that scale is the column's `encoding` (core/table.py, vectorised over columns);
- `onehot`: a one-hot block of its categories, a softmax in the decoder (categorical, boolean);
- `none`: not modelled (constant).

Gaps are handled once, by `Table`, for every kind: a missing cell is a NaN value or category index -1
plus a missing indicator; a codec sees present cells only. `Table` composes the codecs of a schema;
`CODECS` maps each kind's name to its codec, and a new kind is one more class here (`register`).
Numpy only: this module knows a column through the attributes it reads (core/manifest.py's Column).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Literal

import numpy as np

Cell = float | int | str | bool | None
Block = Literal["numeric", "onehot", "none"]


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
