"""The registry: broken models beside good ones, version resolution, backends and devices."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import StartupError
from core.repository import sha256_file
from tests.conftest import DEFAULT_MODELS_DIR, real_rows, run_python


def copy_model(name: str, root: Path, as_name: str | None = None, version: int = 1) -> Path:
    target = root / (as_name or name) / str(version)
    shutil.copytree(DEFAULT_MODELS_DIR / name / "1", target)
    if as_name or version != 1:
        manifest = json.loads((target / "model.json").read_text())
        manifest["name"], manifest["version"] = as_name or name, version
        (target / "model.json").write_text(json.dumps(manifest))
    return target


def rewrite_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "model.json").read_text())
    change(manifest)
    (path / "model.json").write_text(json.dumps(manifest))


@pytest.fixture
def mixed_repository(tmp_path: Path) -> Path:
    """Good models beside every kind of broken one."""
    copy_model("digits-vae", tmp_path)
    copy_model("cancer-qvae", tmp_path)
    (copy_model("digits-vae", tmp_path, "bad-json") / "model.json").write_text("{not json")
    rewrite_manifest(copy_model("digits-vae", tmp_path, "bad-schema"), lambda m: m.pop("latent_dim"))
    (copy_model("digits-vae", tmp_path, "missing-file") / "decoder.onnx").unlink()
    with (copy_model("digits-vae", tmp_path, "bad-checksum") / "decoder.onnx").open("ab") as f:
        f.write(b"\0")
    corrupt = copy_model("digits-vae", tmp_path, "corrupt-onnx")
    (corrupt / "decoder.onnx").write_bytes(b"this is not an onnx graph")

    def record_checksum(m: dict) -> None:
        m["decoder"]["artifacts"][0]["sha256"] = sha256_file(corrupt / "decoder.onnx")

    rewrite_manifest(corrupt, record_checksum)

    # A manifest whose input size disagrees with its graphs.
    def claim_63_features(m: dict) -> None:
        m["input_dim"], m["image_shape"] = 63, None
        m["feature_names"] = m["feature_names"][:63]
        m["normalization"] = {k: v[:63] for k, v in m["normalization"].items()}

    rewrite_manifest(copy_model("digits-vae", tmp_path, "wrong-size"), claim_63_features)
    # Graphs of another head than the manifest's (quantile graphs under a Bernoulli manifest).
    wrong = copy_model("digits-vae", tmp_path, "wrong-head")
    for graph in ("encoder", "decoder"):
        shutil.copy(DEFAULT_MODELS_DIR / "digits-qvae" / "1" / f"{graph}.onnx", wrong / f"{graph}.onnx")

    def record_wrong(m: dict) -> None:
        for graph in ("encoder", "decoder"):
            m[graph]["artifacts"][0]["sha256"] = sha256_file(wrong / f"{graph}.onnx")
            m[graph]["artifacts"][0]["outputs"] = ["quantiles"] if graph == "decoder" else ["mean", "log_var"]

    rewrite_manifest(wrong, record_wrong)
    # A good version 1 and a broken version 2 of the same model.
    copy_model("digits-cvae", tmp_path)
    (copy_model("digits-cvae", tmp_path, version=2) / "encoder.onnx").unlink()
    return tmp_path


def test_broken_models_are_listed_with_reasons_and_the_good_ones_serve(make_client, mixed_repository: Path) -> None:
    client = make_client(model_dir=mixed_repository)
    records = {f"{m['name']}@{m['version']}": m for m in client.get("/models").json()["models"]}
    ready = {k for k, m in records.items() if m["state"] == "ready"}
    assert ready == {"digits-vae@1", "cancer-qvae@1", "digits-cvae@1"}
    reasons = {k: m["reason"] for k, m in records.items() if m["state"] == "failed"}
    assert "invalid model.json" in reasons["bad-json@1"]
    assert "latent_dim" in reasons["bad-schema@1"]
    assert "missing file: decoder.onnx" in reasons["missing-file@1"]
    assert "checksum mismatch for decoder.onnx" in reasons["bad-checksum@1"]
    assert "decoder.onnx failed:Protobuf parsing failed" in reasons["corrupt-onnx@1"]
    assert "encoder failed its warm-up inference" in reasons["wrong-size@1"] and "Got: 63" in reasons["wrong-size@1"]
    assert (
        "decoder outputs of shapes [(1, 5, 64)] for 1 rows in, where the manifest implies [(1, 64)]"
        in reasons["wrong-head@1"]
    )
    assert "missing file: encoder.onnx" in reasons["digits-cvae@2"]

    assert client.get("/readyz").status_code == 200
    assert client.post("/generate", json={"model": "digits-vae", "seed": 0}).status_code == 200
    # `name` resolves to the latest version that loaded; the broken one says why it is not served
    assert client.post("/generate", json={"model": "digits-cvae", "label": "1"}).json()["version"] == 1
    response = client.post("/generate", json={"model": "digits-cvae@2", "label": "1"})
    assert response.status_code == 404 and "missing file: encoder.onnx" in response.json()["error"]["message"]
    response = client.post("/generate", json={"model": "bad-checksum"})
    assert response.status_code == 404 and "checksum mismatch" in response.json()["error"]["message"]


def test_ready_policy_all_waits_for_every_version(make_client, mixed_repository: Path) -> None:
    """The default policy (any) is ready above, broken versions and all; `all` is not, and says which failed."""
    client = make_client(model_dir=mixed_repository, ready_policy="all")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert "GENSERVE_READY_POLICY=all and 8 model version(s) failed" in error["message"]
    assert "missing file: encoder.onnx" in error["details"]["digits-cvae@2"]
    assert client.get("/v2/health/ready").status_code == 503
    # not ready is a signal to load balancers, not a refusal: the good models still answer
    assert client.post("/generate", json={"model": "digits-vae", "seed": 0}).status_code == 200


def test_not_ready_without_models(make_client, tmp_path: Path) -> None:
    client = make_client(model_dir=tmp_path)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "not_ready"
    assert client.get("/healthz").status_code == 200


def test_torchscript_backend_serves_the_same_answers_as_onnx(make_client) -> None:
    onnx, torchscript = make_client(backend="onnx"), make_client(backend="torchscript")
    assert {m["backend"] for m in torchscript.get("/models").json()["models"]} == {"torchscript"}
    rows, labels = real_rows("cancer-qvae", 16)
    for path, body in [
        ("/generate", {"model": "digits-cvae", "n": 16, "label": "4", "seed": 3}),
        ("/generate", {"model": "digits-qvae", "n": 16, "seed": 3}),
        ("/encode", {"model": "cancer-qvae", "inputs": rows, "labels": labels}),
        ("/reconstruct", {"model": "cancer-qvae", "inputs": rows, "labels": labels}),
        ("/quantiles", {"model": "cancer-qvae", "inputs": rows, "labels": labels}),
        ("/generate", {"model": "penguins-cvae", "n": 16, "label": "Gentoo", "seed": 3, "mode": "mean"}),
    ]:
        a, b = onnx.post(path, json=body).json(), torchscript.post(path, json=body).json()
        if "columns" in a:  # a table's typed rows: the same values (the central values of the same graphs)
            assert a == b, path
            continue
        for key in set(a) - {"model", "version", "label", "seed", "levels", "mode"}:
            scale = max(1.0, float(np.abs(np.array(a[key])).max()))  # cancer features reach ~4000
            np.testing.assert_allclose(a[key], b[key], atol=1e-4 * scale, err_msg=f"{path} {key}")


def test_cuda_device_fails_loudly_without_a_gpu(make_client) -> None:
    from app.models.runtimes.onnx import cuda_available

    if cuda_available():
        pytest.skip("this machine has a CUDA provider; the GPU test below covers it")
    with pytest.raises(StartupError, match="GENSERVE_DEVICE=cuda, but onnxruntime offers no CUDAExecutionProvider"):
        make_client(device="cuda")


def test_auto_device_falls_back_to_cpu_and_says_so(make_client, caplog: pytest.LogCaptureFixture) -> None:
    from app.models.runtimes.onnx import cuda_available

    if cuda_available():
        pytest.skip("this machine has a GPU: auto picks it")
    client = make_client(device="auto")
    assert {m["device"] for m in client.get("/models").json()["models"]} == {"cpu"}
    assert "no CUDA device for onnx models, running on the CPU" in caplog.text


def _gpu_reason() -> str | None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return None
    return "no GPU here: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu on a CUDA machine)"


@pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")
def test_cuda_serves_the_same_answers_as_cpu(make_client) -> None:
    cpu, cuda = make_client(device="cpu"), make_client(device="cuda")
    assert {m["device"] for m in cuda.get("/models").json()["models"]} == {"cuda"}
    body = {"model": "digits-cvae", "n": 64, "label": "2", "seed": 9}
    a, b = cpu.post("/generate", json=body).json(), cuda.post("/generate", json=body).json()
    np.testing.assert_allclose(a["samples"], b["samples"], atol=1e-4)


def test_serving_onnx_models_never_imports_torch() -> None:
    code = (
        "import sys; from fastapi.testclient import TestClient; from app.main import create_app; "
        "from app.settings import Settings\n"
        "with TestClient(create_app(Settings(model_dir='models'))) as c:\n"
        "    assert c.post('/generate', json={'model': 'digits-cvae', 'label': '1'}).status_code == 200\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]


def test_bad_settings_are_refused_at_start() -> None:
    result = run_python("-m", "app", env_extra={"GENSERVE_MAX_QUEUE": "10", "GENSERVE_DEVICE": "tpu"})
    assert result.returncode == 2
    assert "GENSERVE_DEVICE" in result.stderr and "GENSERVE_MAX_QUEUE (10) must be at least" not in result.stderr
    result = run_python("-m", "app", env_extra={"GENSERVE_MAX_QUEUE": "10"})
    assert result.returncode == 2 and "GENSERVE_MAX_QUEUE (10) must be at least GENSERVE_MAX_SAMPLES" in result.stderr
