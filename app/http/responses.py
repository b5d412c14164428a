"""Response encoding: JSON straight from numpy arrays, and raw .npy for large samples."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from fastapi.responses import Response

from core.formats import csv_cell, csv_header

NPY_MEDIA_TYPE = "application/x-npy"
CSV_MEDIA_TYPE = "text/csv"


def encode_json(content: Any) -> bytes:
    """orjson writes numpy arrays without a detour through Python lists, and float32 values in
    their shortest form ("0.25", not "0.25000000372529"); other arrays fall back to lists."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class ArrayJSONResponse(Response):
    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, **kwargs: Any) -> None:
        if kwargs:
            super().__init__(content, status_code, **kwargs)
            return
        # the usual answer: its two headers as Response.init_headers writes them, without its checks
        self.status_code = status_code
        self.background = None
        self.body = encode_json(content)
        self.raw_headers = [(b"content-length", str(len(self.body)).encode()), (b"content-type", b"application/json")]

    def render(self, content: Any) -> bytes:
        return encode_json(content)


class NpyResponse(Response):
    """A float32 array in NumPy's .npy format: `np.load(io.BytesIO(response.content))`."""

    media_type = NPY_MEDIA_TYPE

    def render(self, content: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(content, dtype=np.float32), allow_pickle=False)
        return buffer.getvalue()


class CsvResponse(Response):
    """Rows as CSV with a header row; a missing value (None) is an empty field, a boolean true or
    false, a text cell that would run as a formula in a spreadsheet behind a quote (`csv_cell`)."""

    media_type = "text/csv; charset=utf-8"

    def __init__(self, header: Sequence[str], rows: Any, **kwargs: Any) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if isinstance(rows, np.ndarray):  # float32 in its shortest form, as the JSON answer writes it
            writer.writerows(rows.astype(str).tolist())
        else:
            writer.writerows([csv_cell(v) for v in row] for row in rows)
        super().__init__(csv_header(header) + buffer.getvalue().encode(), **kwargs)
