"""The four endpoints, the model endpoints and every documented error, against the real app
and the real default models (in-process ASGI, lifespan included)."""

import json

import numpy as np
import pytest

from tests.conftest import real_rows

DIGIT_LABELS = [str(d) for d in range(10)]


def assert_error(response, status: int, code: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


# ---- /generate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "label", "dim"),
    [("digits-vae", None, 64), ("digits-cvae", "7", 64), ("digits-qvae", None, 64), ("cancer-qvae", "malignant", 30)],
)
def test_generate_returns_n_rows_in_original_units(client, model: str, label: str | None, dim: int) -> None:
    response = client.post("/generate", json={"model": model, "n": 3, "label": label, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model and body["version"] == 1 and body["seed"] == 1
    samples = np.array(body["samples"])
    assert samples.shape == (3, dim) and np.isfinite(samples).all()
    if model.startswith("digits-") and model != "digits-qvae":
        assert samples.min() >= 0 and samples.max() <= 1  # Bernoulli means are intensities
    if model == "cancer-qvae":
        assert samples[:, 3].mean() > 100  # "mean area" is in the hundreds in original units, not z-scores


def test_generate_is_reproducible_with_a_seed(client) -> None:
    def samples(**extra):
        body = {"model": "digits-cvae", "n": 4, "label": "3", **extra}
        return np.array(client.post("/generate", json=body).json()["samples"])

    np.testing.assert_array_equal(samples(seed=5), samples(seed=5))
    assert not np.allclose(samples(seed=5), samples(seed=6))
    assert not np.allclose(samples(), samples())  # no seed: fresh draws


def test_generate_as_npy(client) -> None:
    import io

    body = {"model": "digits-cvae", "n": 5, "label": "2", "seed": 11}
    response = client.post("/generate", json=body, headers={"Accept": "application/x-npy"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
    assert response.headers["x-model"] == "digits-cvae" and response.headers["x-model-version"] == "1"
    samples = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert samples.dtype == np.float32 and samples.shape == (5, 64)
    as_json = client.post("/generate", json=body).json()["samples"]
    np.testing.assert_allclose(samples, as_json, rtol=1e-6)  # the same numbers, JSON in float32's shortest form


@pytest.mark.parametrize(
    ("model", "accept", "media_type"),
    [
        ("digits-vae", "application/json, text/csv;q=0.1", "application/json"),  # higher q wins
        ("digits-vae", "application/x-npy;q=0, application/json", "application/json"),  # q=0: not acceptable
        ("digits-vae", "text/csv;q=0.5, application/x-npy", "application/x-npy"),
        ("digits-vae", "application/x-npy;q=0.5, text/csv", "text/csv; charset=utf-8"),
        ("digits-vae", "text/csv, application/x-npy", "text/csv; charset=utf-8"),  # equal q: the first listed
        ("penguins-cvae", "application/json, text/csv;q=0.1", "application/json"),
        ("penguins-cvae", "application/x-npy;q=0, application/json", "application/json"),  # not a 406
        ("penguins-cvae", "application/x-npy, text/csv;q=0.2", "text/csv; charset=utf-8"),  # the best it makes
    ],
)
def test_generate_follows_the_q_values_of_accept(client, model: str, accept: str, media_type: str) -> None:
    body = {"model": model, "n": 3, "seed": 4, **({"label": "Adelie"} if model == "penguins-cvae" else {})}
    response = client.post("/generate", json=body, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    alone = client.post("/generate", json=body, headers={"Accept": media_type.split(";")[0]})
    assert response.content == alone.content  # the answer to that type asked for alone


def test_generate_answers_json_to_an_accept_it_cannot_match_and_406_to_types_the_model_lacks(client) -> None:
    body = {"model": "penguins-cvae", "n": 2, "label": "Adelie", "seed": 1}
    for accept in ("text/html", "*/*", "application/*", "image/*", "application/json;q=0"):  # as without Accept
        response = client.post("/generate", json=body, headers={"Accept": accept})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json", accept
    for accept in ("application/x-npy", "image/png;q=0.5, text/html", "image/svg+xml"):
        assert_error(client.post("/generate", json=body, headers={"Accept": accept}), 406, "not_acceptable", "typed")
    digits = {"model": "digits-vae", "n": 2, "seed": 1}
    assert client.post("/generate", json=digits, headers={"Accept": "image/*"}).headers["content-type"] == "image/png"
    assert (
        client.post("/generate", json=digits, headers={"Accept": "text/*"})
        .headers["content-type"]
        .startswith("text/csv")
    )


def test_generate_label_changes_what_is_generated(client) -> None:
    ones = np.array(
        client.post("/generate", json={"model": "digits-cvae", "n": 4, "label": "1", "seed": 0}).json()["samples"]
    )
    zeros = np.array(
        client.post("/generate", json={"model": "digits-cvae", "n": 4, "label": "0", "seed": 0}).json()["samples"]
    )
    # a "0" is a ring: its image centre (rows 3-4, columns 3-4) is darker than a "1"'s stroke
    centre = [27, 28, 35, 36]
    assert zeros[:, centre].mean() < ones[:, centre].mean()


def test_temperature_scales_the_spread(client) -> None:
    def spread(t: float) -> float:
        body = {"model": "cancer-qvae", "n": 200, "label": "benign", "seed": 0, "temperature": t}
        return float(np.array(client.post("/generate", json=body).json()["samples"]).std(axis=0).mean())

    assert spread(0.1) < spread(1.0)


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"model": "digits-cvae", "n": 1}, 422, "invalid_input", "is conditional: give a label, one of ['0'"),
        ({"model": "digits-cvae", "label": "11"}, 422, "invalid_input", "unknown label '11'"),
        ({"model": "digits-cvae", "label": True}, 422, "invalid_request", "label"),
        ({"model": "digits-cvae", "label": 11}, 422, "invalid_input", "unknown label '11'"),
        ({"model": "digits-vae", "mode": "median"}, 422, "invalid_request", "mode: Input should be 'sample' or 'mean'"),
        ({"model": "digits-vae", "label": "7"}, 422, "invalid_input", "is unconditional"),
        ({"model": "digits-vae", "n": 1025}, 422, "invalid_input", "above the limit of 1024"),
        ({"model": "digits-vae", "n": 0}, 422, "invalid_request", "n: Input should be greater than or equal to 1"),
        ({"model": "digits-vae", "n": "3"}, 422, "invalid_request", "n: Input should be a valid integer"),
        ({"model": "digits-vae", "temperature": 0}, 422, "invalid_request", "temperature"),
        ({"model": "digits-vae", "seed": -1}, 422, "invalid_request", "seed"),
        ({"model": "digits-vae", "count": 3}, 422, "invalid_request", "count: Extra inputs are not permitted"),
        ({"model": "nope"}, 404, "model_not_found", "no model named 'nope'; models: ['cancer-qvae'"),
        ({"model": "digits-vae@7"}, 404, "model_not_found", "has no version 7; versions: [1]"),
        ({"model": "../../etc/passwd"}, 404, "model_not_found", "invalid model name"),
        ({}, 422, "invalid_input", "no 'model' given"),
    ],
)
def test_generate_errors(client, body: dict, status: int, code: str, fragment: str) -> None:
    assert_error(client.post("/generate", json=body), status, code, fragment)


def test_unknown_label_error_lists_the_valid_labels(client) -> None:
    error = assert_error(
        client.post("/generate", json={"model": "cancer-qvae", "label": "healthy"}), 422, "invalid_input"
    )
    assert error["details"]["valid_labels"] == ["malignant", "benign"]


# ---- /encode, /reconstruct ------------------------------------------------------------------


def test_encode_gives_the_posterior_of_each_row(client) -> None:
    rows, labels = real_rows("digits-cvae", 5)
    body = client.post("/encode", json={"model": "digits-cvae", "inputs": rows, "labels": labels}).json()
    assert np.array(body["mean"]).shape == (5, 8) and np.array(body["log_var"]).shape == (5, 8)


def test_model_at_a_version(client) -> None:
    rows, _ = real_rows("digits-vae", 2)
    latest = client.post("/encode", json={"model": "digits-vae", "inputs": rows}).json()
    pinned = client.post("/encode", json={"model": "digits-vae@1", "inputs": rows}).json()
    assert pinned["version"] == 1 and pinned["mean"] == latest["mean"]


def test_reconstruct_real_rows_better_than_scrambled_ones(client) -> None:
    rows, _ = real_rows("digits-vae", 32)
    scrambled = np.random.default_rng(0).permuted(np.array(rows), axis=1).tolist()
    real = client.post("/reconstruct", json={"model": "digits-vae", "inputs": rows}).json()
    noise = client.post("/reconstruct", json={"model": "digits-vae", "inputs": scrambled}).json()
    assert np.array(real["reconstructions"]).shape == (32, 64) and len(real["errors"]) == 32
    assert np.mean(real["errors"]) < 0.5 * np.mean(noise["errors"])
    recomputed = ((np.array(real["reconstructions"]) - np.array(rows)) ** 2).mean(axis=1)
    np.testing.assert_allclose(real["errors"], recomputed, rtol=1e-4)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [[0.0] * 63]}, "row 0 has 63 values; model digits-vae@1 takes rows of 64 features"),
        ({"inputs": [[0.0] * 64, [0.0] * 65]}, "row 1 has 65 values"),
        ({"inputs": [[0.0] * 64], "labels": ["3"]}, "is unconditional"),
        ({"inputs": [[1e39] + [0.0] * 63]}, "row 0, feature 0 is not a finite float32 number"),
        ({"inputs": [[10**400] + [0.0] * 63]}, "row 0, feature 0 is not a finite float32 number"),
        ({"inputs": [["0.5"] + [0.0] * 63]}, "row 0, feature 0 holds '0.5'; model digits-vae@1 takes numbers only"),
        ({"inputs": [[True] + [0.0] * 63]}, "row 0, feature 0 holds True"),
        ({"inputs": [[None] + [0.0] * 63]}, "row 0, feature 0 holds None"),
        ({"inputs": [0.5]}, "row 0 is a number; model digits-vae@1 has no column schema"),
        ({"inputs": [{"pixel_0_0": 0.5}]}, "row 0 is an object"),
    ],
)
def test_row_errors(client, body: dict, fragment: str) -> None:
    assert_error(client.post("/reconstruct", json={"model": "digits-vae", **body}), 422, "invalid_input", fragment)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"model": "digits-vae", "inputs": []}', "inputs: List should have at least 1 item"),
        ('{"model": "digits-vae", "inputs": ', "invalid JSON: EOF while parsing a value at line 1 column 34"),
        ('{"model": "digits-vae", "inputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "recursion limit exceeded"),
    ],
)
def test_malformed_bodies(client, raw: str, fragment: str) -> None:
    response = client.post("/encode", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request", fragment)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_declared_as_something_other_than_json_is_415(client, content_type: str) -> None:
    body = json.dumps({"model": "digits-vae", "seed": 0})
    response = client.post("/generate", content=body, headers={"content-type": content_type})
    assert_error(response, 415, "unsupported_media_type", repr(content_type), "Content-Type: application/json")
    for accepted in ("application/json; charset=utf-8", "application/vnd.genserve+json", None):
        headers = {"content-type": accepted} if accepted else {}
        assert client.post("/generate", content=body, headers=headers).status_code == 200, accepted


def test_cors_is_off_by_default(client) -> None:
    response = client.post("/generate", json={"model": "digits-vae"}, headers={"Origin": "https://app.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/generate", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


def test_cors_origins_setting(make_client) -> None:
    client = make_client(cors_origins="https://app.example, https://other.example", api_key="k")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = client.options("/generate", headers={**preflight, "Access-Control-Request-Headers": "x-api-key"})
    assert response.status_code == 200  # a preflight carries no key; it is answered before the key is checked
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    headers = {"Origin": "https://app.example", "X-API-Key": "k"}
    response = client.post("/generate", json={"model": "digits-vae"}, headers=headers)
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-model" in response.headers["access-control-expose-headers"].lower()
    elsewhere = client.options("/generate", headers={**preflight, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 400 and "access-control-allow-origin" not in elsewhere.headers


def test_labels_must_match_rows(client) -> None:
    rows, labels = real_rows("digits-cvae", 3)
    response = client.post("/encode", json={"model": "digits-cvae", "inputs": rows, "labels": labels[:2]})
    assert_error(response, 422, "invalid_input", "2 labels for 3 rows")
    response = client.post("/encode", json={"model": "digits-cvae", "inputs": rows})
    assert_error(response, 422, "invalid_input", "is conditional")


def test_too_many_rows(make_client) -> None:
    small = make_client(max_samples=4, max_queue=4)
    response = small.post("/encode", json={"model": "digits-vae", "inputs": [[0.0] * 64] * 5})
    assert_error(response, 422, "invalid_input", "5 rows in one request; the limit is 4")


# ---- /quantiles -----------------------------------------------------------------------------


def test_quantiles_of_a_quantile_model(client) -> None:
    rows, labels = real_rows("cancer-qvae", 40)
    body = client.post("/quantiles", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).json()
    q = np.array(body["quantiles"])
    assert body["levels"] == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert q.shape == (40, 5, 30)
    assert (np.diff(q, axis=1) >= 0).all()  # bands never cross
    x = np.array(rows)[:, None, :]
    inside_90 = ((x[:, 0] >= q[:, 0]) & (x[:, 0] <= q[:, 4])).mean()
    assert inside_90 > 0.75  # real rows mostly fall inside their own 90% band (original units)


def test_quantiles_of_a_bernoulli_model_is_refused_with_the_reason(client) -> None:
    response = client.post("/quantiles", json={"model": "digits-vae", "inputs": [[0.0] * 64]})
    assert_error(response, 422, "invalid_input", "Bernoulli head", "no quantiles")


def test_quantiles_of_a_gaussian_model(make_client, tiny_gaussian) -> None:
    client = make_client(model_dir=tiny_gaussian)
    rows = np.random.default_rng(0).normal(size=(3, 5)).tolist()
    body = client.post("/quantiles", json={"model": "tiny-gauss", "inputs": rows, "labels": ["a", "b", "c"]}).json()
    q = np.array(body["quantiles"])
    assert body["levels"] == [0.05, 0.25, 0.5, 0.75, 0.95] and q.shape == (3, 5, 5)
    # Gaussian quantiles are symmetric about the mean
    np.testing.assert_allclose(q[:, 2] - q[:, 0], q[:, 4] - q[:, 2], rtol=1e-4)


# ---- models, health, metrics, docs ----------------------------------------------------------


def test_models_lists_every_default_model(client) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"digits-vae", "digits-cvae", "digits-qvae", "cancer-qvae", "penguins-cvae"}
    cvae = models["digits-cvae"]
    assert cvae["state"] == "ready" and cvae["device"] == "cpu" and cvae["backend"] == "onnx"
    assert cvae["labels"] == DIGIT_LABELS and cvae["image_shape"] == [8, 8]
    # what the page offers: /quantiles answers for a head with a spread, not for a Bernoulli head
    bands = {name: m["bands"] for name, m in models.items()}
    assert bands == {
        "digits-vae": False,
        "digits-cvae": False,
        "digits-qvae": True,
        "cancer-qvae": True,
        "penguins-cvae": True,
    }


def test_model_detail(client) -> None:
    detail = client.get("/models/cancer-qvae").json()
    assert detail["latest"] == 1 and detail["versions"][0]["state"] == "ready"
    assert "coverage_90" in detail["metrics"] and detail["training"]["data"] == "breast-cancer"
    # the normalisation, for V2 clients whose tensors are in normalised units
    rows, labels = real_rows("cancer-qvae", 1)
    norm = detail["normalization"]
    assert len(norm["shift"]) == len(norm["scale"]) == 30 and min(norm["scale"]) > 0
    encoded = client.post("/encode", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).json()
    x_norm = (np.array(rows[0]) - norm["shift"]) / norm["scale"]
    infer = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32", "data": x_norm.tolist()},
                        {"name": "y", "shape": [1], "datatype": "INT64", "data": [0]}]}  # fmt: skip
    v2 = client.post("/v2/models/cancer-qvae.encoder/infer", json=infer).json()
    np.testing.assert_allclose(v2["outputs"][0]["data"], encoded["mean"][0], atol=1e-5)
    assert_error(client.get("/models/nope"), 404, "model_not_found", "no model named 'nope'")


def test_health_ready_metrics_and_docs(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/generate", json={"model": "digits-vae", "seed": 0})
    text = client.get("/metrics").text
    assert 'genserve_requests_total{endpoint="/generate",model="digits-vae",status="200"}' in text
    assert 'genserve_batch_size_rows_count{graph="decoder",model="digits-vae",version="1"}' in text
    assert 'genserve_model_loaded{backend="onnx",device="cpu",model="digits-cvae",version="1"} 1.0' in text
    for name in (
        "genserve_request_duration_seconds",
        "genserve_batch_size_rows",
        "genserve_queue_wait_seconds",
        "genserve_inference_duration_seconds",
        "genserve_queue_depth_rows",
    ):
        assert name in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/generate", "/encode", "/reconstruct", "/quantiles", "/models", "/models/{name}"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_unknown_route_is_a_json_404(client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/generate"), 405, "method_not_allowed")


def test_default_model_setting(make_client) -> None:
    client = make_client(default_model="digits-vae")
    assert client.post("/generate", json={"seed": 0}).json()["model"] == "digits-vae"


def test_body_too_large_is_413_before_parsing(make_client) -> None:
    client = make_client(max_body_bytes=2048)
    big = json.dumps({"model": "digits-vae", "inputs": [[0.5] * 64] * 20})
    assert_error(
        client.post("/encode", content=big, headers={"content-type": "application/json"}),
        413,
        "body_too_large",
        "larger than 2048 bytes",
    )

    def chunks():  # no content-length: counted while streaming
        yield big[:1500].encode()
        yield big[1500:].encode()

    response = client.post("/encode", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large")
    assert client.post("/generate", json={"model": "digits-vae"}).status_code == 200


def test_api_key(make_client) -> None:
    client = make_client(api_key="s3cret")
    body = {"model": "digits-vae", "seed": 0}
    assert_error(client.post("/generate", json=body), 401, "unauthorized", "X-API-Key")
    assert_error(client.post("/generate", json=body, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    assert_error(client.get("/models"), 401, "unauthorized")
    assert client.post("/generate", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.post("/generate", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(open_path).status_code == 200


# ---- hostile input: never a 500 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model", "value", "labels"),
    [
        ("/encode", "digits-vae", 1e38, None),
        ("/encode", "cancer-qvae", 1e36, ["benign"]),
        ("/reconstruct", "digits-vae", 1e20, None),
        ("/reconstruct", "cancer-qvae", 1e16, ["benign"]),
        ("/quantiles", "cancer-qvae", 1e35, ["benign"]),
    ],
)
def test_finite_inputs_far_outside_the_data_never_fail_the_server(client, path, model, value, labels) -> None:
    dim = 64 if model.startswith("digits") else 30
    response = client.post(path, json={"model": model, "inputs": [[value] * dim], "labels": labels})
    if response.status_code == 200:  # a representable answer: every number in it is finite
        assert np.isfinite(np.concatenate([np.ravel(v) for v in response.json().values() if isinstance(v, list)])).all()
    else:
        assert_error(response, 422, "invalid_input", "too far outside the range")
    assert client.post("/generate", json={"model": "digits-vae"}).status_code == 200  # the connection goes on


def test_a_body_of_millions_of_bad_values_gets_one_quick_error(client) -> None:
    raw = '{"model": "digits-vae", "inputs": [[' + ",".join(['""'] * 1_000_000) + "]]}"
    error = assert_error(
        client.post("/encode", content=raw, headers={"content-type": "application/json"}),
        422,
        "invalid_input",
        "row 0, feature 0 holds ''",
    )
    assert error["details"] == {"row": 0, "feature": 0}


@pytest.mark.parametrize(
    "raw", ['{"model": "digits-vae", "n": "\\ud800"}', '{"\\ud800": 1}', '"\\ud800"', '{"model": "\\ud800"}']
)
def test_lone_surrogates_are_a_422_not_a_500(client, raw: str) -> None:
    response = client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_request", "invalid_input", "model_not_found")


def test_invalid_json_and_invalid_utf8(client) -> None:
    error = assert_error(
        client.post("/generate", content=b'{"model": ', headers={"content-type": "application/json"}),
        422,
        "invalid_request",
        "invalid JSON: EOF while parsing a value at line 1 column 10",
    )
    assert error["details"][0]["loc"] == "body"
    response = client.post("/generate", content=b'{"model": "\xff"}', headers={"content-type": "application/json"})
    assert response.status_code in (400, 422) and response.json()["error"]["code"] == "invalid_request"


def test_versions_are_ascii_digits(client) -> None:
    assert_error(
        client.post("/generate", json={"model": "digits-vae@\uff11"}), 404, "model_not_found", "invalid version"
    )


def test_probes_answer_head(client) -> None:
    assert client.head("/healthz").status_code == 200 and client.head("/readyz").status_code == 200


def test_every_operation_but_health_readiness_metrics_and_docs_needs_the_key(make_client) -> None:
    """Walks the OpenAPI document: every inference, model, V2 model and admin operation is 401
    without the key; only the documented open ones answer."""
    client = make_client(api_key="s3cret")
    paths = client.get("/openapi.json").json()["paths"]
    open_paths = {"/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready"}
    guarded = []
    for path, operations in paths.items():
        concrete = path.replace("{name}", "digits-cvae.decoder").replace("{version}", "1")
        for method in operations:
            response = client.request(method.upper(), concrete, json={})
            if path in open_paths:
                assert response.status_code != 401, (method, path)
            else:  # V2 routes answer in the protocol's error shape, {"error": "<message>"}
                assert response.status_code == 401, (method, path, response.text)
                assert "API key" in response.text and response.headers["www-authenticate"] == "Bearer"
                guarded.append(f"{method.upper()} {path}")
    assert {"POST /generate", "POST /encode", "POST /reconstruct", "POST /quantiles", "POST /admin/reload",
            "GET /models", "POST /v2/models/{name}/infer"} <= set(guarded)  # fmt: skip


def test_api_key_edge_cases(make_client) -> None:
    client = make_client(api_key="s3cret")
    body = {"model": "digits-vae", "seed": 0}
    ok = client.post("/generate", json=body, headers={"X-API-Key": "", "Authorization": "Bearer s3cret"})
    assert ok.status_code == 200  # an empty X-API-Key does not shadow a good bearer token
    assert_error(client.post("/generate", json=body, headers={"X-API-Key": "s\xe9cret".encode()}), 401, "unauthorized")
    assert_error(client.post("/generate", json=body, headers={"Authorization": "Bearer "}), 401, "unauthorized")


def test_non_ascii_api_key_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="printable ASCII"):
        Settings(api_key="s\xe9cret")
