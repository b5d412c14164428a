"""POST /generate/stream and `python -m training sample`: the same rows as /generate for a seed,
in every format, limits and errors, and a stream that stops when its client goes away."""

from __future__ import annotations

import csv
import io
import time

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import NotAcceptable
from core.formats import ARROW, CSV, NDJSON, PARQUET
from core.generation import BLOCK_ROWS
from tests.conftest import DEFAULT_MODELS_DIR, metric_value, run_python

PENGUINS = {"model": "penguins-cvae", "label": "Gentoo", "seed": 11}


@pytest.fixture(scope="module")
def big_client():
    """/generate allows 3,000 rows here, so that a non-streamed answer spans several blocks."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(model_dir=DEFAULT_MODELS_DIR, max_samples=3000, max_queue=8192, max_stream_rows=200_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _rows(client, n: int, accept: str, **body) -> tuple[list[str], list[list]]:
    response = client.post("/generate/stream", json={**PENGUINS, "n": n, **body}, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(accept)
    return _parse(response.content, accept)


def _parse(content: bytes, accept: str) -> tuple[list[str], list[list]]:
    """(column names, rows) of a streamed answer, values as Python objects (None for a gap)."""
    if accept == NDJSON:
        objects = [orjson.loads(line) for line in content.splitlines()]
        return list(objects[0]), [list(o.values()) for o in objects]
    if accept == CSV:
        header, *rows = list(csv.reader(io.StringIO(content.decode())))
        return header, rows
    table = pa.ipc.open_stream(content).read_all() if accept == ARROW else pq.read_table(io.BytesIO(content))
    return table.column_names, [list(r.values()) for r in table.to_pylist()]


def _cells(rows: list[list]) -> list[list]:
    """CSV fields (or JSON values) as comparable values: None for an empty field, numbers as floats."""

    def cell(value: object) -> object:
        if value is None or value == "":
            return None
        try:
            return float(value)  # type: ignore[arg-type]
        except ValueError:
            return value

    return [[cell(v) for v in row] for row in rows]


def test_stream_gives_generates_rows_for_a_seed_in_every_format(big_client):
    # 2,500 rows: three blocks, the last one partial
    answer = big_client.post("/generate", json={**PENGUINS, "n": 2500}).json()
    assert answer["mode"] == "sample"
    for accept in (NDJSON, ARROW, PARQUET):
        columns, rows = _rows(big_client, 2500, accept)
        assert columns == answer["columns"], accept
        assert rows == answer["samples"], accept
    columns, rows = _rows(big_client, 2500, CSV)
    assert columns == answer["columns"]
    assert _cells(rows) == _cells(answer["samples"])
    # whole blocks are the same in a longer request, and block 0 is /generate's single block
    assert _rows(big_client, 2 * BLOCK_ROWS, NDJSON)[1] == answer["samples"][: 2 * BLOCK_ROWS]
    one_block = big_client.post("/generate", json={**PENGUINS, "n": BLOCK_ROWS}).json()["samples"]
    assert one_block == answer["samples"][:BLOCK_ROWS]
    # mode mean and a temperature travel too; another seed gives other rows
    mean = big_client.post("/generate", json={**PENGUINS, "n": 1500, "mode": "mean", "temperature": 0.5}).json()
    assert _rows(big_client, 1500, NDJSON, mode="mean", temperature=0.5)[1] == mean["samples"]
    assert _rows(big_client, 50, NDJSON, seed=12)[1] != answer["samples"][:50]


def test_stream_of_a_model_without_columns_matches_generate(big_client):
    body = {"model": "digits-cvae", "label": "7", "seed": 5, "n": 1100}
    expected = np.asarray(big_client.post("/generate", json=body).json()["samples"], dtype=np.float32)
    response = big_client.post("/generate/stream", json=body, headers={"Accept": NDJSON})
    got = np.asarray([orjson.loads(line) for line in response.content.splitlines()], np.float32)  # arrays
    np.testing.assert_array_equal(got, expected)
    table = pa.ipc.open_stream(
        big_client.post("/generate/stream", json=body, headers={"Accept": ARROW}).content
    ).read_all()
    np.testing.assert_array_equal(np.column_stack([c.to_numpy() for c in table.columns]), expected)


def test_stream_formats_keep_types_and_gaps(big_client):
    response = big_client.post("/generate/stream", json={**PENGUINS, "n": 20000}, headers={"Accept": PARQUET})
    assert response.headers["x-rows"] == "20000"
    table = pq.read_table(io.BytesIO(response.content))
    types = dict(zip(table.column_names, map(str, table.schema.types), strict=True))
    assert types == {
        "species": "string",  # the label column, where the training table had it
        "island": "string",
        "bill_length_mm": "double",
        "bill_depth_mm": "double",
        "flipper_length_mm": "int64",
        "body_mass_g": "int64",
        "sex": "string",
        "year": "int64",
    }
    frame = table.to_pandas()
    assert str(frame["body_mass_g"].dtype) == "Int64"  # nullable: the column has gaps
    assert 0 < frame["sex"].isna().mean() < 0.2
    assert set(frame["island"].unique()) <= {"Biscoe", "Dream", "Torgersen"}


def test_stream_refuses_what_it_cannot_do(big_client):
    def post(body: dict, accept: str = NDJSON) -> httpx.Response:
        return big_client.post("/generate/stream", json=body, headers={"Accept": accept})

    too_many = post({**PENGUINS, "n": 200_001})
    assert too_many.status_code == 422
    assert "GENSERVE_MAX_STREAM_ROWS" in too_many.json()["error"]["message"]
    wrong_type = post({**PENGUINS, "n": 10}, accept="image/png")
    assert wrong_type.status_code == 406
    assert NDJSON in wrong_type.json()["error"]["message"]
    unknown = post({**PENGUINS, "label": "Emperor", "n": 10})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["valid_labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert post({"model": "digits-vae", "label": "3", "n": 10}).status_code == 422
    assert post({**PENGUINS, "n": 0}).status_code == 422
    assert post({"model": "nope", "n": 10}).status_code == 404
    over = big_client.post("/generate", json={**PENGUINS, "n": 3001})
    assert over.status_code == 422
    assert "/generate/stream" in over.json()["error"]["message"]
    # anything-goes Accept gets NDJSON
    assert post({**PENGUINS, "n": 3}, accept="*/*").headers["content-type"].startswith(NDJSON)


def test_accept_ranks_by_q_values() -> None:
    from core.formats import row_format

    assert row_format("text/csv;q=0, application/x-ndjson") == NDJSON  # q=0: not acceptable
    assert row_format("application/x-ndjson;q=0.1, text/csv;q=0.9") == CSV
    assert row_format("text/*") == CSV
    assert row_format("image/png, */*;q=0.1") == NDJSON
    assert row_format("application/x-parquet") == PARQUET
    assert row_format(None) == row_format("") == NDJSON
    with pytest.raises(NotAcceptable, match="a stream of rows is answered as one of"):
        row_format("application/json")


OFFERS = ["application/json", "text/csv", "application/x-npy", "image/png"]


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),  # no header: the first offer
        ("", "application/json"),
        ("application/json, text/csv;q=0.1", "application/json"),  # higher q wins, wherever listed
        ("text/csv;q=0.1, application/json", "application/json"),
        ("text/csv;q=0.5, application/x-npy", "application/x-npy"),
        ("text/csv, application/x-npy", "text/csv"),  # equal q: the first listed
        ("application/x-npy, text/csv", "application/x-npy"),
        ("application/x-npy;q=0, application/json", "application/json"),  # q=0: not acceptable
        ("application/json;q=0, */*", "text/csv"),  # ... even where a wildcard matches it
        ("text/csv;q=0, text/*, application/x-npy;q=0.5", "application/x-npy"),  # the most specific range counts
        ("*/*", "application/json"),  # a wildcard: the first offer it matches
        ("image/*", "image/png"),
        ("text/*;q=0.2, application/*;q=0.3", "application/json"),
        ("*/*, text/csv", "application/json"),  # equal q: the range listed first
        ("text/csv, */*", "text/csv"),
        ("TEXT/CSV; charset=utf-8; Q=0.9, application/json;q=0.8", "text/csv"),  # case and other params ignored
        ("text/csv;q=oops, image/png;q=0.1", "image/png"),  # a malformed q counts as 0
        ("text/csv;q=2, image/png;q=0.1", "image/png"),  # ... as does one outside 0 to 1
        ("text/csv;q=nan, image/png;q=0.1", "image/png"),
        ("text/csv;q=0.001, text/html", "text/csv"),
    ],
)
def test_negotiate_picks_the_offer_accept_prefers(accept, chosen) -> None:
    from core.formats import negotiate

    assert negotiate(accept, OFFERS) == chosen


def test_negotiate_answers_the_default_or_not_acceptable_when_no_offer_is_acceptable() -> None:
    from core.formats import negotiate

    for accept in ("text/html", "application/json;q=0, text/csv;q=0", "text/csv;q=junk", ",", "application/xml"):
        assert negotiate(accept, ["application/json", "text/csv"], default="application/json") == "application/json"
        with pytest.raises(NotAcceptable, match="Accept asked for"):
            negotiate(accept, ["application/json", "text/csv"])


def test_a_body_over_the_limit_counts_as_unmatched_as_elsewhere(make_client):
    client = make_client(max_body_bytes=2048)
    padded = {**PENGUINS, "n": 5, "pad": "x" * 3000}

    def counts() -> tuple[float, float]:  # the process's counters: other tests' requests count too
        text = client.get("/metrics").text
        return tuple(
            metric_value(text, "genserve_requests_total", endpoint=e, status="413") for e in ("unmatched", "/generate")
        )

    before = counts()
    assert client.post("/generate/stream", json=padded).status_code == 413
    assert client.post("/generate", json=padded).status_code == 413
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (2, 0)


def test_stream_needs_the_api_key(make_client):
    client = make_client(api_key="s3cret")
    assert client.post("/generate/stream", json={**PENGUINS, "n": 5}).status_code == 401
    ok = client.post("/generate/stream", json={**PENGUINS, "n": 5}, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200
    assert len(ok.content.splitlines()) == 5


def test_stream_stops_when_the_client_goes_away(live_server):
    server = live_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = {**PENGUINS, "n": 50_000_000}
        with client.stream("POST", "/generate/stream", json=body, headers={"Accept": CSV}) as response:
            assert response.status_code == 200
            chunks, received = response.iter_bytes(), 0  # held: a generator dropped closes the response
            while received < 2_000_000:
                received += len(next(chunks))
            # meanwhile short requests are answered
            assert client.post("/generate", json={**PENGUINS, "n": 1}).status_code == 200
            metrics = client.get("/metrics").text
            assert metric_value(metrics, "genserve_streams_active", model="penguins-cvae") == 1
        # the connection is closed here: within a second the server stops making rows
        disconnected = time.monotonic()
        while time.monotonic() - disconnected < 1.0:
            if metric_value(client.get("/metrics").text, "genserve_streams_active", model="penguins-cvae") == 0:
                break
            time.sleep(0.05)
        assert metric_value(client.get("/metrics").text, "genserve_streams_active", model="penguins-cvae") == 0
        sent = metric_value(client.get("/metrics").text, "genserve_stream_rows_total", model="penguins-cvae")
        time.sleep(0.3)
        assert metric_value(client.get("/metrics").text, "genserve_stream_rows_total", model="penguins-cvae") == sent
        assert 10_000 < sent < 5_000_000
        assert client.post("/generate", json={**PENGUINS, "n": 1}).status_code == 200


def test_cli_writes_a_million_rows_to_parquet(tmp_path, big_client):
    import pandas as pd

    out = tmp_path / "penguins.parquet"
    result = run_python(
        "-m", "training", "sample", "penguins-cvae", "--n", "1000000", "--label", "Gentoo", "--seed", "11",
        "--out", str(out), "--models-dir", str(DEFAULT_MODELS_DIR), check=True,
    )  # fmt: skip
    assert "wrote 1,000,000 rows of penguins-cvae@1" in result.stderr
    frame = pd.read_parquet(out)
    assert len(frame) == 1_000_000
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "species": "object",
        "island": "object",
        "bill_length_mm": "float64",
        "bill_depth_mm": "float64",
        "flipper_length_mm": "Int64",
        "body_mass_g": "Int64",
        "sex": "object",
        "year": "int64",
    }
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-1_000_000 // (64 * BLOCK_ROWS))
    # the same rows /generate gives for the seed (whole blocks: a partial last one draws in another order)
    expected = big_client.post("/generate", json={**PENGUINS, "n": 2048}).json()["samples"]
    head = frame.head(2048).astype(object)
    assert head.where(head.notna(), None).values.tolist() == expected


def test_cli_refuses_bad_arguments(tmp_path):
    def sample(*args: str):
        return run_python("-m", "training", "sample", *args, "--models-dir", str(DEFAULT_MODELS_DIR))

    cases = [
        (("penguins-cvae", "--n", "5", "--out", str(tmp_path / "x.xlsx")), "the suffix names the format"),
        (("digits-cvae", "--n", "5", "--out", str(tmp_path / "x.csv")), "no --label"),
        (("penguins-cvae", "--n", "5", "--label-weights", "Emperor=1", "--out", str(tmp_path / "x.csv")), "unknown"),
        (("penguins-cvae", "--n", "5", "--label-weights", "Gentoo=0", "--out", str(tmp_path / "x.csv")), "positive"),
        (("penguins-cvae", "--n", "5", "--label", "Emperor", "--out", str(tmp_path / "x.csv")), "valid labels"),
        (("digits-vae", "--n", "5", "--label", "3", "--out", str(tmp_path / "x.csv")), "unconditional"),
        (("nope", "--n", "5", "--out", str(tmp_path / "x.csv")), "no model named 'nope'"),
        (("penguins-cvae", "--n", "0", "--label", "Gentoo", "--out", str(tmp_path / "x.csv")), "at least 1"),
    ]
    for args, message in cases:
        result = sample(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    ok = sample("digits-vae", "--n", "3", "--seed", "1", "--out", str(tmp_path / "d.csv"))
    assert ok.returncode == 0, ok.stderr
    header, *rows = list(csv.reader(io.StringIO((tmp_path / "d.csv").read_text())))
    assert len(header) == 64 and len(rows) == 3
