"""Tables as users hand them over, read through `load_table` as training reads them, from real
files in tmp_path: too few rows, and spreadsheets where a CSV file was meant."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from training import data
from training.datasets import DataError, ReadOptions
from training.tables import from_frame, load_table


def write_rows(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ";") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


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


def write_xlsx(path: Path) -> Path:
    """The parts of an .xlsx that tell it apart (a zip archive with an xl/ folder)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return path


def write_xls(path: Path) -> Path:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))  # an OLE2 compound file's header
    return path


@pytest.mark.parametrize(
    ("name", "write", "what"),
    [
        ("claims.csv", write_xlsx, "an Excel workbook (.xlsx)"),
        ("claims.csv", write_xls, "an Excel 97-2003 workbook (.xls)"),
        ("claims.xlsx", write_xlsx, "an Excel workbook (.xlsx)"),
        ("claims.xls", write_xls, "an Excel 97-2003 workbook (.xls)"),
        ("claims.parquet", write_xlsx, "an Excel workbook (.xlsx)"),
        ("claims.xlsx", lambda p: write_rows(p, ["u"], [[1]]), "a spreadsheet (.xlsx)"),
    ],
    ids=["xlsx-named-csv", "xls-named-csv", "xlsx", "xls", "xlsx-named-parquet", "csv-named-xlsx"],
)
def test_a_spreadsheet_is_refused_with_how_to_export_it_as_csv(tmp_path: Path, name: str, write, what: str) -> None:
    path = write(tmp_path / name)
    with pytest.raises(DataError) as refused:
        data.load(str(path))
    assert str(refused.value).startswith(f"{path}: {what}, not a CSV file")
    assert "Save As > CSV UTF-8" in str(refused.value)


def test_a_zip_archive_that_is_no_workbook_is_told_to_be_unzipped(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "claims.csv", "w") as archive:
        archive.writestr("claims.csv", "u;v\n1;2\n")
    with pytest.raises(DataError, match=r"a zip archive, not a CSV or Parquet file; unzip it"):
        data.load(str(tmp_path / "claims.csv"))
