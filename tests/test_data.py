from pathlib import Path

import numpy as np
import pytest

from training import data
from training.data import DataError


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def numeric_rows(n: int, label: str | None = None) -> str:
    rows = [
        f"{i},{i * 0.5}" + (f",{label if label else ('a' if i % 2 else 'b')}" if label is not None else "")
        for i in range(n)
    ]
    return "\n".join(rows) + "\n"


def test_builtin_digits_are_scaled_images_with_ten_labels() -> None:
    ds = data.load("digits")
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.x.min() >= 0.0 and ds.x.max() == 1.0
    assert ds.labels == [str(d) for d in range(10)] and ds.image_shape == [8, 8]


def test_builtin_breast_cancer_has_named_diagnosis_labels() -> None:
    ds = data.load("breast-cancer")
    assert ds.x.shape == (569, 30)
    assert sorted(ds.labels) == ["benign", "malignant"]
    assert ds.feature_names[0] == "mean radius"


def test_csv_with_string_labels(tmp_path: Path) -> None:
    ds = data.load(write_csv(tmp_path / "d.csv", "u,v,kind\n" + numeric_rows(50, "")), label_column="kind")
    assert ds.feature_names == ["u", "v"] and ds.labels == ["a", "b"]
    assert ds.x.shape == (50, 2) and set(ds.y.tolist()) == {0, 1}


def test_csv_integer_labels_sort_numerically(tmp_path: Path) -> None:
    rows = "".join(f"{i},{[10, 9, 2][i % 3]}\n" for i in range(60))
    ds = data.load(write_csv(tmp_path / "d.csv", "u,cls\n" + rows), label_column="cls")
    assert ds.labels == ["2", "9", "10"]
    assert ds.labels[ds.y[0]] == "10"


@pytest.mark.parametrize(
    ("text", "label_column", "message"),
    [
        (
            "u,v\n" + numeric_rows(50).replace("7,3.5", "7,abc"),
            None,
            r"column 'v' at line 9 holds 'abc', which is not a number",
        ),
        ("u,v\n" + numeric_rows(50).replace("7,3.5", "7,"), None, r"missing value in column 'v' at line 9"),
        ("u,v\n" + numeric_rows(50).replace("7,3.5", "7,nan"), None, r"non-finite value in column 'v' at row 8"),
        ("u,v\n" + numeric_rows(50).replace("7,3.5", "7"), None, r"line 9 has 1 fields, the header has 2"),
        ("u,v\n" + numeric_rows(10), None, r"10 rows; training needs at least 40"),
        ("u,v,k\n" + numeric_rows(50, ""), "label", r"label column 'label' not found; columns are: u, v, k"),
        ("u,v,k\n" + numeric_rows(50, "same"), "k", r"single class \('same'\)"),
        ("", None, r"the file is empty"),
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
    with pytest.raises(DataError, match="use one of digits, breast-cancer"):
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
