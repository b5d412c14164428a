"""ID columns regenerated (issue 29, `train --regenerate-ids`): generated rows carry each ID column training
left out at its place in the training table, with new values in the training IDs' pattern, distinct within
an answer and never a training row's; request rows may still hold the training IDs."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.manifest import DroppedColumn
from core.repository import read_manifest
from core.table import original_order

COLUMNS = ["claim_id", "amount", "kind", "ref", "count", "seq", "note"]  # the training table's, in order
ANSWERED = ["claim_id", "amount", "kind", "ref", "count", "seq"]  # less `note`: free text, not an ID


def claims(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    kind = rng.choice(["car", "home", "pet"], n)
    return pd.DataFrame(
        {
            "claim_id": [f"CLM-{i:06d}" for i in rng.permutation(n) + 1],
            "amount": (rng.lognormal(7, 1, n) * np.where(kind == "home", 3, 1)).round(2),
            "kind": kind,
            "ref": [str(uuid.UUID(int=int(v))).upper() for v in rng.integers(0, 2**62, n)],
            "count": rng.poisson(3, n),
            "seq": np.arange(5000, 5000 + n),
            "note": [f"{w} claim {i}" for i, w in zip(range(n), rng.choice(["late", "minor", "odd"], n), strict=True)],
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, str]:
    root = tmp_path_factory.mktemp("ids")
    table = claims(600)
    table.to_csv(root / "claims.csv", index=False)
    cmd = [sys.executable, "-m", "training", "train", "--data", str(root / "claims.csv"), "--label-column", "kind"]
    cmd += ["--conditional", "--regenerate-ids", "--name", "claims", "--models-dir", str(root / "models")]
    cmd += ["--epochs", "20", "--formats", "onnx"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return root / "models", table, done.stderr


def test_the_pattern_of_each_id_is_stored(trained) -> None:
    models, _, log = trained
    m = read_manifest(models / "claims" / "1")
    dropped = {d.name: d for d in m.dropped_columns or []}
    assert [d.position for d in m.dropped_columns or []] == [0, 3, 5, 6]
    claim, ref, seq = dropped["claim_id"].identifier, dropped["ref"].identifier, dropped["seq"].identifier
    assert (claim.kind, claim.prefix, claim.width, claim.start) == ("counter", "CLM-", 6, 601)
    assert (ref.kind, ref.upper) == ("uuid", True)
    assert (seq.kind, seq.integer, seq.start) == ("counter", True, 5600)
    assert dropped["note"].identifier is None and "free text" in dropped["note"].reason
    assert dropped["claim_id"].reason == "an ID (a different value in every row)"  # not "or free text": a pattern
    told = [line for line in log.splitlines() if "not regenerated" in line]  # text unique per row: in no pattern
    assert len(told) == 1 and "'note'" in told[0]


def test_generated_rows_carry_new_ids_in_every_format(trained, make_client) -> None:
    models, table, _ = trained
    client = make_client(model_dir=models, max_samples=3000)
    info = client.get("/models/claims").json()
    listed = {d["name"]: d for d in info["dropped_columns"]}  # GET /models/{name}: the columns left out, and why
    assert listed["claim_id"]["identifier"]["prefix"] == "CLM-" and "free text" in listed["note"]["reason"]
    assert set(info["label_weights"]) == {"car", "home", "pet"} and abs(sum(info["label_weights"].values()) - 1) < 1e-4
    body = {"model": "claims", "n": 3000, "seed": 5}
    answer = client.post("/generate", json=body).json()
    assert answer["columns"] == ANSWERED
    rows = [dict(zip(ANSWERED, r, strict=True)) for r in answer["samples"]]
    claim_ids = [r["claim_id"] for r in rows]
    assert claim_ids[:2] == ["CLM-000601", "CLM-000602"] and len(set(claim_ids)) == 3000
    assert all(re.fullmatch(r"CLM-\d{6}", c) for c in claim_ids)
    refs = [r["ref"] for r in rows]
    assert all(uuid.UUID(r).version == 4 and r == r.upper() for r in refs) and len(set(refs)) == 3000
    assert [r["seq"] for r in rows] == list(range(5600, 8600))
    for name in ("claim_id", "ref", "seq"):
        assert not set(table[name]) & {r[name] for r in rows}, name  # never a training row's ID
    # a stream of several blocks counts on across them, and answers what /generate answers
    stream = client.post("/generate/stream", json=body, headers={"Accept": "text/csv"})
    header, *lines = list(csv.reader(io.StringIO(stream.text)))
    assert header == ANSWERED and [line[0] for line in lines] == claim_ids
    ndjson = client.post("/generate/stream", json=body, headers={"Accept": "application/x-ndjson"})
    assert [orjson.loads(line) for line in ndjson.content.splitlines()] == rows
    parquet = client.post("/generate/stream", json=body, headers={"Accept": "application/vnd.apache.parquet"})
    frame = pq.read_table(io.BytesIO(parquet.content)).to_pandas()
    assert list(frame.columns) == ANSWERED and frame["seq"].dtype == np.int64 and frame["ref"].tolist() == refs


def test_rows_with_training_ids_are_taken(trained, make_client) -> None:
    models, table, _ = trained
    client = make_client(model_dir=models)
    rows = orjson.loads(table.head(5).to_json(orient="records"))
    response = client.post("/encode", json={"model": "claims", "inputs": rows})
    assert response.status_code == 200, response.text


def test_without_the_flag_no_ids_are_answered(tmp_path) -> None:
    table = claims(300).drop(columns="note")
    table.to_csv(tmp_path / "c.csv", index=False)
    cmd = [sys.executable, "-m", "training", "train", "--data", str(tmp_path / "c.csv"), "--label-column", "kind"]
    cmd += ["--name", "c", "--models-dir", str(tmp_path / "m"), "--epochs", "2", "--formats", "onnx", "--no-baseline"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    m = read_manifest(tmp_path / "m" / "c" / "1")  # unconditional: the label is left out too, at its place
    assert [(d.name, d.position, d.identifier) for d in m.dropped_columns or []] == [
        ("claim_id", 0, None),
        ("kind", 2, None),
        ("ref", 3, None),
        ("seq", 5, None),
    ]


def test_original_order_puts_every_column_back() -> None:
    dropped = [DroppedColumn(name="id", reason="an ID", position=0), DroppedColumn(name="t", reason="x", position=3)]
    assert original_order(3, 1, dropped) == [dropped[0], 0, "label", dropped[1], 1, 2]
    assert original_order(3, None, dropped) == [dropped[0], 0, 1, dropped[1], 2]
    assert original_order(2, 0, [DroppedColumn(name="x", reason="y")]) is None  # a manifest from before positions
    twice = [DroppedColumn(name="a", reason="x", position=1), DroppedColumn(name="b", reason="x", position=1)]
    assert original_order(2, None, twice) is None  # positions repeated (a hand-edited manifest): not trusted
