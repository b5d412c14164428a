"""`make bench`: genserve under load, beside its two limits, in one run on one machine.

Starts each server on 127.0.0.1 (stopped by its PID), drives it with wrk, and prints a
table: requests/s, p50/p90/p99 latency, errors, mean batch size (from /metrics), RSS. The
reference points are measured in the same run: (a) the HTTP stack's limit, a bare FastAPI
endpoint on the same uvicorn settings returning a body of the same size; (b) the model's
limit, onnxruntime in-process on the same graph, plus the cost of encoding its result.
Then overload: the heavy model's capacity C measured closed-loop, an open-loop load at 4 x C
for 30 s against a small GENSERVE_MAX_QUEUE, and what was accepted, shed and lost, memory,
and how soon the service answers normally again. Then streaming (bench/streaming.py): /generate/stream
against the same rows in-process, and a 10-million-row stream's memory and its effect on short
requests. Writes bench/results/<date>.md.

    python bench/run.py [--seconds 8] [--quick] [--only throughput|overload|streaming]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from open_loop import OpenLoop, Probe, post
from streaming import Streaming, streaming
from streaming import lines as streaming_lines

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
HEAVY_DIR = BENCH / "models"
HEAVY = "bench-heavy"


# ---- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1; `cold_start_s` is spawn to the first /readyz 200."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GENSERVE_PORT": str(self.port),
            "GENSERVE_LOG_LEVEL": "warning",
            **(env or {}),
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [c.replace("{port}", str(self.port)) for c in command]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=full_env, start_new_session=True)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command} exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 60:
                self.stop()
                raise RuntimeError(f"{command} not ready in 60 s")
            time.sleep(0.01)
        self.cold_start_s = time.perf_counter() - started

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes."""
        pids = [self.process.pid]
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            pids += [int(p) for p in children]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            except (OSError, AttributeError):
                pass
        return total / 1024

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def genserve(**settings: object) -> Server:
    env = {f"GENSERVE_{k.upper()}": str(v) for k, v in settings.items()}
    return Server([PYTHON, "-m", "app"], env)


def metric_total(server: Server, name: str, **labels: str) -> float:
    """Sum of a metric's samples over the series whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(server.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def batch_totals(server: Server, model: str) -> tuple[float, float]:
    """(rows, runs) of a model's decoder so far, from the batch-size histogram."""
    rows = metric_total(server, "genserve_batch_size_rows_sum", model=model, graph="decoder")
    return rows, metric_total(server, "genserve_batch_size_rows_count", model=model, graph="decoder")


# ---- load -----------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    batch: float | None = None
    rss_mb: float | None = None
    notes: dict = field(default_factory=dict)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(
    url: str,
    connections: int,
    seconds: float,
    body: dict | bytes,
    path: str = "/generate",
    accept: str = "",
    delay_ms: float = 0,
) -> tuple[float, float, float, float, int]:
    """(requests/s, p50, p90, p99 in ms, errors) of one wrk run."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body if isinstance(body, bytes) else json.dumps(body).encode())
    env = {
        **os.environ,
        "BENCH_BODY_FILE": f.name,
        "BENCH_PATH": path,
        "BENCH_ACCEPT": accept,
        "BENCH_DELAY_MS": str(delay_ms),
    }
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(BENCH / "post.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return rps, pct["50"], pct["90"], pct["99"], errors


def measure(
    server: Server,
    scenario: str,
    connections: int,
    seconds: float,
    body: dict,
    model: str | None = None,
    warmup: float = 1.0,
    **options,
) -> Result:
    if warmup:
        wrk(server.url, connections, warmup, body, **options)
    before = batch_totals(server, model) if model else (0, 0)
    rps, p50, p90, p99, errors = wrk(server.url, connections, seconds, body, **options)
    after = batch_totals(server, model) if model else (0, 0)
    runs = after[1] - before[1]
    batch = (after[0] - before[0]) / runs if runs else None
    return Result(scenario, rps, p50, p90, p99, errors, batch, server.rss_mb())


# ---- reference (b): the model in-process ----------------------------------------------------


def in_process(model_dir: Path, batch_sizes: tuple[int, ...], repeats: float = 1.0) -> dict[str, float]:
    """Seconds per call of the decoder graph on onnxruntime (one intra-op thread, as served),
    and of encoding a [1024, 64] float32 result as JSON and as .npy."""
    import io

    import onnxruntime as ort

    from app.http.responses import encode_json
    from core.repository import read_manifest

    manifest = read_manifest(model_dir)
    artifact = manifest.decoder.artifact("onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / artifact.path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    result = {}
    for n in batch_sizes:
        feed = {"z": rng.standard_normal((n, manifest.latent_dim), dtype=np.float32)}
        if manifest.conditional:
            feed["y"] = rng.integers(0, len(manifest.labels), n).astype(np.int64)
        result[f"infer_{n}"] = _time(lambda feed=feed: session.run(None, feed), repeats)
    samples = session.run(None, feed)[0][:1024]
    body = {"model": manifest.name, "version": manifest.version, "label": "7", "seed": None, "samples": samples}
    result["json_1024"] = _time(lambda: encode_json(body), repeats)

    def npy() -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, samples)
        return buffer.getvalue()

    result["npy_1024"] = _time(npy, repeats)
    return result


def table_rows_in_process(model_dir: Path, n: int = 1000, repeats: float = 1.0) -> float:
    """Seconds to make `n` typed rows of a table model in-process, as /generate's `mode: sample` does:
    z from the latent prior, the decoder on onnxruntime (one thread), draws of every value, typed rows."""
    from core.offline import Sampler
    from core.table import rows_of

    sampler = Sampler(model_dir, threads=1)
    assert sampler.table is not None and sampler.prior is not None
    return _time(lambda: rows_of(sampler.generate(n, 0, np.random.default_rng(0))), repeats)


CONDITIONS = {"island": "Biscoe", "body_mass_g": {"min": 5000}}  # penguins-cvae: about 1 row in 5 meets both


def conditioned_rows_in_process(model_dir: Path, n: int = 1000, repeats: float = 1.0) -> float:
    """Seconds to make `n` typed rows under CONDITIONS in-process, as /generate with `conditions` does: rows
    drawn, those outside the conditions dropped, drawn again until `n` meet them (core/model.py)."""
    from core.offline import Sampler
    from core.rules import Conditions
    from core.table import rows_of

    sampler = Sampler(model_dir, threads=1)
    assert sampler.table is not None
    conditions = Conditions(sampler.manifest, sampler.table, CONDITIONS)

    def rows() -> list:
        (block,) = sampler.blocks(n, None, 0, conditions=conditions)
        return rows_of(sampler.table.values(block.numeric, block.codes, block.missing, block.labels))

    return _time(rows, repeats)


def _time(fn, budget_s: float) -> float:
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget_s or calls < 5:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


# ---- the heavier model ----------------------------------------------------------------------


def ensure_heavy_model() -> Path:
    """A conditional Bernoulli model on digits with 4 x 2048 hidden units, trained for 1 epoch
    only (its quality is beside the point: inference cost dominates). ONNX only."""
    path = HEAVY_DIR / HEAVY / "1"
    if (path / "model.json").exists():
        return path
    shutil.rmtree(HEAVY_DIR / HEAVY, ignore_errors=True)
    print("creating the heavy bench model (4 x 2048 hidden units, 1 epoch)...", file=sys.stderr, flush=True)
    subprocess.run(
        [
            PYTHON,
            "-m",
            "training",
            "train",
            "--data",
            "digits",
            "--head",
            "bernoulli",
            "--conditional",
            "--name",
            HEAVY,
            "--models-dir",
            str(HEAVY_DIR),
            "--hidden",
            "2048,2048,2048,2048",
            "--epochs",
            "1",
            "--warmup-epochs",
            "1",
            "--iwae-samples",
            "1",
            "--formats",
            "onnx",
        ],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )
    return path


# ---- overload -------------------------------------------------------------------------------

OVERLOAD_BODY = {"model": HEAVY, "n": 64, "label": "7"}  # ~9 ms of the heavy decoder per request
OVERLOAD_QUEUE = 256  # GENSERVE_MAX_QUEUE, rows: four such requests


@dataclass
class Overload:
    capacity: Result  # closed loop, before the load
    load: OpenLoop
    unloaded_s: float  # a probe's median answer time, idle server
    recovery_s: float  # from the last send to a probe's 200 within 2 x unloaded_s
    probes: int  # probes sent until then
    queue_after: float  # queue depth in rows once every answer was in
    rss_mb: tuple[float, float, float]  # before, max sampled during, after
    capacity_after: Result  # closed loop, right after
    client_cpu: float  # the open-loop client's CPU time over the load's wall time (1.0: one core)


def overload(seconds: float, load_seconds: float) -> Overload:
    """Capacity C of /generate n=64 on the heavy model, closed-loop with as many connections as
    the queue holds requests (so none is shed); then open-loop at 4 x C for `load_seconds`;
    then C again."""
    connections = OVERLOAD_QUEUE // OVERLOAD_BODY["n"]
    settings = {"model_dir": HEAVY_DIR, "max_queue": OVERLOAD_QUEUE, "max_samples": OVERLOAD_BODY["n"]}
    with genserve(**settings) as server:
        capacity = measure(server, "capacity", connections, seconds, OVERLOAD_BODY, HEAVY)
        request = post("/generate", json.dumps(OVERLOAD_BODY).encode())
        under_load = asyncio.run(_open_loop(server, request, 4 * capacity.rps, load_seconds))
        after = measure(server, "capacity after", connections, seconds, OVERLOAD_BODY, HEAVY, warmup=0)
    result = Overload(capacity=capacity, capacity_after=after, **under_load)
    counts = Counter(e.status for e in result.load.exchanges)
    print(
        f"  overload at {result.load.rate:,.0f} req/s (C = {capacity.rps:,.0f}): {counts[200]} accepted, "
        f"{counts[503]} shed, {len(result.load.exchanges) - counts[200] - counts[503]} lost; "
        f"recovered in {result.recovery_s * 1000:.0f} ms",
        file=sys.stderr,
        flush=True,
    )
    return result


async def _open_loop(server: Server, request: bytes, rate: float, seconds: float) -> dict:
    """The fields of `Overload` measured under the open-loop load and after it."""
    loop = asyncio.get_running_loop()
    async with Probe(server.port, request) as probe:
        unloaded_s = float(np.median([(await probe.ask())[1] for _ in range(20)]))
    rss_before = server.rss_mb()
    rss_during: list[float] = []

    async def sample_rss() -> None:
        while True:
            rss_during.append(server.rss_mb())
            await asyncio.sleep(0.1)

    sampler = loop.create_task(sample_rss())
    load = OpenLoop(server.port, request, rate)
    cpu_started, started = time.process_time(), loop.time()
    await load.send(seconds)
    stopped = loop.time()
    sampler.cancel()
    client_cpu = (time.process_time() - cpu_started) / (stopped - started)
    # the load's last answers still arrive meanwhile: the probes run beside the drain
    async with Probe(server.port, request) as probe:
        probes = 0
        while True:
            probes += 1
            status, took = await probe.ask()
            if status == 200 and took <= 2 * unloaded_s:
                break
            if loop.time() - stopped > 60:
                raise RuntimeError(f"not recovered 60 s after the load: last probe {status} in {took:.3f} s")
    recovery_s = loop.time() - stopped
    await load.drain()
    return {
        "load": load,
        "unloaded_s": unloaded_s,
        "recovery_s": recovery_s,
        "probes": probes,
        "queue_after": metric_total(server, "genserve_queue_depth_rows", model=HEAVY, graph="decoder"),
        "rss_mb": (rss_before, max(rss_during), server.rss_mb()),
        "client_cpu": client_cpu,
    }


# ---- the run --------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()[1]
    import onnxruntime

    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Linux {platform.release()}, Python "
        f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, wrk {wrk_version}"
    )


@dataclass
class Throughput:
    rows: list[Result]
    facts: dict[str, float]
    reference: dict[str, float]  # (b), digits-cvae in-process
    heavy_reference: dict[str, float]


def throughput(seconds: float, heavy_dir: Path) -> Throughput:
    """The wrk scenarios beside the two limits (a) and (b)."""
    rows: list[Result] = []
    facts: dict[str, float] = {}

    def log(result: Result) -> None:
        rows.append(result)
        batch = f"{result.batch:.1f}" if result.batch else "-"
        print(
            f"  {result.scenario:<44} {result.rps:>9.0f} req/s  p99 {result.p99_ms:>7.1f} ms  batch {batch}",
            file=sys.stderr,
            flush=True,
        )

    one = {"model": "digits-cvae", "n": 1, "label": "7"}
    big = {"model": "digits-cvae", "n": 1024, "label": "7"}
    cancer_rows = [[float(v) for v in r] for r in _cancer_rows(32)]
    digits_rows = [[float(v) for v in r] for r in _digits_rows(32)]

    # (a) the HTTP stack's limit, with a body of /generate n=1's size
    with genserve() as server:
        body_n1 = httpx.post(server.url + "/generate", json=one).content
    body_file = Path(tempfile.mkstemp(suffix=".json")[1])
    body_file.write_bytes(body_n1)
    with Server([PYTHON, str(BENCH / "bare_server.py"), "{port}", str(body_file)]) as bare:
        for c in (1, 64, 256):
            log(measure(bare, f"(a) bare endpoint, {c} conn", c, seconds, one))
    body_file.unlink()

    for batching in ("on", "off"):
        with genserve(batching=batching) as server:
            if batching == "on":
                facts["cold_start_s"] = server.cold_start_s
                facts["rss_idle_mb"] = server.rss_mb()
            for c in (1, 16, 64, 256):
                log(measure(server, f"generate n=1, {c} conn, batching {batching}", c, seconds, one, "digits-cvae"))
            if batching == "on":
                peak = max(r.rps for r in rows if r.scenario.startswith("generate n=1") and "on" in r.scenario)
                # half the peak, offered by 16 connections pausing between requests
                delay = max(0.0, 16 * 1000 / (0.5 * peak))
                log(measure(server, "generate n=1, half of peak load", 16, seconds, one, "digits-cvae", delay_ms=delay))
                log(measure(server, "generate n=1024 (JSON), 1 conn", 1, seconds, big, "digits-cvae"))
                log(
                    measure(
                        server,
                        "generate n=1024 (.npy), 1 conn",
                        1,
                        seconds,
                        big,
                        "digits-cvae",
                        accept="application/x-npy",
                    )
                )
                body = {"model": "digits-vae", "inputs": digits_rows}
                log(
                    measure(
                        server, "reconstruct 32 rows, 16 conn", 16, seconds, body, "digits-vae", path="/reconstruct"
                    )
                )
                body = {"model": "cancer-qvae", "inputs": cancer_rows, "labels": ["benign"] * 32}
                log(measure(server, "quantiles 32 rows, 16 conn", 16, seconds, body, "cancer-qvae", path="/quantiles"))
                facts["rss_loaded_mb"] = server.rss_mb()

    heavy = {"model": HEAVY, "n": 1, "label": "7"}
    for batching in ("on", "off"):
        with genserve(batching=batching, model_dir=HEAVY_DIR) as server:
            for c in (1, 64):
                log(measure(server, f"heavy model n=1, {c} conn, batching {batching}", c, seconds, heavy, HEAVY))

    with genserve(workers=2) as server:
        log(measure(server, "generate n=1, 64 conn, 2 workers", 64, seconds, one, "digits-cvae"))

    reference = in_process(ROOT / "models" / "digits-cvae" / "1", (1, 64, 1024))
    reference["table_rows_1000"] = table_rows_in_process(ROOT / "models" / "penguins-cvae" / "1")
    reference["conditioned_rows_1000"] = conditioned_rows_in_process(ROOT / "models" / "penguins-cvae" / "1")
    return Throughput(rows, facts, reference, in_process(heavy_dir, (1, 64)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="length of each measured wrk run")
    parser.add_argument("--quick", action="store_true", help="2-second runs (5 s of overload), for a smoke test")
    parser.add_argument("--overload-seconds", type=float, default=30, help="length of the load at 4 x capacity")
    parser.add_argument(
        "--only", choices=("throughput", "overload", "streaming"), help="run one part alone; writes <date>-<part>.md"
    )
    args = parser.parse_args()
    seconds = 2 if args.quick else args.seconds
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 1
    started = time.perf_counter()
    heavy_dir = ensure_heavy_model()
    measured = throughput(seconds, heavy_dir) if args.only in (None, "throughput") else None
    overloaded = None
    if args.only in (None, "overload"):
        overloaded = overload(seconds, 5 if args.quick else args.overload_seconds)
    streamed = None
    if args.only in (None, "streaming"):
        streamed = streaming(genserve, wrk, log=lambda line: print(line, file=sys.stderr, flush=True))
    report = render(measured, overloaded, streamed, time.perf_counter() - started)
    print(report)
    name = datetime.date.today().isoformat() + (f"-{args.only}" if args.only else "")
    out = BENCH / "results" / f"{name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


def _cancer_rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data[:n]


def _digits_rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data[:n] / 16.0


def render(measured: Throughput | None, overloaded: Overload | None, streamed: Streaming | None, took_s: float) -> str:
    lines = [
        f"# genserve benchmark, {datetime.date.today().isoformat()}",
        "",
        f"Machine: {machine()}. One server worker unless stated; wrk on the same machine, 127.0.0.1.",
        f"Each run measured after a 1 s warm-up; the whole run took {took_s / 60:.1f} min.",
    ]
    if measured is not None:
        lines += _throughput_lines(measured)
    if overloaded is not None:
        lines += _overload_lines(overloaded)
    if streamed is not None:
        lines += streaming_lines(streamed)
    return "\n".join(lines) + "\n"


def _throughput_lines(measured: Throughput) -> list[str]:
    rows, facts, ref, heavy_ref = measured.rows, measured.facts, measured.reference, measured.heavy_reference
    by = {r.scenario: r for r in rows}
    lines = [
        "",
        "| scenario | requests/s | p50 ms | p90 ms | p99 ms | errors | mean batch | RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        batch = f"{r.batch:.1f}" if r.batch else "–"
        lines.append(
            f"| {r.scenario} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.errors} | {batch} | {r.rss_mb:.0f} |"
        )
    ms = 1000
    lines += [
        "",
        "Reference (b), the model in-process (onnxruntime, 1 thread, digits-cvae decoder): "
        f"{ref['infer_1'] * ms:.3f} ms for 1 row, {ref['infer_64'] * ms:.3f} ms for 64, "
        f"{ref['infer_1024'] * ms:.3f} ms for 1024; encoding 1024 x 64 as JSON {ref['json_1024'] * ms:.3f} ms, "
        f"as .npy {ref['npy_1024'] * ms:.3f} ms. Heavy model: {heavy_ref['infer_1'] * ms:.3f} ms for 1 row, "
        f"{heavy_ref['infer_64'] * ms:.3f} ms for 64. Synthetic rows in-process (penguins-cvae, `mode: sample`: "
        f"latent prior, decoder, draws, typed rows): {ref['table_rows_1000'] * ms:.2f} ms per 1,000 rows "
        f"(target < 2 ms: {_yes(ref['table_rows_1000'] < 0.002)}); under conditions on two columns "
        f"({json.dumps(CONDITIONS)}, met by about a fifth of its rows): {ref['conditioned_rows_1000'] * ms:.2f} ms "
        "per 1,000 rows (SDV's sample_from_conditions: bench/conditions.py).",
        "",
        "| target | measured | holds |",
        "|---|---|---|",
    ]
    n1_64 = by["generate n=1, 64 conn, batching on"]
    bare = by["(a) bare endpoint, 64 conn"]
    ratio = n1_64.rps / bare.rps
    lines.append(
        f"| 1. /generate n=1 at 64 conn ≥ 0.8 × bare endpoint | {n1_64.rps:,.0f} / {bare.rps:,.0f} = "
        f"{ratio:.2f} | {_yes(ratio >= 0.8)} |"
    )
    on_off = n1_64.rps / by["generate n=1, 64 conn, batching off"].rps
    lines.append(f"| 2a. batching on / off at 64 conn, digits-cvae ≥ 1.5 | {on_off:.2f} | {_yes(on_off >= 1.5)} |")
    heavy = by["heavy model n=1, 64 conn, batching on"].rps / by["heavy model n=1, 64 conn, batching off"].rps
    lines.append(f"| 2b. batching on / off at 64 conn, heavy model ≥ 3 | {heavy:.2f} | {_yes(heavy >= 3)} |")
    for model, key in (
        ("digits-cvae", "generate n=1, 1 conn, batching"),
        ("heavy", "heavy model n=1, 1 conn, batching"),
    ):
        single = by[f"{key} on"].rps / by[f"{key} off"].rps
        lines.append(f"| 2c. no loss at 1 conn ({model}): on / off ≥ 0.9 | {single:.2f} | {_yes(single >= 0.9)} |")
    half = by["generate n=1, half of peak load"]
    unloaded = by["generate n=1, 1 conn, batching on"].p50_ms
    lines.append(
        f"| 3. p99 at half of peak load ({half.rps:,.0f} req/s) ≤ 3 × unloaded latency | "
        f"{half.p99_ms:.2f} ms vs 3 × {unloaded:.2f} ms | {_yes(half.p99_ms <= 3 * unloaded)} |"
    )
    limit_json = (ref["infer_1024"] + ref["json_1024"]) * ms
    limit_npy = (ref["infer_1024"] + ref["npy_1024"]) * ms
    e2e_json, e2e_npy = by["generate n=1024 (JSON), 1 conn"].p50_ms, by["generate n=1024 (.npy), 1 conn"].p50_ms
    lines.append(
        f"| 4a. n=1024 end to end (JSON) ≤ 2 × in-process | {e2e_json:.2f} ms vs {limit_json:.2f} ms = "
        f"{e2e_json / limit_json:.2f} × | {_yes(e2e_json <= 2 * limit_json)} |"
    )
    lines.append(
        f"| 4b. n=1024 end to end (.npy) ≤ 1.3 × in-process | {e2e_npy:.2f} ms vs {limit_npy:.2f} ms = "
        f"{e2e_npy / limit_npy:.2f} × | {_yes(e2e_npy <= 1.3 * limit_npy)} |"
    )
    lines.append(
        f"| 5a. cold start to /readyz 200 < 2 s (the default models) | {facts['cold_start_s']:.2f} s | "
        f"{_yes(facts['cold_start_s'] < 2)} |"
    )
    lines.append(
        f"| 5b. one worker's RSS < 250 MB | {facts['rss_idle_mb']:.0f} MB idle, "
        f"{facts['rss_loaded_mb']:.0f} MB after load | {_yes(facts['rss_loaded_mb'] < 250)} |"
    )
    lines.append("| 6. GPU | no GPU on this machine | – |")
    return lines


def _overload_lines(o: Overload) -> list[str]:
    load = o.load
    accepted, shed = load.with_status(200), load.with_status(503)
    other = [e for e in load.exchanges if e.status not in (200, 503)]
    p50, p99 = np.percentile([e.latency_s * 1000 for e in accepted], (50, 99))
    before, during, after = o.rss_mb
    conn = OVERLOAD_QUEUE // OVERLOAD_BODY["n"]
    lines = [
        "",
        f"Overload: {HEAVY}, /generate n={OVERLOAD_BODY['n']}, GENSERVE_MAX_QUEUE={OVERLOAD_QUEUE} rows ({conn} "
        f"such requests). Its capacity C is measured closed-loop (wrk, {conn} connections, so that none is shed); "
        f"then requests are sent open-loop at 4 × C for {load.seconds:.0f} s (bench/open_loop.py: each leaves on "
        "schedule, whatever the answers); then C is measured again.",
        "",
        "| overload | measured |",
        "|---|---|",
        f"| capacity C before / right after | {o.capacity.rps:,.0f} / {o.capacity_after.rps:,.0f} req/s "
        f"(errors {o.capacity.errors} / {o.capacity_after.errors}) |",
        f"| offered 4 × C / sent at | {load.rate:,.0f} / {load.achieved_rate():,.0f} req/s "
        f"(send lag p99 {load.lag_p99_s() * 1000:.1f} ms; {load.connections_opened} connections; "
        f"client CPU {o.client_cpu:.0%} of a core) |",
        f"| sent | {len(load.exchanges):,} |",
        f"| accepted (200) | {len(accepted):,} ({len(accepted) / load.seconds:,.0f} req/s) |",
        f"| shed (503) | {len(shed):,} ({sum(e.retry_after for e in shed):,} with Retry-After) |",
        f"| other: lost (errors, timeouts, other statuses) | {len(other)} |",
        f"| accepted latency p50 / p99 | {p50:.1f} / {p99:.1f} ms (unloaded {o.unloaded_s * 1000:.1f} ms) |",
        f"| server RSS before / max during (every 0.1 s) / after | {before:.0f} / {during:.0f} / {after:.0f} MB |",
        f"| recovery: last send to a probe's 200 within 2 × unloaded | {o.recovery_s * 1000:.0f} ms "
        f"({o.probes} probes); queue depth once all answered: {o.queue_after:.0f} rows |",
    ]
    if other:
        kinds = Counter(e.error or str(e.status) for e in other)
        lines += ["", "Lost: " + ", ".join(f"{kind} × {count}" for kind, count in kinds.most_common())]
    return lines


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


if __name__ == "__main__":
    sys.exit(main())
