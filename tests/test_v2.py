"""The Open Inference Protocol (KServe V2) endpoints: the real tritonclient.http client and raw
HTTP against a live server (`python -m app`) on the default models."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from core.prior import Mixture
from core.repository import read_manifest
from tests.conftest import DEFAULT_MODELS_DIR, ROOT, LiveServer, metric_value, real_rows

MAX_ROWS = 16  # GENSERVE_MAX_SAMPLES of the server under test


@pytest.fixture(scope="module")
def server():
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    live = LiveServer({"GENSERVE_MAX_SAMPLES": str(MAX_ROWS)})
    yield live
    live.stop()


@pytest.fixture(scope="module")
def triton(server) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    t = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    t.set_data_from_numpy(array, binary_data=binary)
    return t


def manifest(model: str):
    return read_manifest(DEFAULT_MODELS_DIR / model / "1")


# ---- health and metadata --------------------------------------------------------------------


def test_server_live_ready_and_metadata(triton) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata() == {
        "name": "genserve",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    assert triton.is_model_ready("digits-cvae.decoder")
    assert triton.is_model_ready("digits-cvae.encoder", model_version="1")
    assert not triton.is_model_ready("digits-cvae.decoder", model_version="2")
    assert not triton.is_model_ready("digits-cvae")  # a model's graphs are the V2 models, not the model


FP32, INT64 = "FP32", "INT64"


@pytest.mark.parametrize(
    ("name", "inputs", "outputs"),
    [
        ("digits-cvae.decoder", [("z", FP32, [-1, 8]), ("y", INT64, [-1])], [("probs", FP32, [-1, 64])]),
        (
            "digits-cvae.encoder",
            [("x", FP32, [-1, 64]), ("y", INT64, [-1])],
            [("mean", FP32, [-1, 8]), ("log_var", FP32, [-1, 8])],
        ),
        ("cancer-qvae.decoder", [("z", FP32, [-1, 4]), ("y", INT64, [-1])], [("quantiles", FP32, [-1, 5, 30])]),
        ("digits-vae.encoder", [("x", FP32, [-1, 64])], [("mean", FP32, [-1, 8]), ("log_var", FP32, [-1, 8])]),
        (  # a table: 4 numeric columns; 3 + 2 + 3 categories and 5 columns with gaps
            "penguins-cvae.decoder",
            [("z", FP32, [-1, 4]), ("y", INT64, [-1])],
            [("mean", FP32, [-1, 4]), ("log_var", FP32, [-1, 4]), ("discrete_probs", FP32, [-1, 13])],
        ),
    ],
)
def test_model_metadata_names_every_tensor(triton, name: str, inputs: list, outputs: list) -> None:
    def tensors(specs):
        return [{"name": n, "datatype": d, "shape": s} for n, d, s in specs]

    expected = {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
    }
    assert triton.get_model_metadata(name) == expected
    assert triton.get_model_metadata(name, model_version="1") == expected


# ---- inference equals genserve's own endpoints ----------------------------------------------


def test_encoder_equals_encode_on_normalised_rows(triton, server) -> None:
    rows, labels = real_rows("cancer-qvae", 6)
    m = manifest("cancer-qvae")
    shift, scale = (np.asarray(v, dtype=np.float32) for v in (m.normalization.shift, m.normalization.scale))
    x_norm = (np.asarray(rows, dtype=np.float32) - shift) / scale  # V2 works in normalised units
    y = np.asarray([m.labels.index(label) for label in labels], dtype=np.int64)
    result = triton.infer("cancer-qvae.encoder", [tensor("x", x_norm), tensor("y", y)])
    own = httpx.post(server.url + "/encode", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).json()
    np.testing.assert_allclose(result.as_numpy("mean"), own["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("log_var"), own["log_var"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "label", "output"),
    [("digits-cvae", "7", "probs"), ("cancer-qvae", "benign", "quantiles"), ("digits-qvae", None, "quantiles")],
)
def test_decoder_equals_generate_for_the_same_latent_codes(triton, server, model, label, output) -> None:
    n, seed, temperature = 5, 123, 0.8
    m = manifest(model)
    # z drawn exactly as ServedModel.generate draws it: from the label's latent prior, or N(0, I) without one
    rng = np.random.default_rng(seed)
    if m.latent_prior is not None:
        z = Mixture.of(m.latent_prior[m.labels.index(label) if label else 0]).draw(n, rng, temperature)
    else:
        z = rng.standard_normal((n, m.latent_dim), dtype=np.float32) * np.float32(temperature)
    inputs = [tensor("z", z)]
    if label is not None:
        inputs.append(tensor("y", np.full(n, m.labels.index(label), dtype=np.int64)))
    decoded = triton.infer(f"{model}.decoder", inputs).as_numpy(output)
    if m.head == "quantile":  # the central value is the median
        decoded = decoded[:, int(np.argmin(np.abs(np.asarray(m.quantile_levels) - 0.5)))]
    samples = decoded * np.asarray(m.normalization.scale, np.float32) + np.asarray(m.normalization.shift, np.float32)
    body = {"model": model, "n": n, "label": label, "seed": seed, "temperature": temperature}
    own = httpx.post(server.url + "/generate", json=body).json()["samples"]
    np.testing.assert_allclose(samples, own, rtol=1e-4, atol=1e-6)


def test_json_and_binary_tensors_give_the_same_answer_and_the_id_is_echoed(triton) -> None:
    z = np.random.default_rng(0).standard_normal((3, 8), dtype=np.float32)
    y = np.asarray([0, 4, 9], dtype=np.int64)
    answers = []
    for binary in (False, True):
        result = triton.infer(
            "digits-cvae.decoder",
            [tensor("z", z, binary), tensor("y", y, binary)],
            outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary)],
            request_id=f"req-{binary}",
        )
        response = result.get_response()
        assert response["id"] == f"req-{binary}" and response["model_version"] == "1"
        assert ("data" in response["outputs"][0]) is not binary
        answers.append(result.as_numpy("probs"))
    assert answers[0].shape == (3, 64)
    np.testing.assert_array_equal(answers[0], answers[1])


def test_only_the_requested_outputs_are_returned(triton) -> None:
    x = np.asarray(real_rows("digits-vae", 2)[0], dtype=np.float32)
    both = triton.infer("digits-vae.encoder", [tensor("x", x)])
    only = triton.infer(
        "digits-vae.encoder", [tensor("x", x)], outputs=[httpclient.InferRequestedOutput("log_var", binary_data=False)]
    )
    assert [o["name"] for o in only.get_response()["outputs"]] == ["log_var"]
    assert only.as_numpy("mean") is None
    np.testing.assert_array_equal(only.as_numpy("log_var"), both.as_numpy("log_var"))


def test_a_pinned_version(triton) -> None:
    z = np.zeros((1, 8), dtype=np.float32)
    result = triton.infer("digits-vae.decoder", [tensor("z", z)], model_version="1")
    assert result.get_response()["model_version"] == "1"
    with pytest.raises(InferenceServerException) as error:
        triton.infer("digits-vae.decoder", [tensor("z", z)], model_version="2")
    assert error.value.status() == "404" and "has no version 2; versions: [1]" in error.value.message()


def test_v2_goes_through_the_batchers_and_the_metrics(triton, server) -> None:
    def scrape() -> str:
        return httpx.get(server.url + "/metrics").text

    before = metric_value(scrape(), "genserve_batch_size_rows_sum", model="digits-qvae", graph="decoder")
    triton.infer("digits-qvae.decoder", [tensor("z", np.zeros((7, 8), dtype=np.float32))])
    text = scrape()
    assert metric_value(text, "genserve_batch_size_rows_sum", model="digits-qvae", graph="decoder") == before + 7
    requests = {"endpoint": "/v2/models/{name}/infer", "model": "digits-qvae", "status": "200"}
    assert metric_value(text, "genserve_requests_total", **requests) >= 1


# ---- errors ---------------------------------------------------------------------------------


def z_and_y(rows: int = 1, label: int = 7) -> list[httpclient.InferInput]:
    return [tensor("z", np.zeros((rows, 8), dtype=np.float32)), tensor("y", np.full(rows, label, dtype=np.int64))]


@pytest.mark.parametrize(
    ("model", "inputs", "status", "fragment"),
    [
        ("nope.decoder", z_and_y(), "404", "no V2 model named 'nope.decoder'; V2 models are"),
        ("digits-cvae", z_and_y(), "404", "'digits-cvae.decoder'"),
        ("digits-cvae.decoder", [tensor("z", np.zeros((2, 9), np.float32))], "400", "has shape [2, 9]; digits-cvae"),
        ("digits-cvae.decoder", z_and_y(label=10), "400", "'y' at row 0 is 10; it is an index into the model's labels"),
        ("digits-cvae.decoder", z_and_y(rows=MAX_ROWS + 1), "400", f"the limit is {MAX_ROWS} rows per request"),
        ("digits-cvae.decoder", z_and_y()[:1], "400", "needs input(s) 'y' (INT64 [-1])"),
        ("digits-vae.decoder", z_and_y(), "400", "digits-vae.decoder has no input 'y'; its inputs are 'z'"),
        ("digits-vae.decoder", [tensor("z", np.zeros((1, 8)))], "400", "datatype 'FP64'; digits-vae.decoder takes"),
        ("digits-vae.decoder", [tensor("z", np.full((1, 8), np.nan, np.float32))], "400", "not a finite float32"),
    ],
)
def test_errors_reach_tritonclient_with_their_status(triton, model, inputs, status, fragment) -> None:
    with pytest.raises(InferenceServerException) as error:
        triton.infer(model, inputs)
    assert error.value.status() == status and fragment in error.value.message(), error.value.message()


def test_an_unknown_output_is_refused(triton) -> None:
    with pytest.raises(InferenceServerException) as error:
        triton.infer("digits-cvae.decoder", z_and_y(), outputs=[httpclient.InferRequestedOutput("samples")])
    assert error.value.status() == "400"
    assert "has no output 'samples'; its outputs are ['probs']" in error.value.message()


Z = {"name": "z", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}
Y = {"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{**Z, "shape": [2, 8]}, Y]}, "has shape [2, 8], which holds 16 values, but its data holds 8"),
        ({"inputs": [{**Z, "shape": [2, 8], "data": [[0.0] * 8, [0.0] * 7]}, Y]}, "its nested data is ragged"),
        ({"inputs": [{**Z, "data": [True] * 8}, Y]}, "inputs[0].data[0]: tensor data must be numbers"),
        ({"inputs": [{**Z, "data": [1e39] * 8}, Y]}, "at [0, 0] is not a finite float32 number (inf)"),
        ({"inputs": [Z, {**Y, "data": [7.0]}]}, "input 'y' is INT64 but holds floating-point numbers"),
        ({"inputs": [Z, {**Y, "datatype": "BYTES", "data": ["7"]}]}, "tensors are FP32 or INT64"),
        ({"inputs": [Z, {**Y, "datatype": "BYTES"}]}, "input 'y' has datatype 'BYTES'; digits-cvae.decoder takes"),
        ({"inputs": [Z, {**Y, "shape": [-1]}]}, "inputs[1].shape[0]: Input should be greater than or equal to 0"),
        ({"inputs": [{**Z, "shape": [2, 8], "data": [0.0] * 16}, Y]}, "inputs disagree on the number of rows"),
        ({"inputs": [Z, Y, Y]}, "input 'y' is given twice"),
        ({"inputs": [Z, Y], "outputs": [{"name": "probs", "parameters": {"binary_data": 1}}]}, "true or false"),
        ({"inputs": [Z, Y], "output": [{"name": "probs"}]}, "output: Extra inputs are not permitted"),
        ({"inputs": []}, "inputs: List should have at least 1 item"),
    ],
)
def test_raw_http_error_bodies(server, body: dict, fragment: str) -> None:
    response = httpx.post(server.url + "/v2/models/digits-cvae.decoder/infer", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert list(error) == ["error"] and fragment in error["error"], error


def test_raw_http_data_flat_or_as_rows(server) -> None:
    z = np.random.default_rng(2).standard_normal((2, 8), dtype=np.float32)
    answers = []
    for data in (z.ravel().tolist(), z.tolist()):
        body = {"inputs": [{**Z, "shape": [2, 8], "data": data}, {**Y, "shape": [2], "data": [1, 1]}]}
        response = httpx.post(server.url + "/v2/models/digits-cvae.decoder/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json" and "id" not in response.json()
        answers.append(response.json()["outputs"][0])
    assert answers[0] == answers[1] and answers[0]["shape"] == [2, 64] and len(answers[0]["data"]) == 128


def test_raw_http_binary_extension(server) -> None:
    url = server.url + "/v2/models/digits-cvae.decoder/infer"
    z = np.random.default_rng(1).standard_normal((2, 8), dtype=np.float32)
    y = np.asarray([3, 3], dtype=np.int64)
    header = {
        "inputs": [
            {"name": "z", "shape": [2, 8], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
            {"name": "y", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
        ],
        "outputs": [{"name": "probs", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    response = httpx.post(
        url, content=head + z.tobytes() + y.tobytes(), headers={"Inference-Header-Content-Length": str(len(head))}
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": 2 * 64 * 4}
    probs = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 64)
    json_body = {"inputs": [{**Z, "shape": [2, 8], "data": z.tolist()}, {**Y, "shape": [2], "data": y.tolist()}]}
    as_json = httpx.post(url, json=json_body).json()["outputs"][0]["data"]
    np.testing.assert_array_equal(probs, np.asarray(as_json, np.float32).reshape(2, 64))

    for body, headers, fragment in [
        (head + z.tobytes(), {"Inference-Header-Content-Length": str(len(head))}, "the body ends 16 bytes before"),
        (head + z.tobytes() + y.tobytes() + b"!", {"Inference-Header-Content-Length": str(len(head))}, "81 bytes"),
        (head, {}, "the body ends 64 bytes before"),
        (head, {"Inference-Header-Content-Length": "x"}, "Inference-Header-Content-Length is 'x'"),
        (head, {"Content-Encoding": "gzip"}, "Content-Encoding 'gzip' is not supported"),
    ]:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_raw_http_health_and_unknown_models(server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/digits-vae.decoder/ready"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200 and response.content == b""
    for path in ("/v2/models/nope.encoder", "/v2/models/digits-vae.decoder/versions/0", "/v2/models/x/ready"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404 and list(response.json()) == ["error"], response.text
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v2", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"} <= set(paths)


def test_api_key_guards_the_models_not_the_health(make_client) -> None:
    client = make_client(api_key="s3cret")
    for open_path in ("/v2", "/v2/health/live", "/v2/health/ready"):
        assert client.get(open_path).status_code == 200
    response = client.get("/v2/models/digits-vae.decoder")
    assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
    body = {"inputs": [{**Z}]}
    assert client.post("/v2/models/digits-vae.decoder/infer", json=body).status_code == 401
    answer = client.post("/v2/models/digits-vae.decoder/infer", json=body, headers={"X-API-Key": "s3cret"})
    assert answer.status_code == 200 and answer.json()["model_name"] == "digits-vae.decoder"
