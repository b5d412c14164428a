"""Prometheus metrics, declared once. With several workers, prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by `python -m app` before any worker starts) aggregates them."""

from __future__ import annotations

import contextlib
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

disable_created_metrics()  # no *_created series: they double the output and no dashboard reads them

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter("genserve_requests", "HTTP requests by endpoint, model and status", ["endpoint", "model", "status"])
REQUEST_LATENCY = Histogram(
    "genserve_request_duration_seconds", "Request latency", ["endpoint"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "genserve_batch_size_rows", "Rows per graph run", ["model", "version", "graph"], buckets=_BATCH_BUCKETS
)
QUEUE_WAIT = Histogram(
    "genserve_queue_wait_seconds",
    "Time rows wait before their batch runs",
    ["model", "version", "graph"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_TIME = Histogram(
    "genserve_inference_duration_seconds",
    "Time of one graph run",
    ["model", "version", "graph"],
    buckets=_LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "genserve_queue_depth_rows", "Rows waiting per graph", ["model", "version", "graph"], multiprocess_mode="livesum"
)
MODELS_LOADED = Gauge(
    "genserve_model_loaded",
    "1 for each served model version",
    ["model", "version", "device", "backend"],
    multiprocess_mode="livemax",
)

STREAM_ROWS = Counter("genserve_stream_rows", "Rows sent by /generate/stream", ["model", "version"])
STREAMS_ACTIVE = Gauge("genserve_streams_active", "Streams being sent", ["model"], multiprocess_mode="livesum")
SEND_TIMEOUTS = Counter(
    "genserve_send_timeouts", "Answers cut off: their client took none of them for GENSERVE_SEND_TIMEOUT_S"
)

ROWS_SCORED = Counter("genserve_anomaly_rows_scored", "Rows scored by /anomaly", ["model", "version"])
ROWS_FLAGGED = Counter("genserve_anomaly_rows_flagged", "Rows /anomaly flagged", ["model", "version"])
_anomaly_children: dict[tuple[str, int], tuple] = {}


def anomaly_counters(model: str, version: int) -> tuple:
    """(scored, flagged) for a model version: their ratio over time is a drift signal."""
    children = _anomaly_children.get((model, version))
    if children is None:
        children = (ROWS_SCORED.labels(model, str(version)), ROWS_FLAGGED.labels(model, str(version)))
        _anomaly_children[(model, version)] = children
    return children


def forget_version(model: str, version: int, device: str, backend: str) -> None:
    """Drop a removed version's series, so that /metrics does not grow with every version ever
    served. (Several workers: their files keep the series; the loaded gauge reads 0.)"""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    for metric in (BATCH_SIZE, QUEUE_WAIT, INFERENCE_TIME, QUEUE_DEPTH):
        for graph in ("encoder", "decoder"):
            with contextlib.suppress(KeyError):
                metric.remove(model, str(version), graph)
    with contextlib.suppress(KeyError):
        MODELS_LOADED.remove(model, str(version), device, backend)
    for counter in (ROWS_SCORED, ROWS_FLAGGED, STREAM_ROWS):
        with contextlib.suppress(KeyError):
            counter.remove(model, str(version))
    _anomaly_children.pop((model, version), None)


def render() -> tuple[bytes, str]:
    """The exposition text for GET /metrics, aggregated over workers in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _forget_dead_workers(directory: str) -> None:
    """Live gauges of a worker that died without its lifespan's clean-up (killed): without
    this, its last queue depth would be summed into the gauge for ever."""
    pids = set()
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name.rsplit("_", 1)[-1].removesuffix(".db")
            if pid.isdigit():
                pids.add(int(pid))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
