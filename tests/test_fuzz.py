"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis),
against a live server on the default models: no 5xx, and every response conforms to the
schema (status codes, content types, headers, bodies). `make fuzz` runs the same for longer."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.conftest import ROOT

FUZZ_CONFIG = ROOT / "tests" / "schemathesis.toml"


def run_schemathesis(url: str, max_examples: int) -> subprocess.CompletedProcess:
    """`st run` with every check and every phase; 2 workers."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(FUZZ_CONFIG), "run", f"{url}/openapi.json",
        "--checks", "all", "--max-examples", str(max_examples), "--workers", "2", "--no-color",
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_api_conforms_to_its_openapi_schema(live_server) -> None:
    server = live_server(max_stream_rows=20_000)  # a fuzzed n is often huge: streams stay short
    max_examples = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # `make fuzz` runs many more
    result = run_schemathesis(server.url, max_examples)
    print(result.stdout.split("SUMMARY")[-1])  # `make fuzz` shows the counts of cases and failures
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    assert f"Tested: {operations}" in result.stdout, result.stdout[-3000:]  # every operation was reached
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert "Traceback" not in server.output(), server.output()[-3000:]


def test_405_names_the_documented_method(client) -> None:
    # found by the fuzzer: GET and HEAD are separate routes, and a 405 named only the first, HEAD
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        response = client.options(path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET", path
    assert client.delete("/generate").headers["allow"] == "POST"


def test_request_schemas_resolve_inside_the_openapi_document(client) -> None:
    # found by the fuzzer: V2's body was documented as any object, and a model's own
    # `#/$defs/...` references do not resolve once its schema sits in the document
    document = client.get("/openapi.json").json()
    assert "#/$defs/" not in str(document)
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert infer["schema"]["required"] == ["inputs"]
    assert infer["schema"]["properties"]["inputs"]["items"]["required"] == ["name", "shape", "datatype"]
