"""Tables as other locales and other programs write them: semicolons and decimal commas, numbers
that stay text (units, thousands separators, mixed decimal marks), too few rows, and spreadsheets
where a CSV file was meant. Real files in tmp_path, read through `load_table` as training reads them."""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.repository import read_manifest
from tests.conftest import run_python
from training import data
from training.datasets import DataError, ReadOptions
from training.tables import from_frame, load_table

CLAIM_LABELS = ["fraud", "review", "routine"]


def comma_decimal(value: float, decimals: int) -> str:
    """A number as a decimal-comma locale writes it without grouping: 1234.5 -> "1234,50"."""
    return f"{value:.{decimals}f}".replace(".", ",")


def write_claims_csv(path: Path, rows: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """An insurance-claims export from a decimal-comma locale: ';' between cells, "1234,56" amounts.
    Returns the numeric columns as written, to check what was read against."""
    rng = np.random.default_rng(seed)
    label = rng.choice(CLAIM_LABELS, size=rows, p=[0.1, 0.3, 0.6])
    amount = np.round(np.exp(rng.normal(6.5, 1.2, rows)) * (1 + 2 * (label == "fraud")), 2)  # heavy right tail
    fault = np.round(rng.uniform(0, 100, rows) * 2) / 2  # halves: "37,5"
    n_prior = np.where(rng.random(rows) < 0.55, 0, rng.negative_binomial(2, 0.15, rows))
    words = ["rear-ended", "at a junction", "parked car", "hail", "windscreen", "theft", "late at night", "witness"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(
            ["claim_id", "claim_date", "region", "police_report", "n_prior", "amount", "fault_pct", "comment", "label"]
        )
        for i in range(rows):
            writer.writerow(
                [
                    f"CL-{100_000 + i}",
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    "" if rng.random() < 0.07 else rng.choice(["Nord", "Süd", "Ost", "West", "Mitte"]),
                    "true" if rng.random() < 0.3 + 0.4 * (label[i] == "fraud") else "false",
                    n_prior[i],
                    comma_decimal(amount[i], 2),
                    comma_decimal(fault[i], 1),
                    f"claim {i}: {' '.join(rng.choice(words, size=3))}, reported by phone",
                    label[i],
                ]
            )
    return {"amount": amount, "fault_pct": fault, "n_prior": n_prior}


def write_rows(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ";") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_claims_csv_with_semicolons_and_decimal_commas_reads_its_numbers_as_numbers(tmp_path: Path) -> None:
    written = write_claims_csv(tmp_path / "claims.csv")
    ds = load_table(tmp_path / "claims.csv", "label", ReadOptions())
    columns = {c.name: c for c in ds.columns}
    for name in ("amount", "fault_pct"):
        assert columns[name].kind == "continuous", columns[name]
        # the comma is the decimal mark: "1234,56" is 1234.56, not 123456 or text
        assert columns[name].min == pytest.approx(written[name].min())
        assert columns[name].max == pytest.approx(written[name].max())
        assert ds.frame[name].to_numpy() == pytest.approx(written[name])
    assert columns["n_prior"].kind == "integer" and columns["n_prior"].min == 0
    assert columns["region"].kind == "categorical" and columns["region"].missing_rate > 0.03
    assert columns["police_report"].kind == "boolean"
    assert "claim_id" not in columns and "comment" not in columns
    assert any("'claim_id' left out" in w for w in ds.warnings)
    assert any("'comment' left out" in w for w in ds.warnings)
    assert not any("look like numbers" in w for w in ds.warnings), ds.warnings
    assert ds.labels == CLAIM_LABELS and len(ds) == 2000


def test_grouped_thousands_with_a_decimal_comma_read_as_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = np.round(rng.uniform(1_000, 2_000_000, 200), 2)
    rows = [
        [
            f"{v:,.2f}".replace(",", " ").replace(".", ","),
            f"{v:,.2f}".replace(",", "X").replace(".", ",").replace("X", "."),
        ]
        for v in values
    ]
    path = write_rows(tmp_path / "grouped.csv", ["spaced", "dotted"], rows)  # "1 234,56" and "1.234,56"
    ds = load_table(path, None, ReadOptions())
    for name in ("spaced", "dotted"):
        assert ds.frame[name].to_numpy() == pytest.approx(values), name


def test_decimal_commas_are_sniffed_only_when_no_column_writes_a_decimal_point(tmp_path: Path) -> None:
    rows = [[comma_decimal(i + 0.25, 2), f"{i * 0.5 + 0.1:.1f}", f"0.{100 + i}"] for i in range(100)]
    path = write_rows(tmp_path / "both.csv", ["commas", "points", "rates"], rows)
    sniffed = load_table(path, None, ReadOptions())
    assert [c.name for c in sniffed.columns] == ["points", "rates"]  # the readings conflict: points win, said so
    assert any("'commas'" in w and "decimal comma (e.g. '0,25'" in w and "--decimal ," in w for w in sniffed.warnings)
    # told the decimal mark, each column reads: "0,25" as the option says, "0.1" as it can only be meant
    chosen = load_table(path, None, ReadOptions(decimal=","))
    assert [c.kind for c in chosen.columns] == ["continuous"] * 3
    assert chosen.frame["commas"].max() == pytest.approx(99.25)
    assert chosen.frame["points"].max() == pytest.approx(49.6)
    assert chosen.frame["rates"].max() == pytest.approx(0.199)  # "0.199" has no thousands in it
    assert not any("look like numbers" in w or "not numbers" in w for w in chosen.warnings), chosen.warnings


def test_a_comma_delimited_csv_keeps_decimal_points_and_commas_inside_quoted_text(tmp_path: Path) -> None:
    rows = [[f"{i * 1.5 + 0.25}", f"note {i}, written by hand, {'yes' if i % 2 else 'no'}", i % 3] for i in range(80)]
    path = write_rows(tmp_path / "plain.csv", ["amount", "note", "group"], rows, delimiter=",")
    ds = load_table(path, None, ReadOptions())
    assert ds.frame["amount"].to_numpy() == pytest.approx([i * 1.5 + 0.25 for i in range(80)])
    assert {c.name: c.kind for c in ds.columns} == {"amount": "continuous", "group": "categorical"}
    assert any("'note' left out" in w for w in ds.warnings)
    # a comma file's decimal commas come quoted, and only --decimal , reads them (with the quoted text intact)
    rows = [[comma_decimal(i * 1.5 + 0.25, 2), f"note {i}, by hand"] for i in range(80)]
    path = write_rows(tmp_path / "quoted.csv", ["amount", "note"], rows, delimiter=",")
    with pytest.raises(DataError, match=r"'amount' left out: .*decimal comma \(e.g. '0,25'.*pass --decimal ,"):
        load_table(path, None, ReadOptions())
    ds = load_table(path, None, ReadOptions(decimal=","))
    assert ds.frame["amount"].to_numpy() == pytest.approx([i * 1.5 + 0.25 for i in range(80)])
    assert [c.name for c in ds.columns] == ["amount"]


@pytest.mark.parametrize(
    ("cell", "read", "message"),
    [
        (  # the same column written two ways: neither reading takes it
            lambda i: comma_decimal(i + 0.5, 1) if i % 2 else f"{i + 0.5}",
            ReadOptions(),
            r"'weight' left out: .*some with a decimal comma \(e.g. '1,5', .*and some with a decimal point "
            r"\(e.g. '0.5', .*write them all one way",
        ),
        (
            lambda i: f"{i % 30 + 1} kg",
            ReadOptions(),
            r"'weight' read as 30 categories, not as numbers: .*unit or symbol \(e.g. '1 kg', '2 kg', '3 kg'\): "
            r"write the number alone",
        ),
        (
            lambda i: f"{1_000_000 + i * 1_234:,}",
            ReadOptions(),
            r"'weight' left out: .*thousands separators \(e.g. '1,000,000', .*write them without",
        ),
        (lambda i: comma_decimal(i + 0.5, 1), ReadOptions(decimal="."), r"'weight' left out: .*pass --decimal ,"),
    ],
    ids=["mixed-decimal-marks", "units", "thousands-separators", "decimal-comma-read-with-points"],
)
def test_numbers_read_as_text_are_named_with_examples_and_the_fix(tmp_path: Path, cell, read, message) -> None:
    rows = [[i + 0.25, cell(i)] for i in range(120)]
    ds = load_table(write_rows(tmp_path / "d.csv", ["u", "weight"], rows), None, read)
    assert "weight" not in [c.name for c in ds.columns if c.numeric]
    assert any(re.search(message, w) for w in ds.warnings), ds.warnings


def test_text_that_only_starts_with_digits_gets_no_numbers_warning(tmp_path: Path) -> None:
    rows = [[i + 0.25, f"2024-03-{1 + i % 28:02d}", f"{i % 4 + 1}th floor, room {i}"] for i in range(120)]
    ds = load_table(write_rows(tmp_path / "d.csv", ["u", "day", "where"], rows), None, ReadOptions())
    assert not any("look like numbers" in w for w in ds.warnings), ds.warnings


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


def test_cli_passes_decimal_on_and_refuses_a_spreadsheet(tmp_path: Path) -> None:
    """The command line, before any training: --decimal reaches the reader, a workbook exits 2 and writes nothing."""
    write_claims_csv(tmp_path / "claims.csv", rows=200)
    args = ["-m", "training", "train", "--label-column", "label", "--name", "c", "--models-dir", str(tmp_path / "m")]
    points = run_python(*args, "--data", str(tmp_path / "claims.csv"), "--decimal", ".", "--columns", "amount,region")
    assert points.returncode == 2, points.stderr[-2000:]
    assert "'amount' left out" in points.stderr and "pass --decimal ," in points.stderr
    workbook = run_python(*args, "--data", str(write_xlsx(tmp_path / "claims.xlsx")))
    assert workbook.returncode == 2 and "an Excel workbook (.xlsx), not a CSV file" in workbook.stderr
    assert not (tmp_path / "m").exists()


def test_cli_trains_on_the_claims_csv_as_written(tmp_path: Path) -> None:
    """End to end with no option about the locale: the model's stored columns hold the amounts as numbers."""
    written = write_claims_csv(tmp_path / "claims.csv")
    args = ["--data", str(tmp_path / "claims.csv"), "--label-column", "label", "--conditional", "--name", "claims"]
    quick = ["--epochs", "3", "--hidden", "16", "--no-quality-report", "--formats", "onnx"]
    result = run_python("-m", "training", "train", *args, *quick, "--models-dir", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr[-3000:]
    columns = {c.name: c for c in read_manifest(tmp_path / "m" / "claims" / "1").columns}
    assert columns["amount"].kind == "continuous" and columns["amount"].max == pytest.approx(written["amount"].max())
    assert columns["fault_pct"].kind == "continuous" and columns["fault_pct"].decimals == 1
    assert "claim_id" not in columns and "comment" not in columns
