"""Rows as bytes.

A `RowWriter` turns blocks into the bytes of one format, a part at a time: NDJSON (one object
per row, keyed by column), CSV (a header row first), an Arrow IPC stream (a record batch per
part) or Parquet (a row group per part, the footer at the end). Values are those of the JSON
answer: integers as integers, categories as in the data, null (an empty CSV field) where missing.
NDJSON rows of a model without a column schema (images) are arrays in feature order.

A text cell that a spreadsheet would run as a formula (one that begins with `=`, `+`, `-`, `@`, a
tab or a carriage return and is not a plain number) is written to CSV with a single quote before it
(`csv_text`, OWASP's advice against CSV injection): `=HYPERLINK(...)` reads `'=HYPERLINK(...)`,
shown as text; `-2` stays a number. JSON, Arrow and Parquet carry values as they are.

`negotiate` is the one reading of an Accept header, by q-values: each endpoint that chooses a
representation passes its own offers (`row_format` those of a stream of rows).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from core.errors import NotAcceptable
from core.generation import BLOCK_ROWS, Block
from core.table import Table

JSON = "application/json"

NDJSON = "application/x-ndjson"

CSV = "text/csv"

ARROW = "application/vnd.apache.arrow.stream"

PARQUET = "application/vnd.apache.parquet"

# media types asked for -> the format answered (the first of each group is the one answered)
_ACCEPTED = {
    NDJSON: NDJSON,
    "application/jsonl": NDJSON,
    "application/json-lines": NDJSON,
    CSV: CSV,
    ARROW: ARROW,
    PARQUET: PARQUET,
    "application/x-parquet": PARQUET,
}

MEDIA_TYPES = [NDJSON, CSV, ARROW, PARQUET]

PARQUET_GROUP_CELLS = 1 << 20  # cells in one Parquet row group: 64 blocks of up to 16 columns

SUFFIXES = {".ndjson": NDJSON, ".jsonl": NDJSON, ".csv": CSV, ".arrow": ARROW, ".arrows": ARROW, ".parquet": PARQUET}


# A spreadsheet (Excel, LibreOffice, Google Sheets) runs a cell that begins with one of these
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_IS_PLAIN_NUMBER = re.compile(_PLAIN_NUMBER.replace("$", r"\Z"), re.ASCII).match  # as RE2 reads _PLAIN_NUMBER


def csv_text(value: str) -> str:
    """A text cell as CSV writes it: one a spreadsheet would run as a formula (it begins with
    FORMULA_STARTS and is not a plain number such as `-2.5`) behind a single quote."""
    if value.startswith(FORMULA_STARTS) and not _IS_PLAIN_NUMBER(value):
        return "'" + value
    return value


def csv_cell(value: Any) -> Any:
    """A cell for `csv.writer`: text through `csv_text`, booleans as true/false, None empty."""
    if value.__class__ is str:
        return csv_text(value)
    if value.__class__ is bool:
        return "true" if value else "false"
    return value


def csv_header(names: Sequence[str]) -> bytes:
    """The header row of every CSV answer (its names through `csv_text`)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([csv_text(str(name)) for name in names])
    return text.getvalue().encode()


def media_ranges(accept: str | None) -> list[tuple[str, float]]:
    """An Accept header's media ranges as listed: (`type/subtype` lower-cased, q). Parameters
    other than q are dropped; a q that is not a number from 0 to 1 counts as 0."""
    ranges = []
    for part in (accept or "").split(","):
        media_range, *params = (p.strip().lower() for p in part.split(";"))
        if not media_range:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # NaN too
                    q = 0.0
        ranges.append((media_range, q))
    return ranges


def negotiate(accept: str | None, offers: Sequence[str], default: str | None = None) -> str:
    """The offer an Accept header prefers (RFC 9110): each offer takes the q of the most specific
    range that matches it (`type/subtype`, then `type/*`, then `*/*`); q=0 is not acceptable;
    the highest q wins, among equals the offer whose range is listed first, then the first offer.
    No header (or an empty one) takes the first offer. When no offer is acceptable: `default`,
    or NotAcceptable when there is none."""
    if not accept:
        return offers[0]
    ranges = media_ranges(accept)
    best: tuple[float, int, int] | None = None  # (q, -position in the header, -position in offers)
    for j, offer in enumerate(offers):
        wildcard = offer.split("/")[0] + "/*"
        match: tuple[int, float, int] | None = None  # (specificity, q, -position)
        for i, (media_range, q) in enumerate(ranges):
            specificity = 2 if media_range == offer else 1 if media_range == wildcard else 0
            if specificity or media_range == "*/*":
                match = max(match or (specificity, q, -i), (specificity, q, -i))
        if match is not None and match[1] > 0:
            best = max(best or (match[1], match[2], -j), (match[1], match[2], -j))
    if best is not None:
        return offers[-best[2]]
    if default is not None:
        return default
    raise NotAcceptable(f"the answer is one of {list(offers)}; Accept asked for {accept!r}")


def row_format(accept: str | None) -> str:
    """The format of a stream of rows an Accept header asks for, by `negotiate`: NDJSON when it
    names none of ours but accepts anything, CSV for `text/*`."""
    try:
        return _ACCEPTED[negotiate(accept, list(_ACCEPTED))]
    except NotAcceptable:
        raise NotAcceptable(
            f"a stream of rows is answered as one of {MEDIA_TYPES}; Accept asked for {accept!r}"
        ) from None


class RowWriter:
    """Blocks -> bytes of one format, a part at a time: `write` each group of blocks, then `close`."""

    def __init__(self, media_type: str, names: Sequence[str], table: Table | None, labelled: bool = False) -> None:
        """`names`: a model without a column schema's features (a table's columns come from `table`, with
        its label column where `labelled`: the blocks carry their rows' labels)."""
        self.media_type = media_type
        self.table = table
        self.labelled = labelled and table is not None and table.label is not None
        self.names = table.output_names(self.labelled) if table is not None else list(names)
        self.codecs = table.output_codecs(self.labelled) if table is not None else []
        self._started = False
        self._rows = 0  # rows written: the next block's place in the answer (regenerated IDs count from it)
        self._sink = io.BytesIO()
        self._writer: Any = None
        self._formula_columns: list[int] | None = None  # CSV: the text columns csv_text applies to
        if media_type != NDJSON:
            import pyarrow as pa

            self._pa = pa
            types = self._types()
            self.schema = pa.schema(list(zip(self.names, types, strict=True)), metadata=self._pandas_metadata(types))

    @property
    def part_rows(self) -> int:
        """Rows written at once: a Parquet row group of up to 64 blocks and PARQUET_GROUP_CELLS cells
        (smaller groups bloat the file and slow its readers; larger ones are what a slow reader
        holds in the server's memory: 64 blocks of a 64-feature model are 20 MiB), one block for
        the other formats."""
        if self.media_type != PARQUET:
            return BLOCK_ROWS
        return max(1, min(64, PARQUET_GROUP_CELLS // (BLOCK_ROWS * max(1, len(self.names))))) * BLOCK_ROWS

    @property
    def threaded(self) -> bool:
        return self.media_type == PARQUET

    @property
    def content_type(self) -> str:
        return f"{CSV}; charset=utf-8" if self.media_type == CSV else self.media_type

    def write(self, blocks: Sequence[Block]) -> bytes:
        if self.media_type == NDJSON:
            return self._ndjson(Block.join(blocks))
        batch = self._record_batch(Block.join(blocks))
        if self.media_type == CSV:
            return self._csv(batch)
        if self._writer is None:
            if self.media_type == ARROW:
                self._writer = self._pa.ipc.new_stream(self._sink, self.schema)
            else:
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self._sink, self.schema, compression="snappy")
        if self.media_type == ARROW:
            self._writer.write_batch(batch)
        else:
            self._writer.write_table(self._pa.Table.from_batches([batch]))
        return self._drain()

    def close(self) -> bytes:
        """The format's ending (Arrow's end-of-stream marker, Parquet's footer); for a stream of no
        rows, a complete empty file."""
        if self.media_type == CSV and not self._started:
            return self._csv_header()
        if self.media_type in (ARROW, PARQUET):
            if self._writer is None:
                self.write([self._empty()])
            self._writer.close()
            return self._drain()
        return b""

    # ---- formats ----

    def _drain(self) -> bytes:
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data

    def _csv_header(self) -> bytes:
        self._started = True
        return csv_header(self.names)

    def _csv(self, batch: Any) -> bytes:
        import pyarrow.csv as pacsv

        header = b"" if self._started else self._csv_header()
        if self._formula_columns is None:
            self._formula_columns = self._text_columns(batch.schema)
        for i in self._formula_columns:
            batch = batch.set_column(i, batch.schema.field(i), self._csv_texts(batch.column(i)))
        sink = io.BytesIO()
        pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        return header + sink.getvalue()

    def _text_columns(self, schema: Any) -> list[int]:
        """The text columns whose cells may begin like a formula: those whose values are known
        (categories, a constant) and hold one, and any other text column."""
        pa, found = self._pa, []
        for i, field in enumerate(schema):
            if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                continue
            known = self.codecs[i].known_values() if self.table is not None else None
            if known is None or any(isinstance(v, str) and csv_text(v) != v for v in known):
                found.append(i)
        return found

    def _csv_texts(self, array: Any) -> Any:
        """`csv_text` over an Arrow text array, vectorised (nulls stay null)."""
        import pyarrow.compute as pc

        risky = pc.and_(
            pc.match_substring_regex(array, _FORMULA_START), pc.invert(pc.match_substring_regex(array, _PLAIN_NUMBER))
        )
        return pc.if_else(risky, pc.binary_join_element_wise("'", array, ""), array)

    def _ndjson(self, block: Block) -> bytes:
        if self.table is None:
            # a model without a column schema: one array per row, in feature order, float32 in its
            # shortest form as /generate writes it; encoded whole by orjson, then cut into lines
            if len(block) == 0:
                return b""
            whole = orjson.dumps(
                np.ascontiguousarray(block.numeric, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY
            )
            return whole[1:-1].replace(b"],[", b"]\n[") + b"\n"
        names, dumps = self.names, orjson.dumps
        labels = block.labels if self.labelled else None
        first = self._rows
        self._rows += len(block)
        rows = zip(*self.table.values(block.numeric, block.codes, block.missing, labels, first), strict=True)
        return b"".join([dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_APPEND_NEWLINE) for row in rows])

    def _types(self) -> list[Any]:
        pa = self._pa
        if self.table is None:
            return [pa.float32()] * len(self.names)
        return [codec.arrow_type(pa) for codec in self.codecs]

    def _pandas_metadata(self, types: list[Any]) -> dict[bytes, bytes] | None:
        """pandas reads an integer column with gaps as its nullable Int64 (not as float64) when the
        schema's pandas metadata names that dtype: pyarrow's `to_pandas` follows it."""
        if self.table is None:
            return None
        columns = []
        for codec, t in zip(self.codecs, types, strict=True):
            numpy_type = codec.numpy_type(t, self._pa)
            columns.append(
                {
                    "name": codec.column.name,
                    "field_name": codec.column.name,
                    "pandas_type": "int64" if numpy_type == "Int64" else "mixed",
                    "metadata": None,
                    "numpy_type": numpy_type,
                }
            )
        pandas = {"index_columns": [], "column_indexes": [], "columns": columns, "pandas_version": "2.2.0"}
        return {b"pandas": orjson.dumps(pandas)}

    def _empty(self) -> Block:
        if self.table is None:
            return Block(np.zeros((0, len(self.names))))
        table, labels = self.table, np.zeros(0, np.int64) if self.labelled else None
        discrete, gaps = np.zeros((0, len(table.discrete)), np.int64), np.zeros((0, len(table.gapped)), bool)
        return Block(np.zeros((0, len(table.numeric))), discrete, gaps, labels)

    def _record_batch(self, block: Block) -> Any:
        pa = self._pa
        if self.table is None:
            numeric = np.asarray(block.numeric, dtype=np.float32)
            return pa.record_batch([pa.array(numeric[:, j]) for j in range(numeric.shape[1])], schema=self.schema)
        table, first = self.table, self._rows
        self._rows += len(block)
        columns = [
            (codec, values, table.gap_mask(codec.column.name, block.missing))
            for codec, values in zip(table.codecs, table.column_values(block.numeric, block.codes), strict=True)
        ]
        label = (table.label.codec, block.labels, None) if self.labelled and table.label is not None else None
        columns = table.arrange(
            self.labelled, columns, label, lambda codec: (codec, np.arange(first, first + len(block)), None)
        )
        arrays = [
            codec.arrow_array(pa, values, mask, field.type)
            for (codec, values, mask), field in zip(columns, self.schema, strict=True)
        ]
        return pa.record_batch(arrays, schema=self.schema)
