"""Whole tables (issue 29): generated rows carry the label column where the training table had it, in
every format; a conditional table model asked for no label draws labels in the training shares (or
`label_weights`), reproducibly by seed; rows straight from the training table (the label, an ID
training left out) are taken."""

from __future__ import annotations

import csv
import io
from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import DEFAULT_MODELS_DIR, run_python

MODEL = "penguins-cvae"
COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
SHARES = {"Adelie": 0.4625, "Chinstrap": 0.2, "Gentoo": 0.3375}  # the training split's (model.json)


def shares(labels: list[str]) -> dict[str, float]:
    counts = Counter(labels)
    return {k: counts[k] / len(labels) for k in SHARES}


def test_no_label_draws_the_training_mix_reproducibly(client) -> None:
    body = {"model": MODEL, "n": 10_000, "seed": 4}
    response = client.post("/generate/stream", json=body, headers={"Accept": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    rows = [orjson.loads(line) for line in response.content.splitlines()]
    assert len(rows) == 10_000 and list(rows[0]) == COLUMNS
    got = shares([r["species"] for r in rows])
    assert all(abs(got[k] - SHARES[k]) <= 0.02 for k in SHARES), got
    again = client.post("/generate/stream", json=body, headers={"Accept": "application/x-ndjson"})
    assert again.content == response.content  # the same seed, the same rows
    # /generate answers the same rows as the stream (its first 1,024)
    small = client.post("/generate", json={**body, "n": 1024}).json()
    assert small["label"] is None and small["columns"] == COLUMNS
    assert [dict(zip(COLUMNS, r, strict=True)) for r in small["samples"]] == rows[:1024]
    # each row is its label's: Gentoo penguins are heavy, on Biscoe
    gentoo = [r for r in rows if r["species"] == "Gentoo"]
    assert sum(r["island"] == "Biscoe" for r in gentoo) / len(gentoo) > 0.9


def test_label_weights_choose_the_mix(client) -> None:
    body = {"model": MODEL, "n": 1000, "seed": 1, "label_weights": {"Chinstrap": 3, "Gentoo": 1}}
    rows = client.post("/generate", json=body).json()["samples"]
    got = shares([r[0] for r in rows])
    assert got["Adelie"] == 0 and abs(got["Chinstrap"] - 0.75) < 0.05
    for bad, message in [
        ({"label_weights": {"Emperor": 1}}, "unknown label 'Emperor'"),
        ({"label_weights": {"Gentoo": 0}}, "all 0"),
        ({"label_weights": {"Gentoo": -1}}, "greater than or equal to 0"),
        ({"label_weights": {"Gentoo": 1}, "label": "Adelie"}, "either a label or label_weights"),
    ]:
        response = client.post("/generate", json={**body, **bad})
        assert response.status_code == 422 and message in response.text, (bad, response.text)
    response = client.post("/generate", json={"model": "digits-vae", "label_weights": {"1": 1}})
    assert response.status_code == 422 and "no label column" in response.text


def test_every_format_carries_the_label_column(client) -> None:
    body = {"model": MODEL, "n": 2000, "label": "Chinstrap", "seed": 2}
    streamed = {
        accept: client.post("/generate/stream", json=body, headers={"Accept": accept}).content
        for accept in ("text/csv", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet")
    }
    header, *rows = list(csv.reader(io.StringIO(streamed["text/csv"].decode())))
    assert header == COLUMNS and {r[0] for r in rows} == {"Chinstrap"} and len(rows) == 2000
    arrow = pa.ipc.open_stream(streamed["application/vnd.apache.arrow.stream"]).read_all()
    parquet = pq.read_table(io.BytesIO(streamed["application/vnd.apache.parquet"]))
    for table in (arrow, parquet):
        assert table.column_names == COLUMNS and set(table.column("species").to_pylist()) == {"Chinstrap"}
    csv_answer = client.post("/generate", json={**body, "n": 3}, headers={"Accept": "text/csv"}).text
    assert csv_answer.splitlines()[0] == ",".join(COLUMNS)


def test_the_cli_writes_whole_tables(tmp_path) -> None:
    out = tmp_path / "all.csv"
    result = run_python(
        "-m", "training", "sample", MODEL, "--n", "3000", "--seed", "5", "--out", str(out),
        "--models-dir", str(DEFAULT_MODELS_DIR), check=True,
    )  # fmt: skip
    assert "wrote 3,000 rows" in result.stderr
    header, *rows = list(csv.reader(out.open()))
    assert header == COLUMNS
    got = shares([r[0] for r in rows])
    assert all(abs(got[k] - SHARES[k]) <= 0.03 for k in SHARES), got
    weighted = tmp_path / "gentoo.parquet"
    run_python(
        "-m", "training", "sample", MODEL, "--n", "500", "--label-weights", "Gentoo=1", "--out", str(weighted),
        "--models-dir", str(DEFAULT_MODELS_DIR), check=True,
    )  # fmt: skip
    assert set(pq.read_table(weighted).column("species").to_pylist()) == {"Gentoo"}


def test_rows_from_the_training_table_are_taken_with_their_label(client) -> None:
    row = {"species": "Gentoo", "island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0}
    row |= {"flipper_length_mm": 218, "body_mass_g": 4950, "sex": "female", "year": 2008}
    by_label = client.post("/anomaly", json={"model": MODEL, "inputs": [row], "labels": ["Gentoo"]}).json()
    by_row = client.post("/anomaly", json={"model": MODEL, "inputs": [row]})  # the label from the row
    assert by_row.status_code == 200, by_row.text
    assert by_row.json()["rows"][0]["score"] == by_label["rows"][0]["score"]
    as_adelie = client.post("/anomaly", json={"model": MODEL, "inputs": [{**row, "species": "Adelie"}]}).json()
    assert as_adelie["rows"][0]["score"] > by_row.json()["rows"][0]["score"]  # the row's label is used
    for endpoint in ("/encode", "/reconstruct", "/quantiles"):
        assert client.post(endpoint, json={"model": MODEL, "inputs": [row]}).status_code == 200, endpoint
    # without the label anywhere: said how to give it
    unlabelled = {k: v for k, v in row.items() if k != "species"}
    response = client.post("/encode", json={"model": MODEL, "inputs": [unlabelled]})
    assert response.status_code == 422 and "label column 'species'" in response.text
    # a column the model never had is still refused
    response = client.post("/encode", json={"model": MODEL, "inputs": [{**row, "colour": "blue"}]})
    assert response.status_code == 422 and "unknown column 'colour'" in response.text
