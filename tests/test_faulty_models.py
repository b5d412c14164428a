"""Faulty models and hostile repositories: caught at load and at reload, never served, and
never in place of a working version. Admin and routing safety."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from core.repository import MANIFEST_FILE, sha256_file
from tests.conftest import DEFAULT_MODELS_DIR


def copy_model(root: Path, name: str, source: str = "digits-vae") -> Path:
    target = root / name / "1"
    shutil.copytree(DEFAULT_MODELS_DIR / source / "1", target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["name"] = name
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    return target


def rewrite_decoder(version_dir: Path, tail: str) -> None:
    """Append nodes to the ONNX decoder's output `probs`: `rowsK` keeps at most K rows, `nan`
    multiplies by NaN. The manifest's checksum follows, so only the graph's behaviour is wrong."""
    path = version_dir / "decoder.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["probs_raw" if o == "probs" else o for o in node.output]
    if tail.startswith("rows"):
        keep = int(tail.removeprefix("rows"))
        graph.initializer.extend(
            [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s0", 0), ("sk", keep), ("ax", 0))]
        )
        graph.node.append(helper.make_node("Slice", ["probs_raw", "s0", "sk", "ax"], ["probs"]))
    else:
        graph.initializer.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
        graph.node.append(helper.make_node("Mul", ["probs_raw", "nan"], ["probs"]))
    onnx.save(model, str(path))
    manifest = json.loads((version_dir / MANIFEST_FILE).read_text())
    for artifact in manifest["decoder"]["artifacts"]:
        if artifact["format"] == "onnx":
            artifact["sha256"] = sha256_file(path)
    manifest["decoder"]["artifacts"] = [a for a in manifest["decoder"]["artifacts"] if a["format"] == "onnx"]
    manifest["encoder"]["artifacts"] = [a for a in manifest["encoder"]["artifacts"] if a["format"] == "onnx"]
    (version_dir / MANIFEST_FILE).write_text(json.dumps(manifest))


def states(client) -> dict[str, tuple[str, str | None]]:
    return {f"{m['name']}@{m['version']}": (m["state"], m["reason"]) for m in client.get("/models").json()["models"]}


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("rows2", "decoder outputs of shapes [(2, 64)] for 64 rows in"),
        ("nan", "decoder output 'probs' is not finite for 1 row(s)"),
    ],
)
def test_a_faulty_graph_fails_at_load_and_never_replaces_a_working_version(tmp_path, make_client, tail, reason):
    copy_model(tmp_path, "good")
    rewrite_decoder(copy_model(tmp_path, "bad"), tail)
    client = make_client(model_dir=tmp_path)
    assert states(client)["good@1"] == ("ready", None)
    state, why = states(client)["bad@1"]
    assert state == "failed" and reason in why, why
    assert client.post("/generate", json={"model": "bad", "n": 5}).status_code == 404

    # the working version's files are replaced by the faulty ones on disk: the reload keeps it serving
    good = tmp_path / "good" / "1"
    rewrite_decoder(good, tail)
    report = client.post("/admin/reload").json()
    assert "good@1" in report["kept"] and reason in report["kept"]["good@1"], report
    answer = client.post("/generate", json={"model": "good", "n": 5, "seed": 1})
    assert answer.status_code == 200 and len(answer.json()["samples"]) == 5
    assert np.isfinite(answer.json()["samples"]).all()


def test_a_graph_that_drops_rows_at_run_time_fails_the_request_naming_the_model(tmp_path, make_client):
    """A graph that passes its warm-up (1 row to the largest batch, 3) but drops rows beyond: with
    batching off, a request's 5 rows run together."""
    rewrite_decoder(copy_model(tmp_path, "short"), "rows3")
    client = make_client(model_dir=tmp_path, max_batch_size=3, batching=False)
    assert states(client)["short@1"][0] == "ready"
    answer = client.post("/generate", json={"model": "short", "n": 5})
    assert answer.status_code == 500, answer.text
    message = answer.json()["error"]["message"]
    assert "short@1" in message and "[(3, 64)] for 5 rows in" in message and "faulty" in message
    # a stream makes its first block before its answer starts: the same JSON 500, not a 200 cut short
    streamed = client.post("/generate/stream", json={"model": "short", "n": 5})
    assert streamed.status_code == 500 and streamed.json()["error"]["message"] == message


def test_normalization_that_overflows_float32_is_refused(tmp_path, make_client):
    for name, scale in (("huge", 1e39), ("tiny", 1e-50)):
        version = copy_model(tmp_path, name)
        manifest = json.loads((version / MANIFEST_FILE).read_text())
        manifest["normalization"]["scale"] = [scale] * len(manifest["normalization"]["scale"])
        (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    found = states(make_client(model_dir=tmp_path))
    for name in ("huge", "tiny"):
        state, why = found[f"{name}@1"]
        assert state == "failed" and "normalization scale must lie between 1e-30 and 1e+30" in why, why


def test_non_regular_files_links_out_and_duplicate_versions_are_refused_with_a_reason(tmp_path, make_client):
    copy_model(tmp_path, "good")
    fifo = copy_model(tmp_path, "fifo")
    (fifo / MANIFEST_FILE).unlink()
    os.mkfifo(fifo / MANIFEST_FILE)
    linked = copy_model(tmp_path, "linked")
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(linked / "decoder.onnx", outside)
    (linked / "decoder.onnx").symlink_to(outside)
    shutil.copytree(copy_model(tmp_path, "twice"), tmp_path / "twice" / "01")
    big = copy_model(tmp_path, "big")
    manifest = json.loads((big / MANIFEST_FILE).read_text())
    manifest["version"] = 10**30
    (big / MANIFEST_FILE).write_text(json.dumps(manifest))

    client = make_client(model_dir=tmp_path)
    found = states(client)
    assert found["good@1"] == ("ready", None)
    assert found["fifo@1"] == ("failed", "model.json is not a regular file")
    assert (
        found["linked@1"][0] == "failed" and "decoder.onnx links out of its version directory" in found["linked@1"][1]
    )
    assert found["twice@1"] == ("failed", "directories 1, 01 all claim version 1: remove all but one")
    assert found["big@1"][0] == "failed" and "version" in found["big@1"][1]
    assert client.get("/models").status_code == 200  # every answer still encodes
    report = client.post("/admin/reload").json()  # and a reload does not hang on the FIFO
    assert report["failed"].keys() >= {"fifo@1", "linked@1", "twice@1", "big@1"}


def test_admin_reload_refuses_cross_origin_and_non_json_requests(make_client):
    client = make_client()
    assert client.post("/admin/reload").status_code == 200
    assert client.post("/admin/reload", headers={"content-type": "application/json"}).status_code == 200
    refused = client.post("/admin/reload", headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]["message"]
    assert client.post("/admin/reload", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    same = client.post("/admin/reload", headers={"origin": "http://testserver"})
    assert same.status_code == 200
    text = client.post("/admin/reload", content=b"x", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "application/json" in text.json()["error"]["message"]


def test_no_redirect_to_a_client_supplied_host(make_client):
    answer = make_client().post(
        "/generate/", json={"model": "digits-vae"}, headers={"host": "evil.example"}, follow_redirects=False
    )
    assert answer.status_code == 404 and "location" not in answer.headers


def test_an_empty_api_key_is_no_key_and_says_so(make_client, monkeypatch, caplog):
    monkeypatch.setenv("GENSERVE_API_KEY", "")
    from app.settings import Settings

    with caplog.at_level(logging.WARNING, logger="genserve"):
        client = make_client(**Settings().model_dump(include={"api_key"}))
    assert client.post("/generate", json={"model": "digits-vae"}).status_code == 200
    assert "GENSERVE_API_KEY is set but empty" in caplog.text


def test_a_dead_workers_gauges_are_not_summed(tmp_path, monkeypatch):
    """A worker killed with a queue (its clean-up never ran) leaves its live gauge file; /metrics
    drops it once the process is gone."""
    import subprocess
    import sys

    from app import metrics

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = (
        "import os; from app import metrics; "
        "metrics.QUEUE_DEPTH.labels('m', '1', 'decoder').set(1024); os._exit(0)"  # no clean-up: as if killed
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path(__file__).parent.parent)
    assert any(p.name.startswith("gauge_live") for p in tmp_path.iterdir())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics.render()[0].decode()
    assert 'genserve_queue_depth_rows{graph="decoder",model="m",version="1"} 1024' not in text
    assert not any(p.name.startswith("gauge_live") for p in tmp_path.iterdir())
