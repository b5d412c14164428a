"""Training, evaluation and export through the real command line and the real pipeline."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.repository import read_manifest
from tests.conftest import ROOT, run_python
from tests.heavy_tailed import write_awkward_table_csv, write_heavy_tailed_csv
from training.export import ExportError, ServedDecoder, _verify
from training.model import VAE, ModelConfig


def test_cli_trains_a_quantile_model_on_a_heavy_tailed_csv_with_calibrated_bands(tmp_path: Path) -> None:
    """A data set training was never tuned on: default settings must cover within 0.05 of nominal."""
    csv = write_heavy_tailed_csv(tmp_path / "heavy.csv")
    result = run_python(
        "-m",
        "training",
        "train",
        "--data",
        str(csv),
        "--label-column",
        "group",
        "--head",
        "quantile",
        "--name",
        "heavy",
        "--models-dir",
        str(tmp_path / "m"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(tmp_path / "m" / "heavy" / "1")
    metrics = manifest.evaluation.metrics
    assert abs(metrics["coverage_90"] - 0.90) <= 0.05, metrics
    assert abs(metrics["coverage_50"] - 0.50) <= 0.05, metrics
    assert metrics["pinball_loss"] < metrics["pinball_floor"]
    assert "baseline_gaussian_coverage_90" in metrics and "calibration_offset_max" in metrics
    assert manifest.labels is None and manifest.training.label_column == "group"
    assert "heavy: wrote" in result.stderr  # progress and summary go to stderr


def test_quantile_bands_are_calibrated_per_feature_on_zero_inflated_integer_and_heavy_tailed_columns(
    tmp_path: Path,
) -> None:
    """Every numeric feature's bands hold their nominal share of held-out rows, not only on average;
    and a quantile head that loses to its Gaussian baseline says so at export."""
    csv = write_awkward_table_csv(tmp_path / "awkward.csv")
    args = ["--data", str(csv), "--head", "quantile", "--name", "awk", "--models-dir", str(tmp_path / "m")]
    result = run_python("-m", "training", "train", *args, "--epochs", "60")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = read_manifest(tmp_path / "m" / "awk" / "1").evaluation
    coverage = evaluation.coverage_by_feature
    assert coverage is not None and set(coverage) == {"spend", "visits", "returns", "tenure"}
    for feature, bands in coverage.items():
        assert abs(bands["90"] - 0.90) <= 0.05 and abs(bands["50"] - 0.50) <= 0.05, (feature, coverage)
    assert evaluation.metrics["coverage_90_min"] >= 0.85 and evaluation.metrics["coverage_50_max"] <= 0.55
    assert "coverage on test" in result.stderr and "visits" in result.stderr
    # the awkward columns defeat this quantile head within 60 epochs; the export says so, loudly
    assert evaluation.metrics["pinball_loss"] > evaluation.metrics["baseline_gaussian_pinball_loss"]
    assert evaluation.warnings and "worse than its Gaussian baseline" in evaluation.warnings[0]
    assert "WARNING: awk@1: the quantile head scores worse" in result.stderr


def test_cli_conditional_gaussian_on_npz_then_evaluate(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=300)
    x = rng.normal(size=(300, 5)) + y[:, None]
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["a", "b", "c"])[y])
    args = [
        "-m",
        "training",
        "train",
        "--data",
        str(tmp_path / "d.npz"),
        "--head",
        "gaussian",
        "--conditional",
        "--name",
        "g",
        "--models-dir",
        str(tmp_path),
        "--epochs",
        "5",
        "--iwae-samples",
        "3",
    ]
    run_python(*args, check=True)
    run_python(*args, check=True)  # a second run is the next version
    shown = run_python("-m", "training", "evaluate", "g", "--models-dir", str(tmp_path), check=True).stdout
    assert shown.startswith("g@2: gaussian head") and "labels: a, b, c" in shown
    for key in ("elbo", "kl", "reconstruction_mse", "iwae_log_likelihood", "conditional_accuracy"):
        assert key in shown
    assert run_python("-m", "training", "evaluate", "g@1", "--models-dir", str(tmp_path)).stdout.startswith("g@1:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "digits", "--head", "quantile", "--name", "../x"], "invalid model name"),
        (["--data", "digits", "--head", "quantile", "--name", "x@2"], "name only"),
        (["--data", "breast-cancer", "--head", "bernoulli", "--name", "x"], "bernoulli head needs"),
        (["--data", "digits", "--name", "x", "--quantiles", "0.9,0.1"], "strictly increasing"),
        (["--data", "digits", "--name", "x", "--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_cli_refuses_bad_requests_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_python("-m", "training", "train", *args, "--models-dir", str(tmp_path))
    assert result.returncode == 2 and message in result.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_cli_conditional_needs_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n" + "".join(f"{i + 0.5},{i * 2.5}\n" for i in range(50)))
    result = run_python(
        "-m",
        "training",
        "train",
        "--data",
        str(tmp_path / "d.csv"),
        "--head",
        "gaussian",
        "--conditional",
        "--name",
        "x",
        "--models-dir",
        str(tmp_path),
    )
    assert result.returncode == 2 and "--conditional needs labels" in result.stderr


def test_evaluate_unknown_model(tmp_path: Path) -> None:
    result = run_python("-m", "training", "evaluate", "nothing", "--models-dir", str(tmp_path))
    assert result.returncode == 2 and "no model named 'nothing'" in result.stderr


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    def train(seed: int) -> dict:
        opts = TrainOptions(
            data="breast-cancer",
            name=f"det{seed}",
            head="quantile",
            conditional=True,
            latent_dim=2,
            hidden=(16,),
            models_dir=tmp_path,
            baseline=False,
            train=TrainConfig(max_epochs=6, warmup_epochs=2, seed=seed),
        )
        path = train_and_export(opts, log=lambda _: None)
        return read_manifest(path).evaluation.metrics

    first, again, other = train(5), train(5), train(6)
    assert first == again
    assert first != other


def test_export_refuses_graphs_that_differ_from_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    written = VAE(ModelConfig(input_dim=4, latent_dim=2, hidden=(8,), head="gaussian"))
    other = VAE(ModelConfig(input_dim=4, latent_dim=2, hidden=(8,), head="gaussian"))
    example = (torch.randn(6, 2),)
    path = tmp_path / "decoder.pt"
    torch.jit.trace(ServedDecoder(written), example).save(str(path))
    _verify("torchscript", path, ServedDecoder(written), example, ["z"], "decoder")  # the same: passes
    with pytest.raises(ExportError, match="differs from PyTorch"):
        _verify("torchscript", path, ServedDecoder(other), example, ["z"], "decoder")


def test_tiny_model_manifest_records_how_it_was_trained(tiny_cvae: Path) -> None:
    manifest = json.loads((tiny_cvae / "model.json").read_text())
    training = manifest["training"]
    assert training["seed"] == 3 and training["max_epochs"] == 4 and training["data"] == "digits"
    assert set(training["versions"]) >= {"torch", "onnxruntime", "numpy", "python"}
    assert manifest["evaluation"]["split"] == "test" and manifest["evaluation"]["rows"] == 270


def test_training_logs_plain_lines_and_keeps_its_history(tmp_path: Path) -> None:
    """Into a file (not a terminal): no carriage returns, one progress line every few seconds at
    most; the history and the loss figure land beside the model."""
    log = tmp_path / "train.log"
    args = ["train", "--data", "digits", "--name", "d", "--models-dir", str(tmp_path / "m"), "--epochs", "40"]
    args += ["--patience", "40", "--no-quality-report", "--formats", "onnx"]
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "training", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=600
        )
    took = time.monotonic() - started
    text = log.read_text()
    assert result.returncode == 0, text[-2000:]
    assert "\r" not in text
    progress = [line for line in text.splitlines() if line.startswith("d: epoch ")]
    assert 1 <= len(progress) <= took / 5 + 2, progress
    assert progress[-1].startswith("d: epoch 40/40, train ") and " kl " in progress[-1]
    version = tmp_path / "m" / "d" / "1"
    history = json.loads((version / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 41))
    assert history[-1]["train"] < history[0]["train"] and history[0]["beta"] < history[-1]["beta"] == 1.0
    assert (version / "loss.svg").read_text().startswith("<svg") and not (version / "columns.svg").exists()
