"""The default models committed under models/: intact, within their targets, and loadable
by onnxruntime alone and by torch.jit.load alone, with matching outputs."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.repository import read_manifest, resolve, sha256_file
from tests.conftest import COMMITTED_MODELS, DEFAULT_MODEL_NAMES, DEFAULT_MODELS_DIR, ROOT, run_python


@pytest.fixture(scope="module", params=DEFAULT_MODEL_NAMES)
def model_dir(request: pytest.FixtureRequest) -> Path:
    return resolve(DEFAULT_MODELS_DIR, request.param)


def test_default_model_is_intact_and_small(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    total = 0
    for graph in (manifest.encoder, manifest.decoder):
        assert {a.format for a in graph.artifacts} == {"onnx", "torchscript"}
        for artifact in graph.artifacts:
            assert sha256_file(model_dir / artifact.path) == artifact.sha256
            total += (model_dir / artifact.path).stat().st_size
    assert total < 2_000_000


def test_digits_cvae_generates_the_asked_digit() -> None:
    metrics = read_manifest(resolve(DEFAULT_MODELS_DIR, "digits-cvae")).evaluation.metrics
    assert metrics["conditional_accuracy"] >= 0.95


def test_cancer_qvae_bands_are_calibrated_and_beat_the_marginal_floor() -> None:
    manifest = read_manifest(resolve(DEFAULT_MODELS_DIR, "cancer-qvae"))
    metrics = manifest.evaluation.metrics
    assert manifest.head == "quantile" and manifest.labels == ["malignant", "benign"]
    assert abs(metrics["coverage_90"] - 0.90) <= 0.03
    assert abs(metrics["coverage_50"] - 0.50) <= 0.03
    assert metrics["pinball_loss"] <= 0.5 * metrics["pinball_floor"]
    assert {"baseline_gaussian_coverage_90", "baseline_gaussian_coverage_50"} <= set(metrics)


# Each script runs in a fresh interpreter that imports neither `training` nor `app`: it reads
# the manifest as plain JSON and runs the graphs with one runtime only.
ORT_ONLY = """
import json, sys, numpy as np, onnxruntime as ort
model_dir, rows_file, out_file = sys.argv[1:]
manifest, rows = json.load(open(model_dir + "/model.json")), np.load(rows_file)
result = {}
for graph, first in (("encoder", "x"), ("decoder", "z")):
    art = next(a for a in manifest[graph]["artifacts"] if a["format"] == "onnx")
    session = ort.InferenceSession(model_dir + "/" + art["path"], providers=["CPUExecutionProvider"])
    feed = {art["inputs"][0]: rows[first]}
    if len(art["inputs"]) == 2:
        feed[art["inputs"][1]] = rows["y"]
    for name, value in zip(art["outputs"], session.run(None, feed)):
        result[graph + "." + name] = value
assert "torch" not in sys.modules and "training" not in sys.modules and "app" not in sys.modules
np.savez(out_file, **result)
"""

TORCHSCRIPT_ONLY = """
import json, sys, numpy as np, torch
model_dir, rows_file, out_file = sys.argv[1:]
manifest, rows = json.load(open(model_dir + "/model.json")), np.load(rows_file)
result = {}
for graph, first in (("encoder", "x"), ("decoder", "z")):
    art = next(a for a in manifest[graph]["artifacts"] if a["format"] == "torchscript")
    module = torch.jit.load(model_dir + "/" + art["path"])
    args = [torch.from_numpy(rows[first])] + ([torch.from_numpy(rows["y"])] if len(art["inputs"]) == 2 else [])
    with torch.no_grad():
        for name, value in zip(art["outputs"], module(*args)):
            result[graph + "." + name] = value.numpy()
assert "onnxruntime" not in sys.modules and "training" not in sys.modules and "app" not in sys.modules
np.savez(out_file, **result)
"""


def test_artifacts_load_and_agree_outside_the_training_code(model_dir: Path, tmp_path: Path) -> None:
    from training import data

    manifest = read_manifest(model_dir)
    ds = data.load(manifest.training.data)
    norm = manifest.normalization
    x = ((ds.x[:50] - np.array(norm.shift)) / np.array(norm.scale)).astype(np.float32)
    z = np.random.default_rng(0).normal(size=(50, manifest.latent_dim)).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=x, z=z, y=ds.y[:50].astype(np.int64))
    outputs = {}
    for runtime, script in (("onnx", ORT_ONLY), ("torchscript", TORCHSCRIPT_ONLY)):
        out = tmp_path / f"{runtime}.npz"
        run_python("-c", script, str(model_dir), str(tmp_path / "rows.npz"), str(out), check=True)
        outputs[runtime] = dict(np.load(out))
    assert outputs["onnx"].keys() == outputs["torchscript"].keys()
    assert len(outputs["onnx"]) == 2 + len(manifest.decoder.artifacts[0].outputs)
    for key, value in outputs["onnx"].items():
        assert value.shape[0] == 50
        np.testing.assert_allclose(value, outputs["torchscript"][key], atol=1e-4, err_msg=key)


def test_evaluate_command_prints_the_stored_metrics() -> None:
    args = ["evaluate", "digits-cvae", "--models-dir", str(DEFAULT_MODELS_DIR)]
    shown = run_python("-m", "training", *args, check=True).stdout
    stored = json.loads((resolve(DEFAULT_MODELS_DIR, "digits-cvae") / "model.json").read_text())
    accuracy = stored["evaluation"]["metrics"]["conditional_accuracy"]
    assert f"conditional_accuracy  {accuracy:.4f}" in shown


@pytest.mark.parametrize("name", ["cancer-qvae", "penguins-cvae"])
def test_tabular_default_models_carry_a_quality_report_without_copies(name: str) -> None:
    quality = read_manifest(resolve(DEFAULT_MODELS_DIR, name)).evaluation.quality
    assert quality is not None and quality["exact_copies"] == 0 and quality["tstr_auc"] > 0.95
    assert quality["quality"] > 0.8 and quality["label_faithfulness"] > 0.9


def test_cancer_rows_are_recognised_as_their_label_at_least_as_often_as_real_rows() -> None:
    """The quality report's forest, trained on real training rows: per label, the share of generated rows
    it recognises as the label asked for, against the share of real test rows of that label."""
    quality = read_manifest(resolve(DEFAULT_MODELS_DIR, "cancer-qvae")).evaluation.quality
    assert quality is not None
    made, real = quality["label_faithfulness_by_label"], quality["real_recognition_by_label"]
    assert isinstance(made, dict) and isinstance(real, dict) and set(made) == set(real) == {"benign", "malignant"}
    assert all(made[label] >= real[label] for label in real), (made, real)


@pytest.mark.parametrize("name", ["cancer-qvae", "penguins-cvae"])
def test_sampled_rows_have_the_real_spread_of_each_label(name: str) -> None:
    """mode: sample, per label: generated / real standard deviation within [0.8, 1.25] for every numeric column."""
    import pandas as pd

    from core.offline import Sampler
    from training import data

    sampler = Sampler(resolve(DEFAULT_MODELS_DIR, name))
    ds = data.load(sampler.manifest.training.data)
    rng = np.random.default_rng(0)
    for k, label in enumerate(sampler.manifest.labels or []):
        made = sampler.generate(3000, k, rng, "sample")
        if ds.frame is not None:  # a table: its numeric columns
            numeric = [c.name for c in ds.columns if c.kind in ("continuous", "integer")]
            made = pd.DataFrame(dict(zip(sampler.names, made, strict=True)))[numeric].astype(float).to_numpy()
            real = ds.frame.loc[ds.y == k, numeric].astype(float).to_numpy()
        else:
            real = ds.x[ds.y == k]
        ratio = np.nanstd(made, axis=0) / np.nanstd(real, axis=0)
        assert ((ratio >= 0.8) & (ratio <= 1.25)).all(), (label, ratio.round(3))


def test_the_tests_copy_every_default_model():
    from training.defaults import DEFAULT_MODELS

    assert {m.name for m in DEFAULT_MODELS} == set(COMMITTED_MODELS)
    assert DEFAULT_MODELS_DIR != ROOT / "models" and sorted(p.name for p in DEFAULT_MODELS_DIR.iterdir()) == sorted(
        COMMITTED_MODELS
    )
