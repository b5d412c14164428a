"""training/quality.py's report on real rows standing in for synthetic ones: each figure must move
the way it claims (copies, shuffled labels, out-of-range values, gaps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.manifest import REFERENCE_QUANTILES
from training.quality import Schema, quality_report, reference, report_counts, schema_of


def penguins_like(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Gentoo", "Chinstrap"], size=rows)
    offset = pd.Series(species).map({"Adelie": 0.0, "Gentoo": 3.0, "Chinstrap": 6.0}).to_numpy()
    mass = np.round(3500 + 300 * offset + 200 * rng.normal(size=rows), 3)
    bill = 40 + offset + rng.normal(size=rows)
    bill[rng.random(rows) < 0.1] = np.nan  # gaps
    island = np.where(offset > 2, "Biscoe", rng.choice(["Dream", "Torgersen"], size=rows))
    return pd.DataFrame({"bill": bill, "mass": mass, "island": island, "species": species})


SCHEMA = Schema(["bill", "mass"], ["island"], "species")


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, test, fresh rows from the same distribution: a perfect generator's output)."""
    return penguins_like(600, 0), penguins_like(200, 1), penguins_like(600, 2)


def test_fresh_rows_from_the_same_distribution_score_high_and_private(splits) -> None:
    train, test, fresh = splits
    report = quality_report(train, test, fresh, SCHEMA)
    assert report["quality"] > 0.85 and report["label_shapes"] > 0.8 and report["validity"] > 0.97
    assert report["tstr_auc"] > 0.95 and report["label_faithfulness"] > 0.9
    assert set(report["label_faithfulness_by_label"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert 0.4 <= report["nearer_to_train_share"] <= 0.6  # as near to the training rows as to unseen ones
    assert report["exact_copies"] == 0 and report["rows"] == 600


def test_copies_of_the_training_rows_are_counted_and_sit_nearer_to_training(splits) -> None:
    train, test, _ = splits
    report = quality_report(train, test, train.iloc[:300], SCHEMA)
    assert report["exact_copies"] == 300
    assert report["nearer_to_train_share"] > 0.6  # half of them lie in the sample of the training split


def test_rows_under_the_wrong_label_lose_faithfulness_and_tstr(splits) -> None:
    train, test, fresh = splits
    shuffled = fresh.assign(species=np.random.default_rng(3).permutation(fresh["species"].to_numpy()))
    report = quality_report(train, test, shuffled, SCHEMA)
    assert report["label_faithfulness"] < 0.5 and report["tstr_auc"] < 0.7
    assert report["label_shapes"] < quality_report(train, test, fresh, SCHEMA)["label_shapes"]


def test_values_outside_the_training_bounds_or_categories_are_invalid(splits) -> None:
    train, test, fresh = splits
    broken = fresh.copy()
    broken.loc[:99, "mass"] = 1e6
    broken.loc[100:149, "island"] = "Atlantis"
    assert quality_report(train, test, broken, SCHEMA)["validity"] == pytest.approx(1 - 150 / 600, abs=0.03)


def test_an_unconditional_report_has_no_label_figures(splits) -> None:
    train, test, fresh = splits
    report = quality_report(train, test, fresh, Schema(["bill", "mass"], ["island"]))
    assert "tstr_auc" not in report and "label_shapes" not in report and "quality" in report


def test_report_counts_follow_the_training_labels_and_cap_the_total() -> None:
    y = np.array([0] * 30 + [1] * 10 + [2] * 0)
    assert report_counts(y, 3, len(y)) == [30, 10, 0]
    assert sum(report_counts(np.zeros(50_000, dtype=int), 2, 50_000)) == 10_000
    assert report_counts(None, 0, 123) == [123]


def test_schema_from_an_array_model_is_all_numeric() -> None:
    assert schema_of(None, ["a", "b"], "label") == Schema(["a", "b"], [], "label")


def test_pair_trends_on_real_bins_are_not_moved_by_rows_at_the_extremes(splits) -> None:
    """SDMetrics 0.32 bins each table over its own range: a few rows far out squeeze every other
    row of the synthetic table into one bin. Cut on the real table's bins, they cost only themselves."""
    from training.quality import sdmetrics_quality

    _, test, fresh = splits
    far = fresh.copy()
    far.loc[:5, "mass"] = far["mass"].max() * 4  # 6 rows of 600
    schema = Schema(["mass"], ["island"], "species")  # pairs with a category only: contingencies of bins
    test, fresh, far = (t.drop(columns="bill") for t in (test, fresh, far))
    clean, stretched = sdmetrics_quality(test, fresh, schema), sdmetrics_quality(test, far, schema)
    assert clean["column_pair_trends_real_bins"] > 0.85
    assert stretched["column_pair_trends"] < clean["column_pair_trends"] - 0.1
    assert stretched["column_pair_trends_real_bins"] > clean["column_pair_trends_real_bins"] - 0.02
    assert stretched["quality_real_bins"] == pytest.approx(
        (stretched["column_shapes"] + stretched["column_pair_trends_real_bins"]) / 2
    )


def test_a_reference_gives_the_shares_of_all_rows_and_the_present_values_quantiles() -> None:
    numeric = np.array([[1.0], [np.nan], [3.0], [5.0]])
    codes = np.array([[0], [1], [-1], [1]])
    found = reference(numeric, ["bill"], codes, {"island": ["Dream", "Biscoe"]})
    assert found.rows == 4
    bill, island = found.columns["bill"], found.columns["island"]
    assert bill.missing == 0.25 and bill.shares is None
    assert len(bill.quantiles) == REFERENCE_QUANTILES + 1 and bill.quantiles[::20] == [1.0, 3.0, 5.0]
    assert island.missing == 0.25 and island.quantiles is None and island.shares == {"Dream": 0.25, "Biscoe": 0.5}
    # a column with no value in these rows: all missing, nothing to draw
    empty = reference(np.full((2, 1), np.nan), ["bill"], np.zeros((2, 0), dtype=np.int64), {})
    assert empty.columns["bill"].missing == 1 and empty.columns["bill"].quantiles is None


def orders_like(rows: int, seed: int, hours_later: int = 0) -> pd.DataFrame:
    """Orders of 2015 with their date and time of day: lunch and dinner peaks, busier Fridays, pizzas
    of the "late" kind after 18:00."""
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    days = days.where((days.dayofweek != 4) | (rng.random(rows) < 0.9), days + pd.Timedelta(days=1))
    hour = np.where(rng.random(rows) < 0.4, rng.normal(12.5, 1, rows), rng.normal(18.5, 1.5, rows)).clip(11, 22)
    clock = pd.to_timedelta(np.floor(hour * 3600) + 3600 * hours_later, unit="s") % pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "time": (pd.Timestamp("2015-01-01") + clock).strftime("%H:%M:%S"),
            "price": np.round(rng.uniform(9, 36, rows), 2),
            "kind": np.where(hour >= 18, "late", "early"),
        }
    )


def test_calendar_distances_are_small_for_rows_like_the_real_ones_and_grow_with_a_shifted_clock() -> None:
    from training.datasets import ReadOptions
    from training.tables import infer_columns

    train, test, fresh = orders_like(1000, 0), orders_like(400, 1), orders_like(1000, 2)
    columns, _, _ = infer_columns(train.drop(columns="kind"), ReadOptions())
    schema = schema_of(columns, ["date", "time", "price"], "kind")
    assert schema.temporal["date"].kind == "date" and schema.temporal["time"].kind == "time"
    report = quality_report(train, test, fresh, schema)
    assert set(report["calendar_tvd"]) == {"date weekday", "date month", "time hour"}
    assert max(report["calendar_tvd"].values()) < 0.1
    assert max(report["calendar_tvd_within_labels"].values()) < 0.15
    late = orders_like(1000, 2, hours_later=3)
    shifted = quality_report(train, test, late.assign(kind=fresh["kind"]), schema)
    assert shifted["calendar_tvd"]["time hour"] > 0.5
    assert shifted["calendar_tvd"]["date weekday"] == report["calendar_tvd"]["date weekday"]
