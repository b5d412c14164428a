"""Real tables end to end: a mixed CSV and the Palmer penguins trained as they are, served over
HTTP, and the rows that come back checked column by column against the data."""

from __future__ import annotations

import csv
import io
import itertools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEFAULT_MODELS_DIR, ROOT, run_python

ROWS_PER_CHECK = 3000  # generated rows per table, spread over the labels as the data is


def write_mixed_csv(path: Path, rows: int = 1500, seed: int = 0) -> None:
    """A customer table as users have them: text categories, integer counts, a skewed non-negative
    amount, a zero-inflated integer, a boolean, gaps in several columns spelled three ways."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], size=rows, p=[0.5, 0.3, 0.2])
    level = {"basic": 0.0, "plus": 1.0, "pro": 2.0}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "region", "plan", "amount", "refunds", "age", "children", "vip", "rating"])
        for i in range(rows):
            lv = level[plan[i]]
            amount = round(float(np.exp(rng.normal(3 + 0.5 * lv, 0.8))), 2)
            refunds = 0 if rng.random() < 0.6 else int(rng.poisson(2 + lv))
            writer.writerow(
                [
                    10_000 + i,  # an ID: left out with a warning
                    "" if rng.random() < 0.08 else rng.choice(["north", "south", "east", "west"]),
                    plan[i],
                    "NA" if rng.random() < 0.05 else amount,
                    "null" if rng.random() < 0.12 else refunds,
                    int(np.clip(rng.normal(40 + 5 * lv, 12), 18, 90)),
                    int(rng.integers(0, 5)),
                    "true" if rng.random() < 0.2 + 0.2 * lv else "false",
                    "" if rng.random() < 0.1 else round(float(rng.normal(3.5, 0.8)), 1),
                ]
            )


def generate_per_label(
    client, model: str, label_column: str, labels: list[str], weights: list[float], seed: int
) -> tuple[list, list]:
    """Rows generated for each label in proportion to `weights`, by the JSON API (typed rows), less the
    label column, which holds the label asked for."""
    columns, rows = None, []
    for i, (label, weight) in enumerate(zip(labels, weights, strict=True)):
        left = round(ROWS_PER_CHECK * weight)
        while left > 0:
            n = min(left, 1024)
            response = client.post("/generate", json={"model": model, "n": n, "label": label, "seed": seed + i + left})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["mode"] == "sample"  # a table model draws by default
            # the label column rides along, holding the label asked for; the checks below look at the rest
            at = body["columns"].index(label_column)
            assert {row[at] for row in body["samples"]} == {label}
            columns = body["columns"][:at] + body["columns"][at + 1 :]
            rows += [row[:at] + row[at + 1 :] for row in body["samples"]]
            left -= n
    return columns, rows


def check_samples(columns: list[str], rows: list[list], schema: list[dict], real_missing: dict[str, float]) -> None:
    """Every column: the right kind, inside its training range or categories, the real missing rate (+-0.03)."""
    assert columns == [c["name"] for c in schema]
    for j, column in enumerate(schema):
        values = [row[j] for row in rows]
        present = [v for v in values if v is not None]
        name, kind = column["name"], column["kind"]
        missing = 1 - len(present) / len(values)
        assert abs(missing - real_missing.get(name, 0.0)) <= 0.03, (name, missing, real_missing.get(name, 0.0))
        if kind == "integer":
            assert all(type(v) is int for v in present), name
        if kind == "continuous":
            assert all(type(v) in (int, float) and math.isfinite(v) for v in present), name
        if kind in ("integer", "continuous"):
            assert column["min"] <= min(present) and max(present) <= column["max"], name
            assert len(set(present)) > 5, f"{name} barely varies"
        if kind == "categorical":
            assert set(present) <= set(column["categories"]), name
            assert all(type(v) is type(column["categories"][0]) for v in present), name
        if kind == "boolean":
            assert all(type(v) is bool for v in present) and set(present) == {False, True}, name
        if kind == "constant":
            assert set(values) == {column["value"]}, name


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The mixed CSV trained by the CLI exactly as a new user would: no preprocessing flags."""
    root = tmp_path_factory.mktemp("mixed")
    write_mixed_csv(root / "customers.csv")
    models_dir = root / "models"
    result = run_python(
        "-m",
        "training",
        "train",
        "--data",
        str(root / "customers.csv"),
        "--label-column",
        "plan",
        "--conditional",
        "--name",
        "customers",
        "--models-dir",
        str(models_dir),
        "--epochs",
        "80",
        "--formats",
        "onnx",
        check=True,
    )
    return root, models_dir, result.stderr


def test_a_mixed_csv_trains_with_no_flags_and_says_what_it_did(mixed_model) -> None:
    _, models_dir, log = mixed_model
    assert "head gaussian (chosen from the data" in log
    assert "column 'customer_id' left out: an ID" in log
    from core.repository import read_manifest

    manifest = read_manifest(models_dir / "customers" / "1")
    kinds = {c.name: c.kind for c in manifest.columns}
    assert kinds == {
        "region": "categorical",
        "amount": "continuous",
        "refunds": "integer",
        "age": "integer",
        "children": "categorical",
        "vip": "boolean",
        "rating": "continuous",
    }
    assert manifest.labels == ["basic", "plus", "pro"]
    amount = next(c for c in manifest.columns if c.name == "amount")
    assert amount.nonnegative and amount.encoding == "quantile" and amount.decimals == 2
    assert 0.03 < amount.missing_rate < 0.07


def test_mixed_csv_samples_over_http_have_every_columns_kind_range_and_gaps(mixed_model, live_server) -> None:
    import httpx
    import pandas as pd

    root, models_dir, _ = mixed_model
    server = live_server(model_dir=models_dir)
    real = pd.read_csv(root / "customers.csv", na_values=["NA", "null", ""])
    real_missing = {c: float(real[c].isna().mean()) for c in real.columns}
    weights = real["plan"].value_counts(normalize=True)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        schema = client.get("/models/customers").json()["columns"]
        columns, rows = generate_per_label(
            client, "customers", "plan", list(weights.index), list(weights.values), seed=5
        )
        check_samples(columns, rows, schema, real_missing)
        # the amount is skewed and non-negative: no negative samples, a long right tail like the data's
        amounts = np.array([r[columns.index("amount")] for r in rows if r[columns.index("amount")] is not None])
        assert amounts.min() >= 0 and np.median(amounts) < amounts.mean()

        response = client.post(
            "/generate",
            json={"model": "customers", "n": 4, "label": "pro", "seed": 1},
            headers={"Accept": "text/csv"},
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.reader(io.StringIO(response.text)))
        json_rows = client.post("/generate", json={"model": "customers", "n": 4, "label": "pro", "seed": 1}).json()
        assert parsed[0] == json_rows["columns"] and len(parsed) == 5
        assert json_rows["columns"] == ["region", "plan", *columns[1:]]  # the label where the CSV had it
        for csv_row, json_row in zip(parsed[1:], json_rows["samples"], strict=True):  # the same rows, as text
            assert csv_row == ["" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in json_row]


def test_penguins_default_model_samples_match_the_real_table(client) -> None:
    from palmerpenguins import load_penguins

    real = load_penguins()
    real_missing = {c: float(real[c].isna().mean()) for c in real.columns}
    detail = client.get("/models/penguins-cvae").json()
    weights = real["species"].value_counts(normalize=True)
    columns, rows = generate_per_label(
        client, "penguins-cvae", "species", list(weights.index), list(weights.values), seed=7
    )
    check_samples(columns, rows, detail["columns"], real_missing)
    # conditioning: Gentoo penguins live on Biscoe and are heavy
    gentoo = client.post("/generate", json={"model": "penguins-cvae", "n": 500, "label": "Gentoo", "seed": 3}).json()
    at = {name: i for i, name in enumerate(gentoo["columns"])}
    island = [r[at["island"]] for r in gentoo["samples"]]
    mass = [r[at["body_mass_g"]] for r in gentoo["samples"] if r[at["body_mass_g"]] is not None]
    assert island.count("Biscoe") / len(island) > 0.9
    assert np.mean(mass) > real.loc[real["species"] != "Gentoo", "body_mass_g"].mean()
    # gap patterns: sex alone goes missing as in the data; all four measurements and sex together, which 2
    # real rows had (fewer than 3 in training), never do
    assert detail["gap_patterns"] == [[], ["sex"]]
    many = [
        row
        for label, seed in itertools.product(["Adelie", "Gentoo"], range(3))
        for row in client.post(
            "/generate", json={"model": "penguins-cvae", "n": 1000, "label": label, "seed": seed}
        ).json()["samples"]
    ]
    patterns = {tuple(c for c, v in zip(gentoo["columns"], r, strict=True) if v is None) for r in many}
    assert patterns == {(), ("sex",)}
    # a reconstruction keeps what the decoder says of its own row, rare gaps included
    gaps = {"bill_length_mm": None, "bill_depth_mm": None, "flipper_length_mm": None, "body_mass_g": None}
    rare = {**PENGUIN, "island": "Torgersen", **gaps, "sex": None, "year": 2007}
    body = {"model": "penguins-cvae", "inputs": [rare], "labels": ["Adelie"]}
    back = client.post("/reconstruct", json=body).json()["reconstructions"][0]
    assert [c for c, v in zip(columns, back, strict=True) if v is None] == [*gaps, "sex"]
    # the quality report training stored, served as it is: recognisable species, no copies of training rows
    quality = detail["quality"]
    assert quality["rows"] == 240 and quality["validity"] == 1.0 and quality["exact_copies"] == 0
    assert quality["quality"] > 0.8 and quality["tstr_auc"] > 0.95 and quality["nearer_to_train_share"] <= 0.6
    assert min(quality["label_faithfulness_by_label"].values()) > 0.9
    assert set(quality["real_recognition_by_label"]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_same_seed_same_rows_and_mean_mode_is_the_central_value(client) -> None:
    body = {"model": "penguins-cvae", "n": 50, "label": "Adelie", "seed": 11}
    first, again = (client.post("/generate", json=body).json()["samples"] for _ in range(2))
    assert first == again
    means = client.post("/generate", json={**body, "mode": "mean"}).json()
    assert means["mode"] == "mean" and means["samples"] != first
    assert all(v is not None for row in means["samples"] for v in row)  # P(missing) < 0.5 everywhere


PENGUIN = {
    "island": "Biscoe",
    "bill_length_mm": 45.1,
    "bill_depth_mm": 14.5,
    "flipper_length_mm": 215,
    "body_mass_g": 5000,
    "sex": "female",
    "year": 2008,
}


def test_typed_rows_in_as_lists_or_objects_give_the_same_answers(client) -> None:
    as_object = {"model": "penguins-cvae", "inputs": [PENGUIN], "labels": ["Gentoo"]}
    as_list = {"model": "penguins-cvae", "inputs": [list(PENGUIN.values())], "labels": ["Gentoo"]}
    for path in ("/encode", "/reconstruct", "/quantiles"):
        a, b = client.post(path, json=as_object), client.post(path, json=as_list)
        assert a.status_code == 200, a.text
        assert a.json() == b.json(), path
    gaps = {**PENGUIN, "sex": None, "bill_length_mm": None}
    assert client.post("/encode", json={**as_object, "inputs": [gaps]}).status_code == 200
    assert client.post("/encode", json={**as_object, "inputs": [{**PENGUIN, "year": "2008"}]}).json() == (
        client.post("/encode", json=as_object).json()
    )


def test_reconstruct_and_quantiles_speak_in_columns(client) -> None:
    body = {"model": "penguins-cvae", "inputs": [PENGUIN, {**PENGUIN, "sex": None}], "labels": ["Gentoo", "Gentoo"]}
    rec = client.post("/reconstruct", json=body).json()
    assert rec["columns"] == list(PENGUIN)
    assert type(rec["reconstructions"][0][3]) is int and rec["reconstructions"][0][0] == "Biscoe"
    assert len(rec["column_errors"][0]) == len(PENGUIN) and rec["column_errors"][0][0] == 0.0
    assert rec["errors"][0] == pytest.approx(np.mean(rec["column_errors"][0]))
    assert rec["errors"][0] < 1.0  # a real Gentoo row reconstructs within about a standard deviation
    bands = client.post("/quantiles", json=body).json()
    assert bands["columns"] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    q = np.array(bands["quantiles"])
    assert q.shape == (2, 5, 4) and (np.diff(q, axis=1) >= 0).all()
    assert q[0, 0, 3] <= 5000 <= q[0, -1, 3]
    sex = bands["probabilities"][0]["sex"]
    assert set(sex) == {"female", "male", "null"} and sum(sex.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(bands["probabilities"][0]["island"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("row", "fragment", "details"),
    [
        (
            {**PENGUIN, "island": "Mars"},
            "row 0, column 'island': unknown category 'Mars'; valid: ['Biscoe', 'Dream', 'Torgersen']",
            {"column": "island", "valid": ["Biscoe", "Dream", "Torgersen"]},
        ),
        (
            {**PENGUIN, "bill_length_mm": "long"},
            "row 0, column 'bill_length_mm' holds 'long'; it takes a number (training range 32.1 to 59.6)",
            {"column": "bill_length_mm"},
        ),
        (
            {**PENGUIN, "wing_span": 3},
            "row 0: unknown column 'wing_span'; the model's columns are ['island', 'bill_length_mm'",
            {"column": "wing_span"},
        ),
        (
            {k: v for k, v in PENGUIN.items() if k != "sex"},
            "row 0: column 'sex' is absent",
            {"column": "sex"},
        ),
        (
            {**PENGUIN, "island": None},
            "row 0, column 'island' is null, but the model saw no missing values in it; give one of ['Biscoe'",
            {"column": "island"},
        ),
        (
            {**PENGUIN, "year": 2031},
            "row 0, column 'year': unknown category 2031; valid: [2007, 2008, 2009]",
            {"column": "year", "valid": [2007, 2008, 2009]},
        ),
        (list(PENGUIN.values())[:-1], "row 0 has 6 values; the model takes 7, in the order ['island'", {"row": 0}),
        ("Biscoe", "row 0 is 'Biscoe'; a row is a list of values", {"row": 0}),
    ],
)
def test_bad_table_rows_get_a_422_that_names_the_column_and_what_it_allows(client, row, fragment, details) -> None:
    for path in ("/encode", "/reconstruct", "/quantiles"):
        response = client.post(path, json={"model": "penguins-cvae", "inputs": [row], "labels": ["Adelie"]})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and fragment in error["message"], error["message"]
        assert details.items() <= error["details"].items()


def test_labels_of_integer_label_models_take_json_integers(client) -> None:
    as_int = client.post("/generate", json={"model": "digits-cvae", "n": 2, "label": 7, "seed": 1}).json()
    as_str = client.post("/generate", json={"model": "digits-cvae", "n": 2, "label": "7", "seed": 1}).json()
    assert as_int == as_str and as_int["label"] == "7"


def test_csv_and_npy_answers_for_all_numeric_models(client) -> None:
    response = client.post(
        "/generate", json={"model": "cancer-qvae", "n": 3, "label": "benign", "seed": 2}, headers={"Accept": "text/csv"}
    )
    parsed = list(csv.reader(io.StringIO(response.text)))
    assert parsed[0][0] == "mean radius" and len(parsed) == 4 and len(parsed[1]) == 30
    table_npy = client.post(
        "/generate", json={"model": "penguins-cvae", "n": 3, "label": "Gentoo"}, headers={"Accept": "application/x-npy"}
    )
    assert table_npy.status_code == 406 and "ask for application/json or text/csv" in table_npy.text


def test_a_model_exported_before_column_schemas_serves_unchanged(make_client, tmp_path: Path) -> None:
    """The committed fixture was exported before tables existed (no `columns` in its manifest): it loads,
    and its answers are the graphs' own, computed here with onnxruntime alone."""
    import json

    import onnxruntime as ort

    models_dir = tmp_path / "models"
    shutil.copytree(ROOT / "tests" / "fixtures" / "legacy-models", models_dir)
    version_dir = models_dir / "cancer-qvae" / "1"
    manifest = json.loads((version_dir / "model.json").read_text())
    assert "columns" not in manifest
    client = make_client(model_dir=models_dir)
    detail = client.get("/models/cancer-qvae").json()
    assert detail["versions"][0]["state"] == "ready" and detail["columns"] is None

    answer = client.post("/generate", json={"model": "cancer-qvae", "n": 5, "label": "malignant", "seed": 4}).json()
    assert answer["mode"] == "mean" and "columns" not in answer
    z = np.random.default_rng(4).standard_normal((5, manifest["latent_dim"]), dtype=np.float32)
    decoder = ort.InferenceSession(str(version_dir / "decoder.onnx"))
    label = np.full(5, manifest["labels"].index("malignant"), dtype=np.int64)
    (q,) = decoder.run(None, {"z": z, "y": label})
    norm = manifest["normalization"]
    expected = q[:, 2] * np.float32(norm["scale"]) + np.float32(norm["shift"])
    np.testing.assert_allclose(answer["samples"], expected, rtol=1e-5)
    rows = expected.tolist()
    bands = client.post("/quantiles", json={"model": "cancer-qvae", "inputs": rows, "labels": ["malignant"] * 5})
    assert bands.status_code == 200 and np.array(bands.json()["quantiles"]).shape == (5, 5, 30)


def test_default_models_include_a_table_model() -> None:
    assert (DEFAULT_MODELS_DIR / "penguins-cvae" / "1" / "model.json").is_file()
