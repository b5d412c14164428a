"""Hot reload: POST /admin/reload and SIGHUP, while the service keeps serving."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_MODELS_DIR, metric_value, real_rows
from tests.test_registry import copy_model, rewrite_manifest

ROWS, LABELS = real_rows("digits-cvae", 4)


def generate(client, ref: str = "m") -> httpx.Response:
    return client.post("/generate", json={"model": ref, "n": 2, "label": "3", "seed": 1})


def served_versions(client_or_url) -> dict[int, str]:
    """Versions of `m` and their states, from an in-process client or a live server's URL (a new connection)."""
    get = client_or_url.get if not isinstance(client_or_url, str) else lambda path: httpx.get(client_or_url + path)
    return {m["version"]: m["state"] for m in get("/models").json()["models"] if m["name"] == "m"}


def test_reload_adds_retries_keeps_replaces_and_removes_versions(make_client, tmp_path: Path) -> None:
    copy_model("digits-cvae", tmp_path, "m")
    client = make_client(model_dir=tmp_path)
    report = client.post("/admin/reload").json()
    assert report["status"] == "reloaded" and report["unchanged"] == ["m@1"]
    assert report["loaded"] == report["removed"] == [] and report["failed"] == {}

    copy_model("digits-cvae", tmp_path, "m", version=2)
    assert client.post("/admin/reload").json()["loaded"] == ["m@2"]
    assert generate(client).json()["version"] == 2
    assert served_versions(client) == {1: "ready", 2: "ready"}

    # A broken new version is listed, never served: `m` stays on version 2.
    broken = copy_model("digits-cvae", tmp_path, "m", version=3)
    (broken / "encoder.onnx").unlink()
    report = client.post("/admin/reload").json()
    assert report["failed"] == {"m@3": "missing file: encoder.onnx"}
    assert generate(client).json()["version"] == 2
    assert generate(client, "m@3").status_code == 404

    # Version 2 changed in place into something broken: the loaded copy keeps serving.
    (tmp_path / "m" / "2" / "model.json").write_text("{not json")
    report = client.post("/admin/reload").json()
    assert list(report["kept"]) == ["m@2"] and "invalid" in report["kept"]["m@2"]
    assert generate(client).json()["version"] == 2
    listed = {m["version"]: m for m in client.get("/models").json()["models"]}
    assert listed[2]["state"] == "ready" and "still serving the one loaded before" in listed[2]["reason"]

    # A failed version is tried again on the next reload; once fixed, it serves.
    shutil.copy(DEFAULT_MODELS_DIR / "digits-cvae" / "1" / "encoder.onnx", broken / "encoder.onnx")
    report = client.post("/admin/reload").json()
    assert report["loaded"] == ["m@3"] and list(report["kept"]) == ["m@2"]
    assert generate(client).json()["version"] == 3

    # A version changed in place into another good copy is swapped in; a removed one goes.
    rewrite_manifest(tmp_path / "m" / "3", lambda m: m["evaluation"]["metrics"].update(retrained=1.0))
    shutil.rmtree(tmp_path / "m" / "1")
    report = client.post("/admin/reload").json()
    assert report["replaced"] == ["m@3"] and report["removed"] == ["m@1"]
    assert generate(client, "m@1").status_code == 404
    assert client.get("/models/m").json()["metrics"]["retrained"] == 1.0
    assert generate(client).status_code == 200
    assert served_versions(client) == {2: "ready", 3: "ready"}
    deadline = time.monotonic() + 10  # the removed version's series go once it is retired
    while 'model="m",version="1"' in (text := client.get("/metrics").text):  # batch, queue, loaded series
        assert time.monotonic() < deadline, "m@1's series stayed"
        time.sleep(0.05)
    assert metric_value(text, "genserve_model_loaded", model="m", version="3") == 1
    assert 'genserve_batch_size_rows_count{graph="decoder",model="m",version="3"}' in text


def test_a_missing_repository_is_refused_and_the_models_keep_serving(make_client, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    copy_model("digits-cvae", repository, "m")
    client = make_client(model_dir=repository)
    repository.rename(tmp_path / "elsewhere")  # an unmounted volume, a moved directory
    refused = client.post("/admin/reload")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "repository_unavailable"
    assert "nothing was changed" in refused.json()["error"]["message"]
    assert generate(client).status_code == 200 and client.get("/readyz").status_code == 200
    (tmp_path / "elsewhere").rename(repository)
    assert client.post("/admin/reload").json()["unchanged"] == ["m@1"]


def test_a_replacement_on_another_backend_moves_the_loaded_gauge(make_client, tmp_path: Path) -> None:
    copy_model("digits-cvae", tmp_path, "m")
    client = make_client(model_dir=tmp_path)
    # the same version rewritten to carry TorchScript only: served by the torchscript backend
    rewrite_manifest(
        tmp_path / "m" / "1", lambda m: [m[g].update(artifacts=m[g]["artifacts"][1:]) for g in ("encoder", "decoder")]
    )
    assert client.post("/admin/reload").json()["replaced"] == ["m@1"]
    text = client.get("/metrics").text
    assert metric_value(text, "genserve_model_loaded", model="m", version="1", backend="onnx") == 0
    assert metric_value(text, "genserve_model_loaded", model="m", version="1", backend="torchscript") == 1
    assert generate(client).status_code == 200


def test_a_version_that_cannot_have_its_device_fails_alone_at_a_reload(make_client, tmp_path, monkeypatch) -> None:
    """At start-up a device that cannot be had stops the service; at a reload it is that version's
    failure. No GPU here: the device error is raised for version 2's files only. (Metrics are
    process-wide: a model name no other test uses.)"""
    import app.models.registry
    from core.errors import StartupError

    copy_model("digits-cvae", tmp_path, "dev")
    client = make_client(model_dir=tmp_path)
    real_load_graph = app.models.registry.load_graph

    def load_graph(artifact, path, device, threads):
        if path.name == "2":
            raise StartupError("GENSERVE_DEVICE=cuda, but onnxruntime offers no CUDAExecutionProvider")
        return real_load_graph(artifact, path, device, threads)

    monkeypatch.setattr(app.models.registry, "load_graph", load_graph)
    copy_model("digits-cvae", tmp_path, "dev", version=2)
    copy_model("digits-vae", tmp_path, "other")
    report = client.post("/admin/reload").json()
    assert report["loaded"] == ["other@1"] and "CUDAExecutionProvider" in report["failed"]["dev@2"]
    assert generate(client, "dev").json()["version"] == 1
    assert metric_value(client.get("/metrics").text, "genserve_model_loaded", model="dev", version="2") == 0


def test_reload_requires_the_api_key_when_one_is_set(make_client) -> None:
    client = make_client(api_key="s3cret")
    refused = client.post("/admin/reload")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert client.post("/admin/reload", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_requests_in_flight_during_reloads_all_succeed(live_server, tmp_path: Path) -> None:
    """Versions come and go under steady traffic on `m` (its latest version), through both
    reload triggers; every request gets a full answer, some from each version."""
    copy_model("digits-cvae", tmp_path, "m")
    # graphs run in the inference thread: a request waits at each graph, where a reload can strike
    server = live_server(model_dir=tmp_path, inline_max_ms=0)
    failures: list[str] = []
    versions_seen: set[int] = set()
    stop = threading.Event()
    sent = [0]

    def traffic(path: str, body: dict) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(path, json=body)
                sent[0] += 1
                if response.status_code != 200:
                    failures.append(f"{path}: {response.status_code} {response.text[:200]}")
                else:
                    versions_seen.add(response.json()["version"])

    threads = [
        threading.Thread(target=traffic, args=("/reconstruct", {"model": "m", "inputs": ROWS, "labels": LABELS})),
        threading.Thread(
            target=traffic, args=("/reconstruct", {"model": "m", "inputs": ROWS[:1], "labels": LABELS[:1]})
        ),
        threading.Thread(target=traffic, args=("/encode", {"model": "m", "inputs": ROWS, "labels": LABELS})),
        threading.Thread(target=traffic, args=("/generate", {"model": "m", "n": 8, "label": "3"})),
    ]
    for t in threads:
        t.start()
    try:
        for version in range(2, 10):
            copy_model("digits-cvae", tmp_path, "m", version=version)
            shutil.rmtree(tmp_path / "m" / str(version - 1))
            if version % 2:
                server.process.send_signal(signal.SIGHUP)
                _wait_for(lambda v=version: served_versions(server.url) == {v: "ready"})
            else:
                report = httpx.post(server.url + "/admin/reload", timeout=30).json()
                assert report["loaded"] == [f"m@{version}"] and report["removed"] == [f"m@{version - 1}"]
            _wait_for(lambda v=version: v in versions_seen)  # traffic reached the new version
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert versions_seen == set(range(1, 10)) and sent[0] > 50


def test_reload_with_several_workers_replaces_every_worker(live_server, tmp_path: Path) -> None:
    copy_model("digits-cvae", tmp_path, "m")
    server = live_server(model_dir=tmp_path, workers=2)
    copy_model("digits-cvae", tmp_path, "m", version=2)
    answer = httpx.post(server.url + "/admin/reload", timeout=30)
    assert answer.status_code == 202 and answer.json()["status"] == "restarting workers"

    # fresh connections spread over the workers: 20 answers in a row must all know version 2
    _wait_for(lambda: all(2 in served_versions(server.url) for _ in range(20)), timeout=60)
    with httpx.Client(base_url=server.url) as client:
        assert generate(client).json()["version"] == 2


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"not reached within {timeout} s")
