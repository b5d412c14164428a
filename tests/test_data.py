from pathlib import Path

import numpy as np
import pytest

from training import data, tables
from training.datasets import DataError, ReadOptions


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def numeric_rows(n: int, label: str | None = None) -> str:
    """Rows `u,v[,label]`: u a float that differs per row, v = u / 2."""
    rows = [
        f"{i + 0.25},{(i + 0.25) * 0.5}"
        + (f",{label if label else ('a' if i % 2 else 'b')}" if label is not None else "")
        for i in range(n)
    ]
    return "\n".join(rows) + "\n"


def test_builtin_digits_are_scaled_images_with_ten_labels() -> None:
    ds = data.load("digits")
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.x.min() >= 0.0 and ds.x.max() == 1.0
    assert ds.labels == [str(d) for d in range(10)] and ds.image_shape == [8, 8]
    assert ds.columns is None and ds.frame is None


def test_builtin_breast_cancer_has_named_diagnosis_labels() -> None:
    ds = data.load("breast-cancer")
    assert ds.x.shape == (569, 30)
    assert sorted(ds.labels) == ["benign", "malignant"]
    assert ds.feature_names[0] == "mean radius"


def test_builtin_penguins_is_a_typed_table_with_gaps() -> None:
    ds = data.load("penguins")
    kinds = {c.name: c.kind for c in ds.columns}
    assert ds.labels == ["Adelie", "Chinstrap", "Gentoo"] and ds.label_column == "species" and len(ds) == 344
    assert kinds == {
        "island": "categorical",
        "bill_length_mm": "continuous",
        "bill_depth_mm": "continuous",
        "flipper_length_mm": "integer",
        "body_mass_g": "integer",
        "sex": "categorical",
        "year": "categorical",  # three distinct integers: a low-cardinality integer column is categorical
    }
    sex = next(c for c in ds.columns if c.name == "sex")
    assert sex.categories == ["female", "male"] and sex.missing_rate == pytest.approx(11 / 344)
    year = next(c for c in ds.columns if c.name == "year")
    assert year.categories == [2007, 2008, 2009]  # integers stay integers, in numeric order
    bill = next(c for c in ds.columns if c.name == "bill_length_mm")
    assert (bill.min, bill.max, bill.nonnegative, bill.decimals) == (32.1, 59.6, True, 1)


def test_csv_with_string_labels(tmp_path: Path) -> None:
    ds = data.load(write_csv(tmp_path / "d.csv", "u,v,kind\n" + numeric_rows(50, "")), label_column="kind")
    assert ds.feature_names == ["u", "v"] and ds.labels == ["a", "b"]
    assert [c.kind for c in ds.columns] == ["continuous", "continuous"]
    assert len(ds) == 50 and set(ds.y.tolist()) == {0, 1}


def test_csv_integer_labels_sort_numerically(tmp_path: Path) -> None:
    rows = "".join(f"{i + 0.5},{[10, 9, 2][i % 3]}\n" for i in range(60))
    ds = data.load(write_csv(tmp_path / "d.csv", "u,cls\n" + rows), label_column="cls")
    assert ds.labels == ["2", "9", "10"]
    assert ds.labels[ds.y[0]] == "10"


MIXED_CSV = """id;region;amount;refunds;children;vip;note;constant;rating
""" + "".join(
    f"{i};{['north', 'south', 'east'][i % 3]};{'' if i % 10 == 3 else round(10 + i * 1.37 % 50, 2)};"
    f"{'NA' if i % 7 == 0 else (0 if i % 2 else (i * 13) % 40)};{i % 4};{'true' if i % 5 else 'false'};"
    f"free text number {i * 7919 % 1000};same;{'null' if i % 9 == 0 else (i * 31) % 97}\n"
    for i in range(400)
)


def test_mixed_csv_is_typed_column_by_column(tmp_path: Path) -> None:
    ds = data.load(write_csv(tmp_path / "m.csv", MIXED_CSV))  # ';' is sniffed; NA, null and empty are missing
    columns = {c.name: c for c in ds.columns}
    assert set(columns) == {"region", "amount", "refunds", "children", "vip", "constant", "rating"}
    assert any("'id' left out: an ID" in w for w in ds.warnings)
    assert any("'note' left out" in w for w in ds.warnings)
    assert columns["region"].kind == "categorical" and columns["region"].categories == ["east", "north", "south"]
    assert columns["amount"].kind == "continuous" and columns["amount"].missing_rate == pytest.approx(0.1)
    assert columns["refunds"].kind == "integer" and columns["refunds"].nonnegative
    assert columns["refunds"].missing_rate == pytest.approx(58 / 400)
    assert columns["children"].kind == "categorical" and columns["children"].categories == [0, 1, 2, 3]
    assert columns["vip"].kind == "boolean" and columns["vip"].categories == [False, True]
    assert columns["constant"].kind == "constant" and columns["constant"].value == "same"
    assert columns["rating"].kind == "integer" and columns["rating"].missing_rate == pytest.approx(45 / 400)


def test_read_options_choose_and_type_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", MIXED_CSV)
    read = ReadOptions(columns=("region", "amount", "children"), categorical=("amount",), integer=("children",))
    ds = data.load(path, read=read)
    assert [(c.name, c.kind) for c in ds.columns] == [
        ("region", "categorical"),
        ("amount", "categorical"),
        ("children", "integer"),
    ]
    ds = data.load(path, read=ReadOptions(drop_columns=("region", "vip")))
    assert "region" not in ds.feature_names and "vip" not in ds.feature_names
    with pytest.raises(DataError, match=r"--columns names \['nope'\], not in the table"):
        data.load(path, read=ReadOptions(columns=("nope",)))
    with pytest.raises(DataError, match="--integer names 'amount', which holds non-integer values"):
        data.load(path, read=ReadOptions(integer=("amount",)))


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    import pandas as pd

    csv_ds = data.load(write_csv(tmp_path / "m.csv", MIXED_CSV))
    pd.read_csv(tmp_path / "m.csv", sep=";").to_parquet(tmp_path / "m.parquet")
    parquet_ds = data.load(str(tmp_path / "m.parquet"))
    assert [c.model_dump() for c in parquet_ds.columns] == [c.model_dump() for c in csv_ds.columns]


def test_a_small_table_trains_with_a_warning(tmp_path: Path) -> None:
    ds = data.load(write_csv(tmp_path / "d.csv", "u,v\n" + numeric_rows(60)))
    assert any("60 rows: under 300, the model's figures are unreliable" in w for w in ds.warnings)


@pytest.mark.parametrize(
    ("text", "label_column", "message"),
    [
        ("u,v\n" + numeric_rows(50).replace("7.25,3.625", "7.25,inf"), None, r"column 'v' holds an infinite value"),
        ("u,v\n" + numeric_rows(10), None, r"10 data rows; training needs at least 40"),
        ("u,v,k\n" + numeric_rows(50, ""), "label", r"label column 'label' not found; columns are: u, v, k"),
        ("u,v,k\n" + numeric_rows(50, "same"), "k", r"single class \('same'\)"),
        ("", None, r"the file is empty"),
        ("a,b\n" + "x,y\n" * 50, None, r"no numeric column to model"),
        ("u,u\n" + numeric_rows(50), None, r"column names repeat"),
    ],
)
def test_bad_csv_gets_a_clear_error(tmp_path: Path, text: str, label_column: str | None, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.load(write_csv(tmp_path / "bad.csv", text), label_column=label_column)


def test_npz_with_images_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((45, 4, 4)), y=np.array([3, 1, 2] * 15))
    ds = data.load(str(tmp_path / "d.npz"))
    assert ds.x.shape == (45, 16) and ds.image_shape == [4, 4] and ds.labels == ["1", "2", "3"]


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "nox.npz", data=np.zeros((50, 3)))
    with pytest.raises(DataError, match="no array named 'x'; found: data"):
        data.load(str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "bady.npz", x=np.zeros((50, 3)), y=np.zeros(49))
    with pytest.raises(DataError, match="one label per row"):
        data.load(str(tmp_path / "bady.npz"))


def test_unknown_data_and_missing_files() -> None:
    with pytest.raises(DataError, match="use one of digits, breast-cancer, penguins"):
        data.load("mnist")
    with pytest.raises(DataError, match="does not exist"):
        data.load("no/such/file.csv")
    with pytest.raises(DataError, match="labels built in"):
        data.load("digits", label_column="target")


def test_split_is_seeded_and_disjoint() -> None:
    ds = data.load("breast-cancer")
    a, b, c = data.split(ds, seed=1), data.split(ds, seed=1), data.split(ds, seed=2)
    assert np.array_equal(a.test.x, b.test.x) and not np.array_equal(a.test.x, c.test.x)
    rows = {tuple(r) for part in (a.train, a.val, a.test) for r in part.x.tolist()}
    assert len(a.train) + len(a.val) + len(a.test) == len(ds) == len(rows)


def test_normalization_is_fitted_on_the_training_split_only() -> None:
    splits = data.split(data.load("breast-cancer"), seed=0)
    shift, scale = data.fit_normalization(splits.train.x, "quantile")
    np.testing.assert_allclose(shift, splits.train.x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scale, splits.train.x.std(axis=0), rtol=1e-5)
    assert not np.allclose(shift, splits.test.x.mean(axis=0), rtol=1e-3)
    shift, scale = data.fit_normalization(np.ones((50, 2), np.float32), "gaussian")
    assert scale.tolist() == [1.0, 1.0]  # a constant feature is not divided by zero


def test_bernoulli_head_needs_unit_interval_data() -> None:
    with pytest.raises(DataError, match=r"bernoulli head needs every feature in \[0, 1\]"):
        data.check_head(data.load("breast-cancer"), "bernoulli")
    with pytest.raises(DataError, match="a table takes --head gaussian"):
        data.check_head(data.load("penguins"), "bernoulli")


def test_default_head_is_chosen_from_the_data() -> None:
    assert data.default_head(data.load("digits")) == "bernoulli"
    assert data.default_head(data.load("breast-cancer")) == "gaussian"
    assert data.default_head(data.load("penguins")) == "gaussian"


def test_hand_typed_cells_are_read_as_users_mean_them(tmp_path: Path) -> None:
    rows = [
        f"{i + 0.5},{'-' if i == 7 else i * 2.5},{['male ', ' male', 'female'][i % 3]},{'' if i % 4 == 0 else 'true'}"
        for i in range(200)
    ]
    ds = data.load(write_csv(tmp_path / "d.csv", "u,amount,sex,paid\n" + "\n".join(rows) + "\n"))
    columns = {c.name: c for c in ds.columns}
    # one stray "-" in a column of numbers: a missing value, said so, not a text column
    assert columns["amount"].kind == "continuous" and columns["amount"].missing_rate == pytest.approx(1 / 200)
    assert any("'amount': 1 cell(s) that are not numbers (e.g. '-') read as missing" in w for w in ds.warnings)
    # and the frame training fits on holds it as a gap: the "-" as text failed there
    assert ds.frame["amount"].dtype == np.float64 and int(ds.frame["amount"].isna().sum()) == 1
    assert tables.fit_encodings(ds.columns, ds.frame, "quantile")[1].knots is not None
    assert columns["sex"].categories == ["female", "male"]  # spaces around a category do not make a new one
    assert columns["paid"].kind == "boolean" and columns["paid"].missing_rate == pytest.approx(0.25)
