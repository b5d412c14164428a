"""Promotion: a new version serves as `name` only if its figures hold up, or by hand; pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.manifest import Evaluation, Promotion
from core.repository import PIN_FILE, Pin, choose_default, compare, read_manifest, resolve
from tests.conftest import run_python


def train(models_dir: Path, epochs: int, *extra: str) -> str:
    args = ["--data", "breast-cancer", "--name", "bc", "--models-dir", str(models_dir), "--epochs", str(epochs)]
    args += ["--no-quality-report", "--formats", "onnx", "--seed", "1", *extra]
    return run_python("-m", "training", "train", *args, check=True).stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """bc@1 trained properly, then bc@2 trained for one epoch: far worse."""
    models = tmp_path_factory.mktemp("promotion")
    first = train(models, 60)
    second = train(models, 1)
    return models, first, second


def test_the_first_version_is_promoted(repo):
    models, first, _ = repo
    promotion = read_manifest(models / "bc" / "1").promotion
    assert promotion.promoted and promotion.compared_with is None and "no version served" in promotion.reason
    assert "bc@1: PROMOTED" in first


def test_a_worse_version_is_held_back(repo):
    models, _, second = repo
    promotion = read_manifest(models / "bc" / "2").promotion
    assert not promotion.promoted and promotion.compared_with == 1
    assert promotion.checks["metrics.elbo"].endswith("worse"), promotion.checks
    assert "metrics.elbo" in promotion.reason and "pin bc@2" in promotion.reason
    assert "bc@2: HELD BACK" in second and "metrics.elbo:" in second
    assert resolve(models, "bc") == models / "bc" / "1"  # what `python -m training evaluate bc` shows
    assert resolve(models, "bc@2") == models / "bc" / "2"


def test_the_service_serves_the_promoted_version_and_says_why(repo, make_client):
    models, _, _ = repo
    client = make_client(model_dir=models)
    detail = client.get("/models/bc").json()
    assert (detail["default_version"], detail["latest"]) == (1, 2)
    assert "newest promoted" in detail["default_reason"] and "held back: [2]" in detail["default_reason"]
    by_version = {v["version"]: v for v in detail["versions"]}
    assert by_version[1]["promoted"] and not by_version[2]["promoted"]
    assert "metrics.elbo" in by_version[2]["promotion"]
    assert client.post("/generate", json={"model": "bc", "n": 2}).json()["version"] == 1
    assert client.post("/generate", json={"model": "bc@2", "n": 2}).json()["version"] == 2
    assert client.get("/v2/models/bc.decoder").json()["versions"] == ["1", "2"]


def test_a_pin_serves_a_held_back_version_until_unpinned(repo, make_client):
    models, _, _ = repo
    client = make_client(model_dir=models)
    try:
        args = ["pin", "bc@2", "--reason", "canary", "--models-dir", str(models)]
        shown = run_python("-m", "training", *args, check=True)
        assert "bc resolves to bc@2" in shown.stdout
        assert client.post("/generate", json={"model": "bc", "n": 1}).json()["version"] == 1  # until a reload
        client.post("/admin/reload")
        detail = client.get("/models/bc").json()
        assert detail["default_version"] == 2 and detail["default_reason"] == f"pinned in {PIN_FILE} (canary)"
        assert client.post("/generate", json={"model": "bc", "n": 1}).json()["version"] == 2
        assert resolve(models, "bc") == models / "bc" / "2"
    finally:
        run_python("-m", "training", "unpin", "bc", "--models-dir", str(models), check=True)
    client.post("/admin/reload")
    assert client.get("/models/bc").json()["default_version"] == 1
    refused = run_python("-m", "training", "pin", "bc@9", "--models-dir", str(models))
    assert refused.returncode == 2 and "has no version 9" in refused.stderr
    assert run_python("-m", "training", "unpin", "bc", "--models-dir", str(models)).returncode == 2


def test_promote_and_no_promote_decide_by_hand(tmp_path):
    train(tmp_path, 1, "--no-promote")
    assert not read_manifest(tmp_path / "bc" / "1").promotion.promoted
    with pytest.raises(FileNotFoundError, match="no promoted version"):
        resolve(tmp_path, "bc")
    train(tmp_path, 1, "--promote")
    promotion = read_manifest(tmp_path / "bc" / "2").promotion
    assert promotion.promoted and promotion.reason == "promoted by --promote"
    assert resolve(tmp_path, "bc") == tmp_path / "bc" / "2"


def evaluation(**metrics: float) -> Evaluation:
    return Evaluation(split="test", rows=100, metrics=metrics)


def test_compare_holds_each_figure_to_its_margin():
    current = evaluation(elbo=-20.0, reconstruction_mse=0.5, coverage_90=0.90, conditional_accuracy=0.9)
    within = evaluation(elbo=-20.9, reconstruction_mse=0.54, coverage_90=0.88, conditional_accuracy=0.88)
    checks, worse = compare(within, current)
    assert worse == [] and len(checks) == 4
    beyond = evaluation(elbo=-23.5, reconstruction_mse=0.6, coverage_90=0.85, conditional_accuracy=0.8)
    _, worse = compare(beyond, current)
    assert worse == [
        "metrics.elbo",
        "metrics.reconstruction_mse",
        "metrics.conditional_accuracy",
        "metrics.coverage_90 (distance to 0.9)",
    ]
    assert compare(evaluation(elbo=-50.0), evaluation(reconstruction_mse=0.1)) == ({}, [])  # nothing in common


def test_choose_default():
    held = Promotion(promoted=False, reason="worse")
    ok = Promotion(promoted=True, reason="fine")
    assert choose_default({1: None, 2: ok, 3: held}, None) == (2, "the newest promoted version: fine; held back: [3]")
    assert choose_default({1: None, 3: held}, Pin(version=3)) == (3, f"pinned in {PIN_FILE}")
    version, why = choose_default({1: ok, 2: ok}, Pin(version=5))
    assert version == 2 and why.startswith("the pinned version 5 does not serve")
    version, why = choose_default({2: held}, None)
    assert version is None and "no version is promoted (held back: [2])" in why
