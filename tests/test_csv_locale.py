"""Tables as users hand them over, read through `load_table` as training reads them, from real
files in tmp_path: too few rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.datasets import DataError, ReadOptions
from training.tables import from_frame, load_table


@pytest.mark.parametrize(
    ("text", "label_column", "message"),
    [
        ("u;v;label\n1,5;2;a\n", None, r"1 data row; training needs at least 40 \(they are split into training"),
        ("u;v;label\n", None, r"no data rows, only the column names; training needs at least 40 rows"),
        ("u;v;label\n", "label", r"no data rows, only the column names"),
        (
            "u;v;label\n" + "".join(f"{i},5;{i};{'a' if i == 3 else ''}\n" for i in range(60)),
            "label",
            r"1 data row with a label in 'label'; training needs at least 40",
        ),
    ],
    ids=["one-row", "header-only", "header-only-labelled", "one-labelled-row"],
)
def test_too_few_rows_are_refused_before_columns_are_typed(
    tmp_path: Path, text: str, label_column: str | None, message: str
) -> None:
    (tmp_path / "small.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / "small.csv", label_column, ReadOptions())


def test_a_frame_without_rows_is_refused_as_a_file_is() -> None:
    import pandas as pd

    with pytest.raises(DataError, match=r"frame: no data rows, only the column names"):
        from_frame(pd.DataFrame({"u": [], "v": []}), "frame", None, ReadOptions())
