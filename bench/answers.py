"""The service's answers, hashed: proof that a restructuring changed no behaviour.

    python bench/answers.py --out bench/results/answers-<commit>.json
    python bench/answers.py --compare A.json B.json     # every differing or missing id; exit 1 on any

Starts `python -m app` from this checkout (its `models/`, default settings, a free port on
127.0.0.1) and sends a fixed set of seeded requests to every endpoint of the five default
models: /generate in each mode and every Accept type, /generate/stream in every format,
/encode, /reconstruct, /quantiles (JSON, SVG and PNG band plots), /anomaly, the V2 (KServe)
protocol, /models and the model files, health, OpenAPI, a reload, and a set of 4xx answers;
then writes files with `python -m training sample` in each format. Each answer is hashed
(sha256 of its status, content type, the genserve headers that carry meaning, and its body),
keyed by a readable id. Everything runs twice, the second time against a freshly started
server, and an answer that differs between the two is reported and left out of the file
(listed under "unstable"; the run then exits 1).

Left out as not deterministic: /metrics (counters and timings), unseeded requests, and the
response headers that carry no answer (date, server, content-length and transfer-encoding;
the body's length is in its hash). No answer needed a field removed: none carries a time.
Parquet and Arrow bytes embed pyarrow's version: compare runs made with the same venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"

# model -> the label its conditional requests use (None: unconditional)
MODELS = {
    "digits-vae": None,
    "digits-cvae": "3",
    "digits-qvae": None,
    "cancer-qvae": "malignant",
    "penguins-cvae": "Gentoo",
}
IMAGE_MODELS = ("digits-vae", "digits-cvae", "digits-qvae")

JSON, CSV, NPY, PNG, SVG = "application/json", "text/csv", "application/x-npy", "image/png", "image/svg+xml"
NDJSON, ARROW, PARQUET = "application/x-ndjson", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"
GENERATE_ACCEPTS = [
    None,  # no Accept header
    JSON,
    CSV,
    NPY,
    PNG,
    SVG,
    "application/json, text/csv;q=0.1",
    "application/x-npy;q=0, application/json",
]
STREAM_ACCEPTS = [None, NDJSON, CSV, ARROW, PARQUET]
STREAM_ROWS = 1030  # past the first block of 1,024 rows: the second block draws from its own generator
SUFFIXES = (".csv", ".parquet", ".ndjson", ".arrow")
# /anomaly's (false_alarm_rate, level) besides the defaults; a quantile head has no 0.99 band (422)
ANOMALY_SETTINGS = ((0.005, 0.9), (0.02, 0.5), (0.05, 0.9), (0.01, 0.99))
# response headers that are part of an answer (besides its status, content type and body)
HASHED_HEADERS = (
    "content-type",
    "x-model",
    "x-model-version",
    "x-outside",
    "x-rows",
    "retry-after",
    "cache-control",
    "inference-header-content-length",
)


@dataclass
class Request:
    id: str
    method: str
    path: str
    body: Any = None  # sent as JSON, or as is when bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    """One file written by `python -m training sample`."""

    id: str
    model: str
    n: int
    suffix: str
    seed: int
    label: str | None = None
    mode: str | None = None


# ---- fixed inputs -----------------------------------------------------------------------------


def input_rows() -> dict[str, tuple[list, list[str] | None]]:
    """Each model's fixed input rows (original units) and their labels (None: unconditional)."""
    from palmerpenguins import load_penguins
    from sklearn.datasets import load_breast_cancer, load_digits

    digits = load_digits()
    picked = [0, 1, 2, 3, 17]
    digit_rows = digits.data[picked].tolist()
    digit_labels = [str(t) for t in digits.target[picked]]
    cancer = load_breast_cancer()
    picked = [0, 19, 100, 300]
    cancer_rows = cancer.data[picked].tolist()
    cancer_labels = [str(cancer.target_names[t]) for t in cancer.target[picked]]
    penguins = load_penguins()
    # a whole row, one with every measurement and sex missing, one without sex, other species and islands
    picked = penguins.iloc[[0, 3, 8, 160, 300]]
    penguin_rows = [{k: _plain(v) for k, v in row.items() if k != "species"} for _, row in picked.iterrows()]
    penguin_labels = list(picked["species"])
    return {
        "digits-vae": (digit_rows, None),
        "digits-cvae": (digit_rows, digit_labels),
        "digits-qvae": (digit_rows, None),
        "cancer-qvae": (cancer_rows, cancer_labels),
        "penguins-cvae": (penguin_rows, penguin_labels),
    }


def _plain(value: Any) -> Any:
    """A pandas cell as JSON: NaN as null, whole numbers as integers."""
    if isinstance(value, str):
        return value
    if value != value:  # NaN
        return None
    return int(value) if float(value).is_integer() else float(value)


def _rows_body(model: str, rows: list, labels: list[str] | None, **extra: Any) -> dict:
    body: dict[str, Any] = {"model": model, "inputs": rows}
    if labels is not None:
        body["labels"] = labels
    return {**body, **extra}


def _manifest(model: str) -> dict:
    return json.loads((MODELS_DIR / model / "1" / "model.json").read_text())


# ---- the requests -----------------------------------------------------------------------------


def requests() -> list[Request]:
    inputs = input_rows()
    return [
        *service_requests(),
        *generate_requests(),
        *stream_requests(),
        *row_requests(inputs),
        *v2_requests(),
        *error_requests(inputs),
        # last, as it scans the repository again: nothing changed, and the models answer as before
        Request("post /admin/reload", "POST", "/admin/reload", {}),
        Request(
            "generate digits-cvae after reload",
            "POST",
            "/generate",
            {"model": "digits-cvae", "n": 3, "label": "5", "seed": 9},
        ),
    ]


def service_requests() -> Iterator[Request]:
    for path in (
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/ui",
        "/models",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    ):
        yield Request(f"get {path}", "GET", path)
    for model in MODELS:
        yield Request(f"get /models/{model}", "GET", f"/models/{model}")
        for file in ("history.json", "loss.svg", "columns.svg"):  # columns.svg: table models only, else 404
            yield Request(f"get /models/{model}/files/{file}", "GET", f"/models/{model}/files/{file}")
    yield Request("get loss.svg version=1", "GET", "/models/cancer-qvae/files/loss.svg?version=1")


def generate_requests() -> Iterator[Request]:
    for model, label in MODELS.items():
        base = {"model": model, "n": 5, "seed": 7, **({"label": label} if label else {})}
        for mode in ("sample", "mean"):
            for accept in GENERATE_ACCEPTS:
                yield _generate(f"mode={mode}", {**base, "mode": mode}, accept)
        yield _generate("mode=default", base, JSON)
        yield _generate("mode=sample temperature=0.5", {**base, "mode": "sample", "temperature": 0.5}, JSON)
        yield _generate("mode=mean temperature=2.5", {**base, "mode": "mean", "temperature": 2.5}, JSON)
        for accept in (JSON, CSV, NPY):  # more rows than one batch (64)
            yield _generate("n=200 seed=11", {**base, "n": 200, "seed": 11}, accept)
        yield _generate("n=1 seed=0", {**base, "n": 1, "seed": 0}, JSON)
        yield _generate("n=3 seed=2**64-1", {**base, "n": 3, "seed": 2**64 - 1}, JSON)
        for other in _manifest(model)["labels"] or []:  # every label of a conditional model
            yield _generate(f"label={other} mode=sample", {**base, "label": other, "mode": "sample"}, JSON)
    for accept in (PNG, JSON):  # a conditional image model without a label: a PNG row per label, else 422
        yield _generate("no label", {"model": "digits-cvae", "n": 4, "seed": 3}, accept)
    yield _generate("integer label 7", {"model": "digits-cvae", "n": 2, "label": 7, "seed": 3}, JSON)
    yield _generate("version 1", {"model": "penguins-cvae@1", "n": 4, "label": "Adelie", "seed": 3}, JSON)
    yield _generate("n=2 seed=1", {"model": "digits-vae", "n": 2, "seed": 1}, "text/html")  # JSON today
    yield _generate("n=1024 seed=5", {"model": "penguins-cvae", "n": 1024, "label": "Chinstrap", "seed": 5}, CSV)


def _generate(what: str, body: dict, accept: str | None) -> Request:
    model = body["model"].split("@")[0]
    rid = f"generate {model} {what}" + (f" label={body['label']}" if "label" in body and "label=" not in what else "")
    return Request(f"{rid} accept={accept}", "POST", "/generate", body, {"Accept": accept} if accept else {})


def stream_requests() -> Iterator[Request]:
    for model, label in MODELS.items():
        base = {"model": model, "n": STREAM_ROWS, "seed": 5, **({"label": label} if label else {})}
        for mode in ("sample", "mean"):
            for accept in STREAM_ACCEPTS:
                yield _stream(f"{model} mode={mode} n={STREAM_ROWS}", {**base, "mode": mode}, accept)
        yield _stream(f"{model} n=5 seed=7", {**base, "n": 5, "seed": 7}, NDJSON)  # /generate's rows for seed 7
        yield _stream(f"{model} temperature=0.5 n=40", {**base, "n": 40, "temperature": 0.5}, CSV)
    body = {"model": "penguins-cvae", "n": 50, "label": "Adelie", "seed": 1}
    aliases = ["application/jsonl", "application/x-parquet", "text/*", "*/*", "text/csv;q=0.5, application/x-ndjson"]
    for accept in [*aliases, "image/png", JSON]:  # the last two: 406 today
        yield _stream("penguins-cvae n=50", body, accept)


def _stream(what: str, body: dict, accept: str | None) -> Request:
    return Request(
        f"stream {what} accept={accept}", "POST", "/generate/stream", body, {"Accept": accept} if accept else {}
    )


def row_requests(inputs: dict[str, tuple[list, list[str] | None]]) -> Iterator[Request]:
    for model, (rows, labels) in inputs.items():
        body = _rows_body(model, rows, labels)
        yield Request(f"encode {model}", "POST", "/encode", body)
        yield Request(f"reconstruct {model}", "POST", "/reconstruct", body)
        yield Request(f"quantiles {model} accept=None", "POST", "/quantiles", body)
        one = _rows_body(model, rows[:1], labels[:1] if labels else None)
        for accept in (SVG, PNG, "application/json, image/svg+xml"):
            yield Request(f"quantiles {model} one row accept={accept}", "POST", "/quantiles", one, {"Accept": accept})
        yield Request(f"anomaly {model} defaults", "POST", "/anomaly", body)
        for rate, level in ANOMALY_SETTINGS:
            extra = {"false_alarm_rate": rate, "level": level}
            yield Request(f"anomaly {model} rate={rate} level={level}", "POST", "/anomaly", {**body, **extra})
    # a table's rows as lists in column order, as the objects above are
    rows, labels = inputs["penguins-cvae"]
    body = _rows_body("penguins-cvae", [list(r.values()) for r in rows], labels)
    for endpoint in ("encode", "reconstruct", "quantiles", "anomaly"):
        yield Request(f"{endpoint} penguins-cvae rows as lists", "POST", f"/{endpoint}", body)
    # a label given as an integer; a model named with its version
    rows, labels = inputs["digits-cvae"]
    yield Request(
        "encode digits-cvae integer labels", "POST", "/encode", _rows_body("digits-cvae", rows, [0, 1, 2, 3, 7])
    )
    yield Request(
        "reconstruct cancer-qvae@1", "POST", "/reconstruct", _rows_body("cancer-qvae@1", *inputs["cancer-qvae"])
    )


def v2_requests() -> Iterator[Request]:
    for model in MODELS:
        m = _manifest(model)
        for graph in ("encoder", "decoder"):
            name = f"{model}.{graph}"
            for path in (name, f"{name}/versions/1", f"{name}/ready", f"{name}/versions/1/ready"):
                yield Request(f"v2 get {path}", "GET", f"/v2/models/{path}")
        rng = np.random.default_rng(sum(map(ord, model)))
        rows = 3
        x = np.round(rng.standard_normal((rows, m["input_dim"])), 4).astype(np.float32)
        z = np.round(rng.standard_normal((rows, m["latent_dim"])), 4).astype(np.float32)
        y = np.arange(rows, dtype=np.int64) % len(m["labels"]) if m["labels"] else None
        encoder, decoder = f"/v2/models/{model}.encoder/infer", f"/v2/models/{model}.decoder/infer"
        yield Request(f"v2 infer {model}.encoder json", "POST", encoder, _infer_body(("x", x), y))
        yield Request(f"v2 infer {model}.decoder json", "POST", decoder, _infer_body(("z", z), y))
        yield Request(
            f"v2 infer {model}.decoder json id, first output, version 1",
            "POST",
            f"/v2/models/{model}.decoder/versions/1/infer",
            {**_infer_body(("z", z.tolist()), y), "id": f"answers-{model}", "outputs": [{"name": _first_output(m)}]},
        )
        body = {**_infer_body(("z", z), y), "parameters": {"binary_data_output": True}}
        yield Request(f"v2 infer {model}.decoder binary output", "POST", decoder, body)
        yield _binary_infer(f"v2 infer {model}.encoder binary input", encoder, ("x", x), y)


def _first_output(manifest: dict) -> str:
    return {"bernoulli": "probs", "quantile": "quantiles", "gaussian": "mean"}[manifest["head"]]


def _infer_body(first: tuple[str, Any], y: np.ndarray | None) -> dict:
    name, values = first
    array = np.asarray(values, dtype=np.float32)
    inputs = [{"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}]
    if y is not None:
        inputs.append({"name": "y", "shape": [len(y)], "datatype": "INT64", "data": y.tolist()})
    return {"inputs": inputs}


def _binary_infer(rid: str, path: str, first: tuple[str, np.ndarray], y: np.ndarray | None) -> Request:
    """The binary tensor extension: a JSON header, then the inputs' little-endian bytes."""
    tensors = [(first[0], "FP32", first[1].astype("<f4"))]
    if y is not None:
        tensors.append(("y", "INT64", y.astype("<i8")))
    header = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": d, "parameters": {"binary_data_size": a.nbytes}}
            for n, d, a in tensors
        ]
    }
    head = json.dumps(header).encode()
    body = head + b"".join(a.tobytes() for _, _, a in tensors)
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    return Request(rid, "POST", path, body, headers)


def error_requests(inputs: dict[str, tuple[list, list[str] | None]]) -> Iterator[Request]:
    def post(rid: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Request:
        return Request(f"error {rid}", "POST", path, body, headers or {})

    yield post("generate unknown model", "/generate", {"model": "no-such-model", "n": 2, "seed": 1})
    yield post("generate unknown version", "/generate", {"model": "digits-vae@2", "n": 2, "seed": 1})
    yield post("generate no model", "/generate", {"n": 2, "seed": 1})
    yield post("generate unknown label", "/generate", {"model": "digits-cvae", "n": 2, "label": "x", "seed": 1})
    yield post(
        "generate label for unconditional", "/generate", {"model": "digits-vae", "n": 2, "label": "3", "seed": 1}
    )
    yield post("generate no label for conditional", "/generate", {"model": "penguins-cvae", "n": 2, "seed": 1})
    yield post("generate n too large", "/generate", {"model": "digits-vae", "n": 1025, "seed": 1})
    yield post("generate n=0", "/generate", {"model": "digits-vae", "n": 0, "seed": 1})
    yield post("generate temperature=0", "/generate", {"model": "digits-vae", "n": 2, "temperature": 0, "seed": 1})
    yield post("generate negative seed", "/generate", {"model": "digits-vae", "n": 2, "seed": -1})
    yield post("generate unknown mode", "/generate", {"model": "digits-vae", "n": 2, "mode": "median", "seed": 1})
    yield post("generate unknown field", "/generate", {"model": "digits-vae", "n": 2, "seed": 1, "count": 3})
    yield post("generate n as string", "/generate", {"model": "digits-vae", "n": "2", "seed": 1})
    yield post("generate malformed json", "/generate", b'{"model": "digits-vae", "n": ', {"Content-Type": JSON})
    yield post("generate not utf-8", "/generate", b'{"model": "\xff"}', {"Content-Type": JSON})
    yield post("generate text/plain body", "/generate", b'{"model": "digits-vae"}', {"Content-Type": "text/plain"})
    body = {"model": "digits-vae", "n": 2, "seed": 1}
    yield post("stream n=0", "/generate/stream", {"model": "digits-vae", "n": 0, "seed": 1})
    yield post("stream unknown label", "/generate/stream", {"model": "penguins-cvae", "n": 5, "label": "Emperor"})
    yield post("stream accept text/html", "/generate/stream", body, {"Accept": "text/html"})
    rows, labels = inputs["digits-vae"]
    yield post("encode short row", "/encode", {"model": "digits-vae", "inputs": [rows[0][:63]]})
    yield post("encode text in a row", "/encode", {"model": "digits-vae", "inputs": [["a", *rows[0][1:]]]})
    yield post("encode no rows", "/encode", {"model": "digits-vae", "inputs": []})
    yield post("encode 1025 rows", "/encode", {"model": "digits-vae", "inputs": [rows[0]] * 1025})
    rows, labels = inputs["digits-cvae"]
    yield post("encode labels for fewer rows", "/encode", _rows_body("digits-cvae", rows, labels[:2]))
    yield post("encode no labels for conditional", "/encode", _rows_body("digits-cvae", rows, None))
    rows, labels = inputs["penguins-cvae"]
    yield post(
        "encode unknown category", "/encode", _rows_body("penguins-cvae", [{**rows[0], "island": "Mars"}], labels[:1])
    )
    yield post("encode unknown column", "/encode", _rows_body("penguins-cvae", [{**rows[0], "beak": 1.0}], labels[:1]))
    yield post("reconstruct unknown label", "/reconstruct", _rows_body("penguins-cvae", rows[:1], ["Emperor"]))
    rows, labels = inputs["cancer-qvae"]
    yield post(
        "quantiles picture of two rows", "/quantiles", _rows_body("cancer-qvae", rows[:2], labels[:2]), {"Accept": SVG}
    )
    yield post("anomaly uncalibrated rate", "/anomaly", _rows_body("cancer-qvae", rows, labels, false_alarm_rate=0.03))
    yield post("anomaly level=1", "/anomaly", _rows_body("cancer-qvae", rows, labels, level=1.0))
    z = [[0.0] * 8]
    yield post("v2 unknown model", "/v2/models/digits-vae.sampler/infer", _infer_body(("z", z), None))
    yield post("v2 bad shape", "/v2/models/digits-vae.decoder/infer", _infer_body(("z", [[0.0] * 7]), None))
    yield post("v2 label out of range", "/v2/models/digits-cvae.decoder/infer", _infer_body(("z", z), np.array([10])))
    yield post("v2 missing input", "/v2/models/digits-cvae.decoder/infer", _infer_body(("z", z), None))
    yield post("v2 not json", "/v2/models/digits-vae.decoder/infer", b"{", {"Content-Type": JSON})
    yield Request("error v2 get unknown version", "GET", "/v2/models/digits-vae.decoder/versions/2")
    yield Request("error get /models/no-such-model", "GET", "/models/no-such-model")
    yield Request("error get loss.svg version=2", "GET", "/models/digits-vae/files/loss.svg?version=2")
    yield Request("error get unknown file", "GET", "/models/digits-vae/files/model.json")
    yield Request("error get /no-such-path", "GET", "/no-such-path")
    yield Request("error get /generate", "GET", "/generate")


def samples() -> list[Sample]:
    """`python -m training sample` for each model and file format."""
    jobs = []
    for model, label in MODELS.items():
        for suffix in SUFFIXES:
            rid = f"cli sample {model} n=1100 seed=13{f' label={label}' if label else ''} out=*{suffix}"
            jobs.append(Sample(rid, model, 1100, suffix, 13, label))
        mode = "sample" if model in IMAGE_MODELS else "mean"  # the mode that is not the model's default
        rid = f"cli sample {model} n=20 seed=4 mode={mode}{f' label={label}' if label else ''} out=*.csv"
        jobs.append(Sample(rid, model, 20, ".csv", 4, label, mode))
    return jobs


# ---- running them -----------------------------------------------------------------------------


def answer_hash(status: int, headers: httpx.Headers, body: bytes) -> str:
    digest = hashlib.sha256(f"{status}\n".encode())
    for name in HASHED_HEADERS:
        if name in headers:
            digest.update(f"{name}: {headers[name]}\n".encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def _environment(**extra: str) -> dict[str, str]:
    """This checkout on the path, and no GENSERVE_* setting but ours: the defaults answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m app` on a free port of 127.0.0.1, ready once /readyz says so; stopped by its PID."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = _environment(
            GENSERVE_MODEL_DIR=str(MODELS_DIR),
            GENSERVE_HOST="127.0.0.1",
            GENSERVE_PORT=str(self.port),
            GENSERVE_LOG_LEVEL="warning",
        )
        with log_path.open("w") as log:
            cmd = [sys.executable, "-m", "app"]
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within 120 s:\n{log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_pass(label: str, reqs: list[Request], jobs: list[Sample], work: Path, dump: Path | None) -> dict[str, str]:
    hashes: dict[str, str] = {}
    started = time.monotonic()
    server = Server(work / f"server-{label}.log")
    print(f"[{label}] server ready on {server.url} in {time.monotonic() - started:.1f} s", flush=True)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i, r in enumerate(reqs, 1):
                kwargs: dict[str, Any] = {"headers": r.headers}
                if isinstance(r.body, bytes):
                    kwargs["content"] = r.body
                elif r.body is not None:
                    kwargs["json"] = r.body
                response = client.request(r.method, r.path, **kwargs)
                hashes[r.id] = answer_hash(response.status_code, response.headers, response.content)
                if dump is not None:
                    _dump(dump / label, r.id, response.status_code, response.headers, response.content)
                if i % 100 == 0 or i == len(reqs):
                    print(f"[{label}] {i}/{len(reqs)} requests, {time.monotonic() - started:.1f} s", flush=True)
    finally:
        server.stop()
    # one CLI process per core: each is a fresh interpreter, run on its own
    with ThreadPoolExecutor(max_workers=2) as pool:
        written = pool.map(lambda k_job: _sample_file(k_job[1], work / f"{label}-{k_job[0]}"), enumerate(jobs))
        for job, (code, body) in zip(jobs, written, strict=True):
            hashes[job.id] = answer_hash(code, httpx.Headers(), body)
            if dump is not None:
                _dump(dump / label, job.id, code, httpx.Headers(), body)
    print(f"[{label}] {len(jobs)} CLI files, {time.monotonic() - started:.1f} s in all", flush=True)
    return hashes


def _sample_file(job: Sample, stem: Path) -> tuple[int, bytes]:
    """`python -m training sample` -> (its exit status, the file's bytes, or its error output)."""
    out = stem.with_suffix(job.suffix)
    cmd = [sys.executable, "-m", "training", "sample", job.model, "--n", str(job.n), "--out", str(out)]
    cmd += ["--seed", str(job.seed), "--models-dir", str(MODELS_DIR)]
    cmd += ["--label", job.label] if job.label else []
    cmd += ["--mode", job.mode] if job.mode else []
    result = subprocess.run(cmd, cwd=ROOT, env=_environment(), capture_output=True, timeout=300)
    body = out.read_bytes() if result.returncode == 0 else result.stderr
    out.unlink(missing_ok=True)
    return result.returncode, body


def _dump(folder: Path, rid: str, status: int, headers: httpx.Headers, body: bytes) -> None:
    """An answer as files, to see what differs: <id>.head (status and hashed headers) and <id>.body."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in rid)
    head = [str(status)] + [f"{n}: {headers[n]}" for n in HASHED_HEADERS if n in headers]
    (folder / f"{name}.head").write_text("\n".join(head) + "\n")
    (folder / f"{name}.body").write_bytes(body)


def _checkout() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "training", "models"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return commit.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def record(out: Path, dump: Path | None) -> int:
    started = time.monotonic()
    reqs, jobs = requests(), samples()
    ids = [r.id for r in reqs] + [j.id for j in jobs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate request ids: {duplicates}")
    print(f"{len(reqs)} requests and {len(jobs)} CLI files, each run twice", flush=True)
    with tempfile.TemporaryDirectory(prefix="genserve-answers-") as tmp:
        first = run_pass("run 1", reqs, jobs, Path(tmp), dump)
        second = run_pass("run 2", reqs, jobs, Path(tmp), dump)
    unstable = sorted(i for i in ids if first[i] != second[i])
    for rid in unstable:
        print(f"NOT REPRODUCIBLE (left out): {rid}")
    answers = {i: first[i] for i in sorted(ids) if i not in unstable}
    result = {"checkout": _checkout(), "count": len(answers), "unstable": unstable, "answers": answers}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(answers)} answers hashed ({len(unstable)} left out) in {time.monotonic() - started:.0f} s -> {out}")
    return 1 if unstable else 0


def compare(a_path: Path, b_path: Path) -> int:
    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    a_answers, b_answers = a["answers"], b["answers"]
    differences = 0
    for rid in sorted(a_answers.keys() | b_answers.keys()):
        if rid not in b_answers:
            print(f"only in {a_path.name}: {rid}")
        elif rid not in a_answers:
            print(f"only in {b_path.name}: {rid}")
        elif a_answers[rid] != b_answers[rid]:
            print(f"differs: {rid}")
        else:
            continue
        differences += 1
    for name, result in ((a_path.name, a), (b_path.name, b)):
        for rid in result.get("unstable", []):
            print(f"not reproducible in {name}: {rid}")
            differences += 1
    same = sum(1 for rid, digest in a_answers.items() if b_answers.get(rid) == digest)
    print(f"{a.get('checkout')} vs {b.get('checkout')}: {same} answers identical, {differences} differences")
    return 1 if differences else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="record this checkout's answers into FILE.json")
    action.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two recorded files")
    parser.add_argument("--dump", type=Path, help="with --out: also write every answer (headers, body) under DIR")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    return record(args.out, args.dump)


if __name__ == "__main__":
    sys.exit(main())
