"""Dates, timestamps and times of day as column kinds (issue 29): a table whose timestamp has a daily and
a weekly cycle and depends on the label, trained with the README's command and no type flags; its
generated rows checked against held-out real rows of the same process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.codecs import codec_of
from core.offline import Sampler
from core.repository import read_manifest
from core.table import RowError, Table
from training.datasets import ReadOptions
from training.tables import fit_encodings, load_table

LABELS = {"lunch": (0.55, 12.5), "dinner": (0.45, 19.5)}  # share, mean hour
STAMP = "%Y-%m-%d %H:%M:%S"


def orders(n: int, seed: int) -> pd.DataFrame:
    """Orders over half a year: the hour of day by label (lunch, dinner), weekends busier for dinner,
    more orders in June; a payment date (day first, 10% missing), an ID and an amount."""
    rng = np.random.default_rng(seed)
    names = list(LABELS)
    label = rng.choice(names, 3 * n, p=[LABELS[k][0] for k in names])
    day = rng.integers(0, 181, 3 * n)
    weekday = (day + 6) % 7  # 2023-01-01 was a Sunday
    month = (np.datetime64("2023-01-01") + day.astype("timedelta64[D]")).astype("datetime64[M]").astype(int) % 12
    weekend = np.where(label == "lunch", 0.7, 1.0)
    keep = rng.random(3 * n) < np.where(weekday >= 5, weekend, 0.55) * np.where(month == 5, 1.0, 0.7)
    label, day = label[keep][:n], day[keep][:n]
    hour = np.clip(rng.normal([LABELS[k][1] for k in label], 1.0), 0, 23.98)
    stamp = np.datetime64("2023-01-01") + day.astype("timedelta64[D]") + (hour * 60).astype("timedelta64[m]")
    stamps = pd.Series(stamp)
    paid = stamps + pd.to_timedelta(rng.integers(0, 4, n), unit="D")
    return pd.DataFrame(
        {
            "order_id": [f"A-{i:06d}" for i in rng.permutation(n)],
            "ordered_at": stamps.dt.strftime(STAMP),
            "amount": np.round(rng.lognormal(np.where(label == "dinner", 3.5, 3.0), 0.4), 2),
            "label": label,
            "paid_on": paid.dt.strftime("%d/%m/%Y").where(rng.random(n) > 0.1, ""),
        }
    )


def tvd(a: pd.Series, b: pd.Series) -> float:
    p, q = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return float(0.5 * p.sub(q, fill_value=0).abs().sum())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The orders table trained as the README trains a table (no type flags)."""
    root = tmp_path_factory.mktemp("dates")
    data = root / "orders.csv"
    orders(10000, seed=1).to_csv(data, index=False)
    cmd = [sys.executable, "-m", "training", "train", "--data", str(data), "--label-column", "label"]
    cmd += ["--conditional", "--name", "orders", "--models-dir", str(root / "models")]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return root


@pytest.mark.slow
def test_dates_are_inferred_and_modelled_as_parts(trained: Path) -> None:
    m = read_manifest(trained / "models" / "orders" / "1")
    kinds = {c.name: (c.kind, c.format) for c in m.columns or []}
    assert kinds["ordered_at"] == ("datetime", STAMP)
    assert kinds["paid_on"] == ("date", "%d/%m/%Y")
    assert "order_id" not in kinds and m.dropped_columns[0].name == "order_id"
    assert "ID" in m.dropped_columns[0].reason
    # a timestamp is seen as its week, weekday, hour and seconds in the hour (60: the data has whole minutes)
    stamp = next(c for c in m.columns if c.name == "ordered_at")
    assert [p.name.split("@")[1] for p in stamp.parts] == ["week", "weekday", "hour", "seconds"]
    assert stamp.step == 60
    # the label stood between amount and paid_on: generated rows put it there
    assert m.label_position == 2
    train = pd.read_csv(trained / "orders.csv").label.value_counts(normalize=True)
    assert m.label_weights is not None and abs(m.label_weights[m.labels.index("lunch")] - train["lunch"]) < 0.02


@pytest.mark.slow
def test_generated_dates_keep_cycles_range_format_and_gaps(trained: Path) -> None:
    """>= 99% parse in the input's format, all within the training range, and the total-variation distance
    of hour of day, day of week and month against held-out real rows each <= 0.05, per label too."""
    out = trained / "synthetic.csv"
    cmd = [sys.executable, "-m", "training", "sample", "orders", "--n", "30000", "--seed", "3", "--out", str(out)]
    subprocess.run([*cmd, "--models-dir", str(trained / "models")], check=True, capture_output=True, timeout=300)
    generated = pd.read_csv(out, dtype=str, keep_default_na=False)
    real = orders(60000, seed=2)
    train = pd.read_csv(trained / "orders.csv", dtype=str, keep_default_na=False)
    # the training table's columns, less the ID training left out, in their order
    assert list(generated.columns) == [c for c in train.columns if c != "order_id"]
    for column, fmt in (("ordered_at", STAMP), ("paid_on", "%d/%m/%Y")):
        present = generated[column][generated[column] != ""]
        made = pd.to_datetime(present, format=fmt, errors="coerce")
        assert made.notna().mean() >= 0.99, column
        seen = pd.to_datetime(train[column][train[column] != ""], format=fmt)
        assert made.min() >= seen.min() and made.max() <= seen.max(), column
        truth = pd.to_datetime(real[column][real[column] != ""], format=fmt)
        made_labels, real_labels = generated.label[present.index], real.label[truth.index]
        for label in [None, *LABELS]:
            g = made if label is None else made[made_labels == label]
            r = truth if label is None else truth[real_labels == label]
            figures = {"day of week": (g.dt.dayofweek, r.dt.dayofweek), "month": (g.dt.month, r.dt.month)}
            if column == "ordered_at":
                figures["hour"] = (g.dt.hour, r.dt.hour)
            for what, (a, b) in figures.items():
                assert tvd(a, b) <= 0.05, f"{column}, {what}, label {label}: TVD {tvd(a, b):.3f}"
    # a gap is a gap like any other: as often as in the data
    assert abs((generated.paid_on == "").mean() - (train.paid_on == "").mean()) < 0.02


@pytest.mark.slow
def test_dates_are_taken_in_rows_and_refused_clearly(trained: Path) -> None:
    model = trained / "models" / "orders" / "1"
    table = Table.of(read_manifest(model))
    row = {"ordered_at": "2023-06-02 12:30:00", "amount": 20.5, "paid_on": None}
    row |= {"label": "lunch", "order_id": "A-000001"}  # the label and the ID: ignored
    numeric, codes = table.parse_rows([row, {**row, "ordered_at": "2023-06-02T12:30:00"}])
    assert np.array_equal(numeric[0], numeric[1], equal_nan=True) and np.array_equal(codes[0], codes[1])  # ISO too
    late = {**row, "ordered_at": "2031-06-02 12:30:00", "paid_on": "03/06/1999"}  # beyond the range: scored
    assert np.isfinite(table.encode(*table.parse_rows([late]))).all()
    with pytest.raises(RowError, match=r"ordered_at.*'%Y-%m-%d %H:%M:%S'.*training range 2023-01-0"):
        table.parse_rows([{**row, "ordered_at": "next tuesday"}])
    # a date's cells come back as they went in (seconds in the hour at the data's minute step)
    stamp = next(c for c in table.columns if c.name == "ordered_at")
    codec = codec_of(stamp)
    parts = np.array([codec.parse("2023-06-02 12:30:00")])
    assert codec.cells(parts) == ["2023-06-02 12:30:00"]
    sampler = Sampler(model)
    block = sampler.block(50, 0, np.random.default_rng(0))
    assert all(isinstance(v, str) for v in sampler.table.values(block.numeric, block.codes, block.missing)[0])


def test_date_formats_are_sniffed(tmp_path: Path) -> None:
    """ISO dates and timestamps with a zone, day-first dates, US dates with a 12-hour clock: each found
    without flags; a column of words is not a date; --datetime COL=FORMAT reads one the sniffing does not."""
    n = 400
    stamps = pd.Series(pd.date_range("2024-01-01", periods=n, freq="7h"))
    frame = pd.DataFrame(
        {
            "iso_zone": stamps.dt.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00",
            "day_first": stamps.dt.strftime("%d.%m.%Y"),
            "us_clock": stamps.dt.strftime("%m/%d/%Y %I:%M %p"),
            "words": np.where(np.arange(n) % 2, "monday", "friday"),
            "compact": stamps.dt.strftime("%Y%m%d%H%M"),
            "x": np.arange(n) * 0.5,
        }
    )
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    ds = load_table(path, None, ReadOptions(datetime=(("compact", "%Y%m%d%H%M"),)))
    kinds = {c.name: (c.kind, c.format, c.zone) for c in ds.columns or []}
    assert kinds["iso_zone"] == ("datetime", "%Y-%m-%dT%H:%M:%S%z", "+01:00")
    assert kinds["day_first"] == ("date", "%d.%m.%Y", None)
    assert kinds["us_clock"] == ("datetime", "%m/%d/%Y %I:%M %p", None)
    assert kinds["words"][0] == "categorical"
    assert kinds["compact"] == ("datetime", "%Y%m%d%H%M", None)
    zoned = codec_of(next(c for c in ds.columns if c.name == "iso_zone"))
    assert zoned.cells(np.array([zoned.parse("2024-01-01T07:00:00+01:00")])) == ["2024-01-01T07:00:00+01:00"]


def test_a_dates_range_is_the_training_splits_and_its_ends_are_not_piled_on(tmp_path: Path) -> None:
    """The range generated dates and times stay in is the training rows' (a value only the test split has is
    never given out), and values drawn past an end come back inside it, not onto the end itself."""
    frame = pd.DataFrame({"at": ["10:50:46", *[f"{h}:{m:02d}:00" for h in range(11, 23) for m in range(0, 60, 7)]]})
    frame["x"] = np.arange(len(frame)) * 0.5
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    columns = load_table(path, None, ReadOptions()).columns
    fitted = fit_encodings(columns, frame.iloc[1:], "quantile")  # the 10:50:46 row is not a training row
    at = next(c for c in fitted if c.name == "at")
    assert at.kind == "time" and at.min == 11 * 3600
    codec = codec_of(at)
    beyond = np.array([[10, 59 * 60], [22, 59 * 60], [11, 0]], dtype=np.float64)  # 10:59, 22:59, 11:00
    assert codec.cells(beyond) == ["11:01:00", "22:53:00", "11:00:00"]  # mirrored at 11:00 and at 22:56
