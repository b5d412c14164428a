"""Shared fixtures: the committed default models and small models trained for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = ROOT / "models"
DEFAULT_MODEL_NAMES = ("digits-vae", "digits-cvae", "digits-qvae", "cancer-qvae")


def run_python(*args: str, cwd: Path = ROOT, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python ARGS...` in a fresh interpreter, as a user would from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"python {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_cvae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional Bernoulli model trained briefly on digits (real data, real export)."""
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    models_dir = tmp_path_factory.mktemp("models")
    opts = TrainOptions(
        data="digits",
        name="tiny-cvae",
        head="bernoulli",
        conditional=True,
        latent_dim=4,
        hidden=(32,),
        models_dir=models_dir,
        iwae_samples=5,
        train=TrainConfig(max_epochs=4, warmup_epochs=2, seed=3),
    )
    return train_and_export(opts, log=lambda _: None)
