"""Tables as users have them: read with pandas, typed column by column, encoded for the model.

Reading: CSV (delimiter and decimal mark sniffed, the usual spellings of a missing value) and
Parquet; a spreadsheet is refused with how to export it as CSV; a column chosen with --columns /
--drop-columns. Typing (`infer_columns`): each column becomes continuous, integer, categorical,
boolean or constant (core/manifest.py's `Column`), with its bounds, categories and missing rate;
ID and free-text columns are left out with a warning; a text column whose cells look like numbers
("12 kg", "12,5" beside "12.5") is warned about, with what to change.
Encoding (`fit_encodings`, `frame_arrays`): numeric columns get their map to the model's scale
fitted on the training split, then core/table.py's `Table` encodes rows, as serving does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import zipfile
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from core.codecs import (
    CODECS,
    DAY,
    PART_CATEGORIES,
    PART_KINDS,
    has_clock,
    part_name,
    time_parts,
)
from core.manifest import (
    MAX_GAP_PATTERNS,
    MAX_MISSING_RATE,
    MIN_ROWS_PER_GAP_PATTERN,
    Column,
    DroppedColumn,
    Identifier,
    NumericEncoding,
    model_columns,
)
from core.table import Table, category_key
from training.datasets import MAX_CATEGORIES, MIN_ROWS, DataError, Dataset, ReadOptions, encode_labels

MISSING_SPELLINGS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "none", "?"]
LOW_CARDINALITY = 10  # an integer column with at most this many distinct values is categorical
SMALL_TABLE = 300  # below this many rows the trained figures are unreliable: say so
MAX_KNOTS = 256  # quantile encoding: knots per numeric column
# a column's outputs stop at its second most extreme values only when it has at least this many in the
# training split: on a handful of values that would cut the range itself (3 values: one constant)
MIN_VALUES_TO_CODE = 20
MAX_DECIMALS = 6
_ID_NAME = re.compile(r"(^|[_\W])(id|key|uuid|index|rownames?)$", re.IGNORECASE)
SAMPLE_CHARS = 64 * 1024  # what the delimiter and the decimal mark are sniffed from
# A number as a decimal-comma locale writes it: "12,5", "1234,56", "1.234,56", "1 234,56" (thousands
# grouped by one separator: a point, a space or a no-break space, as spreadsheets export them; "0.125" is
# no grouping)
_COMMA_NUMBER = re.compile(r"[+-]?(?:[1-9]\d{0,2}(?P<sep>[. \u00a0\u202f])\d{3}(?:(?P=sep)\d{3})*|\d+)(?:,\d+)?")
# A number as pandas reads it by default: "12", "12.5", ".5", "1e-3"
_POINT_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# A cell shaped like a number, possibly with separators, a currency sign or a unit: "1,234", "12 kg", "37,5 %"
_NUMBER_SHAPED = re.compile(
    r"(?P<currency>[$€£¥]\s?)?[+-]?(?P<number>\d[\d.,'\u00a0\u202f ]*?)(?P<unit>\s?(?:%|[^\W\d_]{1,8}\.?))?"
)
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (.xls) and other old Office files
_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx and .ods are zip archives of XML
_ZIP_ARCHIVE = "a zip archive"  # one that is no workbook


def load_table(path: Path, label_column: str | None, read: ReadOptions) -> Dataset:
    _refuse_spreadsheet(path)
    if path.suffix.lower() == ".csv":
        frame = _read_csv(path, read)
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        if read.decimal == ",":
            frame = _read_decimal_commas(frame)
    return from_frame(frame, str(path), label_column, read)


def _refuse_spreadsheet(path: Path) -> None:
    """A DataError for a spreadsheet workbook (or another zip archive), by its first bytes whatever its
    name says: an .xlsx renamed .csv would otherwise be read as garbled text, and the message would blame
    the delimiter."""
    what = _spreadsheet_kind(path)
    if what is None and path.suffix.lower() in SPREADSHEET_SUFFIXES:
        what = f"a spreadsheet ({path.suffix})"
    if what == _ZIP_ARCHIVE:
        raise DataError(f"{path}: a zip archive, not a CSV or Parquet file; unzip it and pass the table inside")
    if what is not None:
        raise DataError(
            f"{path}: {what}, not a CSV file; genserve reads tables as CSV or Parquet. Export the sheet as CSV "
            "(Excel: File > Save As > CSV UTF-8; LibreOffice Calc: File > Save As > Text CSV) and pass that file"
        )


def _spreadsheet_kind(path: Path) -> str | None:
    """What a workbook is, from its first bytes; _ZIP_ARCHIVE for another zip; None for anything else."""
    with path.open("rb") as f:
        magic = f.read(8)
    if magic == _OLE2_MAGIC:
        return "an Excel 97-2003 workbook (.xls)"
    if not magic.startswith(_ZIP_MAGIC):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            mimetype = archive.read("mimetype").decode(errors="replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError):
        return _ZIP_ARCHIVE
    if any(n.startswith("xl/") for n in names):
        return "an Excel workbook (.xlsx)"
    if "spreadsheet" in mimetype:
        return "an OpenDocument spreadsheet (.ods)"
    return _ZIP_ARCHIVE


def load_penguins(read: ReadOptions) -> Dataset:
    """The Palmer penguins (344 rows; species, island, sex and four measurements, with gaps),
    shipped by the `palmerpenguins` package, labelled by species."""
    from palmerpenguins import load_penguins as _load

    return from_frame(_load(), "penguins", "species", read)


def _read_csv(path: Path, read: ReadOptions) -> pd.DataFrame:
    with path.open(newline="", errors="replace") as f:
        sample = f.read(SAMPLE_CHARS)
    if not sample.strip():
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    delimiter = read.delimiter
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    decimal = read.decimal or _sniff_decimal(sample, delimiter)
    header = [h.strip() for h in next(csv.reader([sample.splitlines()[0]], delimiter=delimiter))]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:  # pandas would rename them silently ("u", "u.1")
        raise DataError(f"{path}: column names repeat: {repeated}")
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            decimal=decimal,
            na_values=MISSING_SPELLINGS,
            keep_default_na=True,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV file ({e}); is --delimiter right?") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # pandas reads "12,5" itself with decimal=",", but not thousands grouped as "1.234,56"
    return _read_decimal_commas(frame) if decimal == "," else frame


def _sniff_decimal(sample: str, delimiter: str) -> str:
    """ "," when some column of the sample writes its numbers with a decimal comma ("12,5", "1.234,56")
    and none with a decimal point ("12.5"); "." otherwise. "1,234" and "1.234" tell neither (thousands?).
    A comma-delimited file keeps ".": there every such number would need quotes, and a quoted text cell
    with a comma in it is far more common."""
    if delimiter == ",":
        return "."
    marks = set()  # the decimal marks some column of numbers shows
    for cells in _sample_columns(sample, delimiter):
        present = [c.strip() for c in cells if c.strip() not in MISSING_SPELLINGS]
        for mark, spelling in ((",", _COMMA_NUMBER), (".", _POINT_NUMBER)):
            numbers = [c for c in present if spelling.fullmatch(c)]
            all_numbers = bool(present) and _few_stray(len(present) - len(numbers), len(present))
            if all_numbers and any(_decimal_mark(c) == mark for c in numbers):
                marks.add(mark)
    return "," if marks == {","} else "."


def _sample_columns(sample: str, delimiter: str) -> list[tuple[str, ...]]:
    """The sample's data cells column by column (the header, and a last row the sample may cut, left out)."""
    try:
        rows = list(csv.reader(io.StringIO(sample), delimiter=delimiter))
    except csv.Error:
        return []
    if len(sample) == SAMPLE_CHARS:
        rows = rows[:-1]
    return list(itertools.zip_longest(*rows[1:], fillvalue=""))


def _read_decimal_commas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns of numbers written with a decimal comma ("12,5", "1.234,56", "1 234,56") as numbers.
    A column with a few stray cells keeps them as text, for `_infer` to read as missing and say so; one
    with more stays text, for the warning that names it."""
    frame = frame.copy()
    for name in frame.columns:
        series = frame[name]
        if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
            continue
        present = series.dropna()
        head = present.head(1000).map(_comma_number)
        if head.empty or not _few_stray(int(head.isna().sum()), len(head)):
            continue  # text, as its first cells show: not worth parsing throughout
        numbers = present.map(_comma_number).reindex(series.index)
        stray = int(numbers.isna().sum() - series.isna().sum())
        if stray == 0:
            frame[name] = numbers.astype(np.float64)
        elif _few_stray(stray, len(present)):
            frame[name] = series.where(numbers.isna(), numbers).astype(object)
    return frame


def _comma_number(cell: object) -> float:
    """A cell written with a decimal comma as a number; NaN when it is not one."""
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return float(cell)
    text = str(cell).strip()
    if _COMMA_NUMBER.fullmatch(text) is None:
        return np.nan
    for separator in ". \u00a0\u202f":
        text = text.replace(separator, "")
    return float(text.replace(",", "."))


def from_frame(frame: pd.DataFrame, source: str, label_column: str | None, read: ReadOptions) -> Dataset:
    """A DataFrame as read -> a Dataset with its typed columns (and labels, rows without one dropped)."""
    warnings: list[str] = []
    frame = _strip_text(frame)
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise DataError(f"{source}: column names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    if label_column is not None and label_column not in names:
        raise DataError(f"{source}: label column {label_column!r} not found; columns are: {', '.join(names)}")
    for option, chosen in (("--columns", read.columns or ()), ("--drop-columns", read.drop_columns)):
        unknown = [c for c in chosen if c not in names]
        if unknown:
            raise DataError(f"{source}: {option} names {unknown}, not in the table; columns are: {', '.join(names)}")
    keep = [c for c in (read.columns or names) if c != label_column and c not in read.drop_columns]
    _check_rows(len(frame), source, None)
    y, labels = None, None
    if label_column is not None:
        raw = frame[label_column]
        unlabelled = raw.isna()
        if unlabelled.all():
            raise DataError(f"{source}: the label column {label_column!r} is empty")
        if unlabelled.any():
            warnings.append(f"dropped {int(unlabelled.sum())} row(s) without a label in {label_column!r}")
            frame = frame.loc[~unlabelled].reset_index(drop=True)
            raw = frame[label_column]
            _check_rows(len(frame), source, label_column)
        where = f"{source}: the label column {label_column!r}"
        y, labels = encode_labels([category_key(v) for v in raw.tolist()], where)
    columns, found, dropped = infer_columns(frame[keep], read)
    warnings += found
    chosen = set(read.columns or names)
    dropped = [
        DroppedColumn(name=c, reason="--drop-columns" if c in read.drop_columns else "not among --columns")
        for c in names
        if c != label_column and (c in read.drop_columns or c not in chosen)
    ] + dropped
    placed = [d.model_copy(update={"position": names.index(d.name)}) for d in dropped]  # its place in the table
    dropped = sorted(placed, key=lambda d: d.position)
    if not any(c.numeric or c.parts for c in columns):
        # the warnings are not printed when training stops here: they say why each column is not a number
        raise DataError(
            f"{source}: no numeric column to model among {keep}; genserve's tables need at least one "
            "continuous or integer column" + "".join(f"\n  {w}" for w in found)
        )
    kept = [c.name for c in columns]
    label_position = None
    if label_column is not None:  # where the label stood among the columns the model keeps
        label_position = sum(1 for c in kept if names.index(c) < names.index(label_column))
    if len(frame) < SMALL_TABLE:
        warnings.append(f"{len(frame)} rows: under {SMALL_TABLE}, the model's figures are unreliable")
    return Dataset(
        None,
        y,
        labels,
        kept,
        None,
        source,
        label_column,
        frame=_as_typed(frame[kept].reset_index(drop=True), columns),
        columns=columns,
        warnings=warnings,
        label_position=label_position,
        dropped=dropped,
    )


def _as_typed(frame: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """The cells as their columns are typed: a numeric column read from text ("-" among numbers, or
    "12.5" in a file read with --decimal ,) as numbers, its stray cells NaN, for fitting and encoding."""
    for column in columns:
        if column.numeric:
            frame[column.name] = pd.to_numeric(frame[column.name], errors="coerce")
    return frame


def _check_rows(rows: int, source: str, label_column: str | None) -> None:
    """A DataError for a table too small to split into training, validation and test rows, before its
    columns are typed (in one row every column is a constant, and the message would say no column is numeric)."""
    labelled = f" with a label in {label_column!r}" if label_column else ""
    if rows == 0:
        raise DataError(
            f"{source}: no data rows{labelled}, only the column names; training needs at least {MIN_ROWS} rows"
        )
    if rows < MIN_ROWS:
        raise DataError(
            f"{source}: {rows} data row{'' if rows == 1 else 's'}{labelled}; training needs at least {MIN_ROWS} "
            "(they are split into training, validation and test rows)"
        )


def _strip_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells without surrounding spaces ("male " is "male"); a cell of spaces alone is missing."""
    frame = frame.copy()
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_string_dtype(series) or series.dtype == object:
            text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
            frame[name] = text.mask(text.map(lambda v: v == "" if isinstance(v, str) else False))
    return frame


def _mostly_numbers(present: pd.Series) -> pd.Series | None:
    """A text column whose cells are numbers but for a few stray ones (a "-" or "n/a" typed by
    hand): the numbers, with the stray cells as NaN. None when it is text."""
    numbers = pd.to_numeric(present, errors="coerce")
    return numbers if _few_stray(int(numbers.isna().sum()), len(present)) else None


def _few_stray(stray: int, cells: int) -> bool:
    """Whether `stray` cells out of `cells` are few enough (one, or 2%) to be typos in a column of numbers."""
    return stray <= max(1, 0.02 * cells) and stray < cells


def infer_columns(frame: pd.DataFrame, read: ReadOptions) -> tuple[list[Column], list[str], list[DroppedColumn]]:
    """Each column's kind, bounds, categories and missing rate; warnings (one per column left out); and
    the columns left out, with why."""
    columns: list[Column] = []
    warnings: list[str] = []
    dropped: list[DroppedColumn] = []
    dates = dict(read.datetime)
    unknown = [c for c in dates if c not in frame.columns]
    if unknown:
        raise DataError(f"--datetime names {unknown}, not among the columns: {', '.join(map(str, frame.columns))}")
    for name in frame.columns:
        forced = name in dates
        series = frame[name]
        if forced and not pd.api.types.is_datetime64_any_dtype(series):
            series = series.astype("string")  # 20240301 as the text it was
        column, why = _infer(str(name), series, name in read.categorical, name in read.integer, dates.get(name), forced)
        looks_numeric = None
        if name not in read.categorical and (column is None or column.kind == "categorical"):
            looks_numeric = _numbers_as_text(frame[name])
        if column is None:
            warnings.append(f"column {name!r} left out: {why}" + (f"; {looks_numeric}" if looks_numeric else ""))
            identifier = None
            if read.regenerate_ids and why.startswith("an ID"):
                identifier = identifier_of(frame[name])
                if identifier is None:
                    warnings.append(
                        f"--regenerate-ids: column {name!r} not regenerated: its values are not a number between "
                        "one fixed prefix and suffix (CLM-000123, 1001) nor UUIDs"
                    )
            dropped.append(DroppedColumn(name=str(name), reason=why, identifier=identifier))
            continue
        columns.append(column)
        if why:
            warnings.append(why)
        if looks_numeric:
            categories = len(column.categories or [])
            warnings.append(f"column {name!r} read as {categories} categories, not as numbers: {looks_numeric}")
    return columns, warnings, dropped


def _numbers_as_text(series: pd.Series) -> str | None:
    """Why a text column whose cells look like numbers ("12 kg", "1,234", "12,5" beside "12.5") was read
    as text, with the fix; None when its cells do not look like numbers. Its first 1,000 distinct cells tell."""
    if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
        return None
    cells = [str(v).strip() for v in series.dropna().drop_duplicates().head(1000)]
    shaped = [(c, m) for c in cells if (m := _NUMBER_SHAPED.fullmatch(c)) is not None]
    if not cells or len(shaped) < 0.9 * len(cells):
        return None
    with_unit = [c for c, m in shaped if m["currency"] or m["unit"]]
    marks = {c: _decimal_mark(m["number"]) for c, m in shaped}
    commas = [c for c, mark in marks.items() if mark == ","]
    points = [c for c, mark in marks.items() if mark == "."]
    if with_unit:
        return (
            f"its cells look like numbers with a unit or symbol (e.g. {_examples(with_unit)}): write the "
            "number alone (the unit can go in the column name)"
        )
    if commas and points:
        return (
            f"its cells look like numbers, some with a decimal comma (e.g. {_examples(commas)}) and some with "
            f"a decimal point (e.g. {_examples(points)}): write them all one way (with commas, pass --decimal ,)"
        )
    if commas:
        return f"its cells look like numbers with a decimal comma (e.g. {_examples(commas)}): pass --decimal ,"
    grouped = [c for c, _ in shaped if pd.isna(pd.to_numeric(c, errors="coerce"))] or cells
    comma = ", or pass --decimal , if the comma is the decimal mark" if any("," in c for c in grouped) else ""
    return (
        f"its cells look like numbers with thousands separators (e.g. {_examples(grouped)}): write them without{comma}"
    )


def _decimal_mark(number: str) -> str | None:
    """ "," or "." when a number's spelling shows its decimal mark ("12,5", "0,125" or "1.234,5"; "12.5"
    or "1,234.5"), None when it does not ("1234"; "1,234" and "1.234.567" may be thousands)."""
    number = number.strip()
    last = max(number.rfind(","), number.rfind("."))
    if last < 0:
        return None
    mark, other = number[last], "." if number[last] == "," else ","
    if other in number[:last]:
        return mark  # both: the last one is the decimal mark
    whole = number[:last].lstrip("+-")
    if number.count(mark) == 1 and (len(number) - last - 1 != 3 or whole in ("", "0") or len(whole) > 3):
        return mark  # once, and not a thousands group (three digits after it, one to three before)
    return None


def _examples(cells: list[str]) -> str:
    return ", ".join(repr(c) for c in cells[:3])


def _infer(
    name: str, series: pd.Series, categorical: bool, integer: bool, fmt: str | None = None, temporal: bool = False
) -> tuple[Column | None, str]:
    missing = series.isna()
    rate = float(missing.mean())
    present = series[~missing]
    if rate > MAX_MISSING_RATE:
        return None, f"{rate:.0%} of its values are missing"
    values = present.tolist()
    distinct = {category_key(v): v for v in values}
    common = {"name": name, "missing_rate": rate}
    if len(distinct) == 1 and rate == 0:
        return Column(kind="constant", value=_plain(values[0]), **common), ""
    is_bool = pd.api.types.is_bool_dtype(series) or set(distinct) <= {"true", "false"}
    is_number = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if temporal or not (is_number or is_bool or categorical):
        column, note = _temporal(name, series, fmt)
        if column is not None:
            return column, note
        if temporal:
            raise DataError(
                f"--datetime names {name!r}, whose cells are not dates or times in a known format (e.g. "
                f"{values[0]!r}); give its format: --datetime {name}=FORMAT (strptime codes, e.g. %d/%m/%Y %H:%M)"
            )
    if not is_number and not is_bool and not categorical:
        numbers = _mostly_numbers(present)
        if numbers is not None:  # read as numbers; the stray cells are missing values
            stray = present[numbers.isna()]
            series = pd.to_numeric(series, errors="coerce")
            # none stray: "12.5" in a file read with --decimal , (pandas leaves it text; it is a number all the same)
            return _infer(name, series, False, integer)[0], (
                f"column {name!r}: {len(stray)} cell(s) that are not numbers (e.g. {stray.iloc[0]!r}) read as missing"
                if len(stray)
                else ""
            )
    if integer and not is_number:
        raise DataError(f"--integer names {name!r}, whose values are not numbers (e.g. {values[0]!r})")
    if categorical and len(distinct) > MAX_CATEGORIES:
        raise DataError(
            f"--categorical names {name!r}, which holds {len(distinct):,} distinct values; a categorical column "
            f"takes at most {MAX_CATEGORIES:,} (each is a one-hot input): group the rare ones, or leave it out"
        )
    if categorical or (is_bool and not integer):
        return _categorical(name, distinct, is_bool and not categorical, rate), ""
    if is_number:
        x = present.to_numpy(dtype=np.float64)
        if not np.isfinite(x).all():
            raise DataError(f"column {name!r} holds an infinite value; replace it, or leave the cell empty")
        integral = bool(np.all(x == np.round(x)))
        if integer and not integral:
            raise DataError(f"--integer names {name!r}, which holds non-integer values (e.g. {x[x != np.round(x)][0]})")
        if integral and rate == 0 and len(distinct) == len(x) and _looks_like_id(name, x):
            return None, "an ID (a different integer in every row)"
        if integral and not integer and len(distinct) <= LOW_CARDINALITY:
            return _categorical(name, {k: int(v) for k, v in distinct.items()}, False, rate), ""
        kind = "integer" if integral else "continuous"
        return Column(
            kind=kind,
            min=float(x.min()),
            max=float(x.max()),
            nonnegative=bool(x.min() >= 0),
            decimals=None if integral else _decimals(x),
            encoding="standard",  # placeholder until fit_encodings sees the training split
            shift=0.0,
            scale=1.0,
            **common,
        ), ""
    if len(distinct) == len(values) and len(values) > 20:
        if identifier_of(present) is not None:  # CLM-000123, a UUID: in a pattern --regenerate-ids continues
            return None, "an ID (a different value in every row)"
        return None, "an ID or free text (a different value in every row)"
    if len(distinct) > 50 and len(distinct) > 0.5 * len(values):
        return None, f"free text ({len(distinct)} distinct values in {len(values)} rows)"
    if len(distinct) > MAX_CATEGORIES:
        return None, f"{len(distinct):,} distinct values (a categorical column takes at most {MAX_CATEGORIES:,})"
    return _categorical(name, distinct, False, rate), ""


def _categorical(name: str, distinct: dict[str, object], boolean: bool, rate: float) -> Column:
    if boolean:
        return Column(name=name, kind="boolean", categories=[False, True], missing_rate=rate)
    values = [_plain(v) for v in distinct.values()]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        ordered: list = sorted(values)
    else:
        ordered = sorted({category_key(v) for v in values})
    return Column(name=name, kind="categorical", categories=ordered, missing_rate=rate)


def _plain(value: object) -> bool | int | float | str:
    """numpy and pandas scalars as plain Python values (integral floats as int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


_COUNTER = re.compile(r"^(.*?)(\d+)(\D*)$", re.DOTALL)  # the last run of digits, between a prefix and a suffix
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def identifier_of(series: pd.Series) -> Identifier | None:
    """How an ID column's values go on (core/manifest.py's Identifier): a counter where every value is a
    number between the same prefix and suffix, UUIDs where every value is one; None otherwise."""
    present = series.dropna()
    if len(present) == 0:
        return None
    if pd.api.types.is_numeric_dtype(present):
        x = present.to_numpy(dtype=np.float64)
        if not np.all(x == np.round(x)) or x.min() < 0:
            return None
        return Identifier(kind="counter", start=int(x.max()) + 1, integer=True)
    texts = [str(v) for v in present.tolist()]
    if all(_UUID.match(t) for t in texts):
        upper = all(t == t.upper() for t in texts)
        salt = hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()  # the same data, the same IDs
        return Identifier(kind="uuid", upper=upper, salt=salt)
    found = [_COUNTER.match(t) for t in texts]
    if not all(found) or len({(m[1], m[3]) for m in found}) != 1:  # type: ignore[index]
        return None
    prefix, suffix = found[0][1], found[0][3]  # type: ignore[index]
    digits = [m[2] for m in found]  # type: ignore[index]
    widths = {len(d) for d in digits}
    padded = len(widths) == 1 and any(d.startswith("0") for d in digits)  # 000123: zero-padded to a width
    start = max(int(d) for d in digits) + 1
    return Identifier(kind="counter", prefix=prefix, suffix=suffix, width=widths.pop() if padded else 0, start=start)


def _looks_like_id(name: str, x: np.ndarray) -> bool:
    consecutive = x.max() - x.min() + 1 == len(x)
    return consecutive or _ID_NAME.search(name) is not None


def _decimals(x: np.ndarray) -> int | None:
    """The fewest decimals that write every value exactly (None: more than MAX_DECIMALS)."""
    for decimals in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(x, decimals), x, rtol=0, atol=1e-9 * max(1.0, float(np.abs(x).max()))):
            return decimals
    return None


def fit_encodings(columns: list[Column], train: pd.DataFrame, encoding: NumericEncoding) -> list[Column]:
    """The columns with each numeric column's map to the model's scale fitted on the training rows.

    quantile: normal scores of the column's empirical CDF (a skewed, heavy-tailed or multi-modal
    column becomes roughly N(0, 1), and the inverse map can only give values inside the data's
    range); standard: (x - mean) / std."""
    values = model_frame(columns, train)
    fitted = []
    for column in columns:
        if column.parts:  # its parts' encodings, and its range, from the training rows alone
            parts = fit_encodings(column.parts, values, encoding)
            seconds = temporal_seconds(train[column.name], column)
            seconds = seconds[~np.isnan(seconds)]
            if len(seconds) == 0:
                raise DataError(f"column {column.name!r} has no values in the training split")
            update = {"parts": parts, "min": float(seconds.min()), "max": float(seconds.max())}
            fitted.append(Column.model_validate(column.model_copy(update=update).model_dump()))
            continue
        if column.numeric:
            x = pd.to_numeric(values[column.name], errors="coerce").dropna().to_numpy(dtype=np.float64)
            if len(x) == 0:
                raise DataError(f"column {column.name!r} has no values in the training split")
            update: dict = {"encoding": encoding, "shift": None, "scale": None, "knots": None, "scores": None}
            update |= {"floor": None, "ceiling": None}  # refitted below, when the column has enough values
            if len(x) >= MIN_VALUES_TO_CODE:  # bottom- and top-coding (Column.floor)
                update |= {"floor": float(np.partition(x, 1)[1]), "ceiling": float(np.partition(x, -2)[-2])}
            if encoding == "standard":
                std = float(x.std())
                update |= {"shift": float(x.mean()), "scale": std if std > 1e-12 else 1.0}
            else:
                knots = min(MAX_KNOTS, len(x))
                tail = 0.5 / len(x)  # the extreme knots sit at the rank of one half row, not at +-infinity
                p = knot_levels(max(knots, 2), tail)
                update |= {
                    "knots": np.quantile(x, p).tolist(),
                    "scores": [NormalDist().inv_cdf(float(v)) for v in np.clip(p, tail, 1 - tail)],
                }
            column = column.model_copy(update=update)
            column = Column.model_validate(column.model_dump())  # re-checked as a whole
        fitted.append(column)
    return fitted


def common_gap_patterns(columns: list[Column], train: pd.DataFrame) -> tuple[list[list[str]] | None, int]:
    """(the combinations of gaps at least MIN_ROWS_PER_GAP_PATTERN training rows share, most common
    first and at most MAX_GAP_PATTERNS, for `Manifest.gap_patterns`, or only "no gaps" when none is
    that common; the training rows whose combination is not among them). None for a table without
    gaps."""
    gapped = [c.name for c in model_columns(columns) if c.gaps]
    if not gapped:
        return None, 0
    patterns, counts = np.unique(model_frame(columns, train)[gapped].isna().to_numpy(), axis=0, return_counts=True)
    common = [i for i in np.argsort(-counts, kind="stable") if counts[i] >= MIN_ROWS_PER_GAP_PATTERN]
    common = common[:MAX_GAP_PATTERNS]
    if not common:  # none is common enough: generated rows have no gaps (a row with none is no one's trait)
        return [[]], int(counts.sum() - counts[~patterns.any(axis=1)].sum())
    kept = [[name for name, gap in zip(gapped, patterns[i], strict=True) if gap] for i in common]
    return kept, int(counts.sum() - counts[common].sum())


def knot_levels(knots: int, tail: float) -> np.ndarray:
    """Probabilities of a quantile encoding's knots: half evenly spaced in probability (the body), half
    evenly spaced in normal score (the tails, where the body's spacing would leave one segment to span
    the outermost 1 / knots of the rows: on diamonds' `table` one straight line from 66 to 95 carried the
    top 0.4%, whose real values are all near 66 but one)."""
    body = np.linspace(0.0, 1.0, knots - knots // 2)
    edge = NormalDist().inv_cdf(1 - tail)
    tails = np.array([NormalDist().cdf(s) for s in np.linspace(-edge, edge, knots // 2 + 2)[1:-1]])
    return np.unique(np.concatenate([body, tails]))


def frame_arrays(table: Table, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(numeric values with NaN for missing, category indices with -1 for missing) for `Table.encode`."""
    frame = model_frame(table.columns, frame)
    numeric = np.column_stack(
        [pd.to_numeric(frame[c.name], errors="coerce").to_numpy(dtype=np.float64) for c in table.numeric]
    ).reshape(len(frame), len(table.numeric))
    codes = np.full((len(frame), len(table.discrete)), -1, dtype=np.int64)
    for j, column in enumerate(table.discrete):
        index = table.category_index[j]
        series = frame[column.name]
        present = series.notna().to_numpy()
        keys = [category_key(_plain(v)) for v in series[present].tolist()]
        codes[present, j] = [index.get(k, -1) for k in keys]
    return numeric, codes


# ---- dates and times ----------------------------------------------------------------------------------

# the formats a date, timestamp or time column is recognised in, most specific first (a column may hold
# another with --datetime COL=FORMAT); a trailing UTC offset (Z, +01:00) is read apart (`_zone`)
DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%d-%m-%Y", "%d %b %Y", "%b %d, %Y"]
CLOCK_FORMATS = ["%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p"]
DATETIME_FORMATS = [
    f"{d}{sep}{t}"
    for d in DATE_FORMATS
    for sep in (("T", " ") if d.startswith("%Y-") else (" ",))
    for t in CLOCK_FORMATS
]
TEMPORAL_KINDS = ("date", "datetime", "time")
MIN_PARSED = 0.98  # a column is dates when this share of its cells parse in one format (the rest: gaps)
_ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$")
_SNIFF_ROWS = 200


def _zone(text: pd.Series) -> tuple[pd.Series, str | None]:
    """(the cells without a trailing UTC offset, the most common offset) where ISO cells carry one: times
    are modelled as the data's wall clock and written back with that offset."""
    found = text.str.extract(_ZONE, expand=False)
    if found.notna().mean() < MIN_PARSED:
        return text, None
    return text.str.replace(_ZONE, "", regex=True), str(found.mode().iloc[0])


def _parsed(text: pd.Series, fmt: str) -> pd.Series:
    return pd.to_datetime(text, format=fmt, errors="coerce")


def sniff_format(text: pd.Series) -> str | None:
    """The first known format nearly every cell (MIN_PARSED) parses in, or None: not dates."""
    sample = text.iloc[:_SNIFF_ROWS]
    if not sample.str.contains(r"\d", regex=True).all():
        return None
    for fmt in [*DATETIME_FORMATS, *DATE_FORMATS, *CLOCK_FORMATS]:
        if _parsed(sample, fmt).notna().mean() >= MIN_PARSED and _parsed(text, fmt).notna().mean() >= MIN_PARSED:
            return fmt
    return None


def temporal_seconds(series: pd.Series, column: Column) -> np.ndarray:
    """A date, timestamp or time column's cells -> wall-clock seconds since 1970 (since midnight for a time
    of day), NaN where missing or unreadable."""
    return _seconds(series, column.kind, column.format or "", column.zone)


def _seconds(series: pd.Series, kind: str, fmt: str, zone: str | None) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_localize(None) if series.dt.tz is not None else series
    else:
        text = series.astype("string").str.strip()
        if zone is not None:
            text = text.str.replace(_ZONE, "", regex=True)
        stamps = _parsed(text, fmt.replace("%z", ""))
    seconds = ((stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).astype("float64").to_numpy()
    seconds = np.floor(seconds)
    return np.mod(seconds, DAY) if kind == "time" else seconds


def _temporal(name: str, series: pd.Series, fmt: str | None) -> tuple[Column | None, str]:
    """A column of dates, timestamps or times of day (None: not one), with a note on unreadable cells."""
    present = series.dropna()
    zone = None
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_localize(None) if series.dt.tz is not None else series
        midnight = bool((stamps.dropna() == stamps.dropna().dt.normalize()).all())
        fmt = fmt or ("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M:%S")
    else:
        if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
            return None, ""
        text = present.astype("string").str.strip()
        text, zone = _zone(text)
        fmt = fmt or sniff_format(text)
        if fmt is None:
            return None, ""
        if zone is not None and "%z" not in fmt:
            fmt += "%z"
    clock_only = not any(d in fmt for d in ("%Y", "%y", "%d", "%m", "%b", "%B", "%j"))
    kind = "time" if clock_only else ("datetime" if has_clock(fmt) else "date")
    seconds = _seconds(series, kind, fmt, zone)
    unreadable = int((np.isnan(seconds) & series.notna().to_numpy()).sum())
    if np.isnan(seconds).all():
        raise DataError(f"--datetime names {name!r}, but none of its cells reads as {fmt!r}")
    note = (
        f"column {name!r}: {unreadable} cell(s) that are not {kind}s written as {fmt!r} read as missing"
        if unreadable
        else ""
    )
    x = seconds[~np.isnan(seconds)]
    rate = float(np.isnan(seconds).mean())
    step = next(s for s in (3600, 60, 1) if np.all(np.mod(x, s) == 0)) if kind != "date" else None
    codec = CODECS[kind]
    parts = []
    for i, (part, values) in enumerate(zip(codec.parts, time_parts(x, codec.parts, step or 1), strict=True)):  # type: ignore[attr-defined]
        common = {"name": part_name(name, part), "missing_rate": rate if i == 0 else 0.0}
        if PART_KINDS[part] == "categorical":
            parts.append(Column(kind="categorical", categories=PART_CATEGORIES[part], **common))
        else:
            bounds = {"min": float(values.min()), "max": float(values.max()), "nonnegative": bool(values.min() >= 0)}
            parts.append(Column(kind="integer", encoding="standard", shift=0.0, scale=1.0, **bounds, **common))
    column = Column(
        name=name,
        kind=kind,
        format=fmt,
        zone=zone,
        step=step,
        min=float(x.min()),
        max=float(x.max()),
        missing_rate=rate,
        parts=parts,
    )
    return column, note


def model_frame(columns: list[Column], frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the model sees it: a date's or time's parts in its place (core/codecs.py; all missing
    where the cell is, the model's loss masked by the first part's gap indicator)."""
    out: dict[str, object] = {}
    for column in columns:
        if column.kind not in TEMPORAL_KINDS:
            out[column.name] = frame[column.name]
            continue
        seconds = temporal_seconds(frame[column.name], column)
        codec = CODECS[column.kind]
        for part, values in zip(column.parts or [], time_parts(seconds, codec.parts, column.step or 1), strict=True):  # type: ignore[attr-defined]
            out[part.name] = values
    return pd.DataFrame(out, index=frame.index)
