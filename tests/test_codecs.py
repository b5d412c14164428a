"""core/codecs.py: a column kind is one codec. `Percent` exists only here: adding it to CODECS is all it takes
for a manifest to accept the kind, for request rows to be parsed with it, and for rows to decode to it in
JSON values, CSV, Arrow and Parquet."""

from __future__ import annotations

import contextlib
import io
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from core.codecs import CODECS, Cell, CellError, Continuous
from core.formats import ARROW, CSV, NDJSON, PARQUET, RowWriter
from core.generation import Block
from core.manifest import Column
from core.table import RowError, Table


class Percent(Continuous):
    """A share written as text, "12.5%": modelled as the number it is, answered as text again."""

    kind: ClassVar[str] = "percent"

    def parse(self, value: Cell) -> float:
        if isinstance(value, str) and value.endswith("%"):
            with contextlib.suppress(ValueError):  # not a number: refused below, as any cell the column cannot take
                value = float(value[:-1])
        return super().parse(value)

    def cells(self, values: np.ndarray) -> list[Cell]:
        return [f"{v:g}%" for v in values.tolist()]

    def takes(self) -> str:
        return f"a percentage such as '12.5%' (training range {self.column.min:g}% to {self.column.max:g}%)"

    def arrow_type(self, pa: Any) -> Any:
        return pa.string()

    def arrow_array(self, pa: Any, values: np.ndarray, mask: np.ndarray | None, kind: Any) -> Any:
        return pa.array(self.cells(values), type=kind, mask=mask)


SCHEMA = [
    {"name": "share", "kind": "percent", "missing_rate": 0.1, "min": 0.0, "max": 100.0, "decimals": 1}
    | {"encoding": "standard", "shift": 50.0, "scale": 25.0},
    {"name": "colour", "kind": "categorical", "categories": ["red", "blue"]},
]


@pytest.fixture
def percent(monkeypatch: pytest.MonkeyPatch) -> Table:
    monkeypatch.setitem(CODECS, "percent", Percent)
    return Table([Column(**c) for c in SCHEMA])


def test_a_kind_no_codec_knows_is_refused_by_the_manifest() -> None:
    with pytest.raises(ValidationError, match=r"unknown column kind 'percent'; known: \['boolean', 'categorical'"):
        Column(**SCHEMA[0])


def test_a_new_kind_parses_its_cells_with_gaps_handled_as_for_every_kind(percent: Table) -> None:
    numeric, codes = percent.parse_rows([["12.5%", "red"], [40, "blue"], {"share": None, "colour": "red"}])
    assert numeric[:2, 0].tolist() == [12.5, 40.0] and np.isnan(numeric[2, 0])
    encoded = percent.encode(numeric, codes)
    assert encoded[:, 0] == pytest.approx([-1.5, -0.4, 0.0]) and encoded[:, -1].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(RowError) as refused:
        percent.parse_rows([["a lot%", "red"]])
    assert str(refused.value) == (
        "row 0, column 'share' holds 'a lot%'; it takes a percentage such as '12.5%' (training range 0% to 100%), "
        "or null"
    )
    assert refused.value.details["row"] == 0 and refused.value.details["column"] == "share"
    with pytest.raises(CellError):
        percent.codecs[0].parse(True)


def test_a_new_kind_decodes_to_its_own_values_in_every_format(percent: Table) -> None:
    z = np.array([[-1.5], [0.0], [9.0]])
    values = percent.from_scale(z)  # the numeric block's encoding, bounds and decimals: shared by numeric kinds
    assert values[:, 0].tolist() == [12.5, 50.0, 100.0]
    block = Block(values, np.array([[0], [1], [0]]), np.array([[False], [False], [True]]))
    assert percent.values(block.numeric, block.codes, block.missing) == [
        ["12.5%", "50%", None],
        ["red", "blue", "red"],
    ]

    def written(media_type: str) -> bytes:
        writer = RowWriter(media_type, percent.names, percent)
        return writer.write([block]) + writer.close()

    assert written(CSV).decode() == 'share,colour\n"12.5%","red"\n"50%","blue"\n,"red"\n'
    assert written(NDJSON).splitlines()[0] == b'{"share":"12.5%","colour":"red"}'
    arrow = pa.ipc.open_stream(written(ARROW)).read_all()
    assert arrow.schema.field("share").type == pa.string()
    assert arrow.column("share").to_pylist() == ["12.5%", "50%", None]
    parquet = pq.read_table(io.BytesIO(written(PARQUET)))
    assert parquet.to_pandas()["share"].tolist() == ["12.5%", "50%", None]
