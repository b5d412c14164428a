"""GENSERVE_REQUEST_TIMEOUT_S: a request whose rows wait too long is answered 504 and its
queued rows are dropped, on a real model whose graph is slow (wide layers, trained for real)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import metric_value

WIDE = 4096  # two hidden layers this wide: ~17M multiply-adds per decoded row


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with one wide Gaussian-head model, trained one epoch on a small NPZ file."""
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    root = tmp_path_factory.mktemp("wide")
    x = np.random.default_rng(0).normal(size=(120, 8))
    np.savez(root / "data.npz", x=x)
    opts = TrainOptions(
        data=str(root / "data.npz"),
        name="wide",
        head="gaussian",
        latent_dim=2,
        hidden=(WIDE, WIDE),
        models_dir=root / "models",
        iwae_samples=2,
        train=TrainConfig(max_epochs=1, warmup_epochs=1),
        formats=("onnx",),
    )
    train_and_export(opts, log=lambda _: None)
    return root / "models"


def test_a_request_waiting_too_long_is_answered_504_and_its_rows_dropped(make_client, wide_model_dir: Path) -> None:
    # 1024 rows in chunks of 16: 64 runs of ~270M multiply-adds each, far longer than 0.1 s in all
    client = make_client(model_dir=wide_model_dir, max_batch_size=16, request_timeout_s=0.1)
    started = time.perf_counter()
    response = client.post("/generate", json={"model": "wide", "n": 1024, "seed": 0})
    took = time.perf_counter() - started
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "timeout" and "GENSERVE_REQUEST_TIMEOUT_S" in error["message"]
    assert took < 2, f"the 504 came after {took:.2f} s"

    # the service is not stuck behind the abandoned rows: a small request is answered at once
    small = client.post("/generate", json={"model": "wide", "n": 1, "seed": 0})
    assert small.status_code == 200, small.text
    assert np.array(small.json()["samples"]).shape == (1, 8)

    # the timed-out request's queued chunks were dropped, not run: far fewer than 64 batches ran
    text = client.get("/metrics").text
    runs = metric_value(text, "genserve_batch_size_rows_count", model="wide", graph="decoder")
    assert 1 <= runs < 40, runs  # warm-up runs are not counted; the small request's run is
    assert metric_value(text, "genserve_queue_depth_rows", model="wide", graph="decoder") == 0


def test_no_timeout_with_zero(make_client, wide_model_dir: Path) -> None:
    client = make_client(model_dir=wide_model_dir, max_batch_size=256, request_timeout_s=0)
    response = client.post("/generate", json={"model": "wide", "n": 512, "seed": 0})
    assert response.status_code == 200, response.text
    assert np.array(response.json()["samples"]).shape == (512, 8)
