"""`make bench`'s streaming part: /generate/stream end to end against making the same rows
in-process, and a 10-million-row stream's memory and what it does to short requests.

For each format, 1,000,000 rows of the default tabular model (penguins-cvae, label Gentoo,
`mode: sample`): in-process, `Sampler.blocks` through the same `RowWriter` into nothing; end to
end, curl reading the stream from a genserve worker into /dev/null. Then one stream of
10,000,000 rows (CSV) while the server's RSS is read every 0.1 s and wrk sends /generate n=1
requests at a steady pace beside it (4 connections, 10 ms apart on average): their p99, beside
the same load without a stream. Run as part of bench/run.py, or alone:

    python bench/run.py --only streaming
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "penguins-cvae"
BODY = {"model": MODEL, "label": "Gentoo", "seed": 1}
FORMATS = {
    "NDJSON": "application/x-ndjson",
    "CSV": "text/csv",
    "Arrow IPC": "application/vnd.apache.arrow.stream",
    "Parquet": "application/vnd.apache.parquet",
}
ROWS = 1_000_000
LONG_ROWS = 10_000_000
LONG_FORMAT = "CSV"
PACE = {"connections": 4, "delay_ms": 10.0}  # about 400 requests/s of /generate n=1


@dataclass
class Streaming:
    in_process: dict[str, float] = field(default_factory=dict)  # rows/s per format
    served: dict[str, float] = field(default_factory=dict)
    bytes_per_row: dict[str, float] = field(default_factory=dict)
    long_rows_per_s: float = 0.0
    long_seconds: float = 0.0
    rss_mb: tuple[float, float, float] = (0.0, 0.0, 0.0)  # before, max during, after
    p99_alone_ms: float = 0.0
    p99_during_ms: float = 0.0
    rps_during: float = 0.0
    errors_during: int = 0


def in_process_rows_per_s(media_type: str, n: int) -> float:
    from core.formats import RowWriter
    from core.offline import Sampler

    sampler = Sampler(ROOT / "models" / MODEL / "1", threads=1)
    label = (sampler.manifest.labels or []).index(BODY["label"])
    writer = RowWriter(media_type, sampler.names, sampler.table)
    started = time.perf_counter()
    part, rows = [], 0
    for block in sampler.blocks(n, label, BODY["seed"]):
        part.append(block)
        rows += len(block)
        if rows >= writer.part_rows:
            writer.write(part)
            part, rows = [], 0
    if part:
        writer.write(part)
    writer.close()
    return n / (time.perf_counter() - started)


def curl_stream(url: str, media_type: str, n: int) -> tuple[float, int]:
    """(seconds, bytes) of one stream read by curl into /dev/null."""
    out = subprocess.run(
        [
            "curl", "-sS", "--fail", "-X", "POST", f"{url}/generate/stream", "-H", "Content-Type: application/json",
            "-H", f"Accept: {media_type}", "-d", json.dumps({**BODY, "n": n}), "-o", "/dev/null",
            "-w", "%{time_total} %{size_download}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def streaming(genserve, wrk, log=print) -> Streaming:
    """`genserve(**settings)` starts a server (a context manager with .url and .rss_mb());
    `wrk(url, connections, seconds, body, delay_ms=...)` -> (rps, p50, p90, p99, errors)."""
    result = Streaming()
    in_process_rows_per_s(FORMATS["NDJSON"], 100_000)  # warm-up: the graph's first runs, imports
    for name, media_type in FORMATS.items():
        result.in_process[name] = in_process_rows_per_s(media_type, ROWS)
        log(f"  in-process {name:<10} {result.in_process[name]:>12,.0f} rows/s")
    one = {"model": MODEL, "n": 1, "label": "Gentoo"}
    with genserve() as server:
        curl_stream(server.url, FORMATS["CSV"], 100_000)  # warm-up
        for name, media_type in FORMATS.items():
            seconds, size = curl_stream(server.url, media_type, ROWS)
            result.served[name] = ROWS / seconds
            result.bytes_per_row[name] = size / ROWS
            log(f"  streamed   {name:<10} {result.served[name]:>12,.0f} rows/s ({size / 1e6:,.0f} MB)")

        wrk(server.url, PACE["connections"], 1, one, delay_ms=PACE["delay_ms"])  # warm-up
        alone = wrk(server.url, PACE["connections"], 10, one, delay_ms=PACE["delay_ms"])
        result.p99_alone_ms = alone[3]

        samples: list[float] = []
        done = threading.Event()

        def sample_rss() -> None:
            while not done.is_set():
                samples.append(server.rss_mb())
                time.sleep(0.1)

        before = server.rss_mb()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        timing: dict[str, float] = {}

        def long_stream() -> None:
            timing["seconds"], _ = curl_stream(server.url, FORMATS[LONG_FORMAT], LONG_ROWS)

        stream = threading.Thread(target=long_stream)
        stream.start()
        time.sleep(1.0)
        during = wrk(server.url, PACE["connections"], 10, one, delay_ms=PACE["delay_ms"])
        stream.join()
        done.set()
        sampler.join()
        time.sleep(0.5)
        result.rss_mb = (before, max(samples or [before]), server.rss_mb())
        result.long_seconds = timing["seconds"]
        result.long_rows_per_s = LONG_ROWS / timing["seconds"]
        result.rps_during, result.p99_during_ms, result.errors_during = during[0], during[3], during[4]
        log(
            f"  10M-row {LONG_FORMAT} stream: {result.long_seconds:.1f} s, RSS {before:.0f} -> max "
            f"{result.rss_mb[1]:.0f} MB; n=1 p99 {result.p99_during_ms:.2f} ms (alone {result.p99_alone_ms:.2f} ms)"
        )
    return result


def lines(s: Streaming) -> list[str]:
    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    out = [
        "",
        f"Streaming: {MODEL}, label Gentoo, `mode: sample`, {ROWS:,} rows per format. In-process: `Sampler.blocks` "
        "through the same `RowWriter`, one thread, into nothing. Streamed: `POST /generate/stream`, one worker, "
        "read by curl into /dev/null.",
        "",
        "| format | in-process rows/s | streamed rows/s | streamed / in-process | bytes per row |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in FORMATS:
        ratio = s.served[name] / s.in_process[name]
        out.append(
            f"| {name} | {s.in_process[name]:,.0f} | {s.served[name]:,.0f} | {ratio:.2f} | "
            f"{s.bytes_per_row[name]:.1f} |"
        )
    growth = s.rss_mb[1] - s.rss_mb[0]
    ratio = s.long_rows_per_s / s.in_process[LONG_FORMAT]
    out += [
        "",
        f"One stream of {LONG_ROWS:,} rows ({LONG_FORMAT}) beside /generate n=1 at a steady pace "
        f"(wrk, {PACE['connections']} connections, {PACE['delay_ms']:g} ms apart on average):",
        "",
        "| target | measured | holds |",
        "|---|---|---|",
        f"| 7a. server RSS grows < 50 MB during the stream | {s.rss_mb[0]:.0f} → max {s.rss_mb[1]:.0f} MB "
        f"(+{growth:.0f}), after {s.rss_mb[2]:.0f} MB | {yes(growth < 50)} |",
        f"| 7b. streamed ≥ 0.5 × in-process rows/s ({LONG_FORMAT}) | {s.long_rows_per_s:,.0f} / "
        f"{s.in_process[LONG_FORMAT]:,.0f} = {ratio:.2f} ({s.long_seconds:.1f} s) | {yes(ratio >= 0.5)} |",
        f"| 7c. n=1 p99 < 20 ms during the stream | {s.p99_during_ms:.2f} ms at {s.rps_during:,.0f} req/s, "
        f"{s.errors_during} errors (without a stream: {s.p99_alone_ms:.2f} ms) | "
        f"{yes(s.p99_during_ms < 20 and s.errors_during == 0)} |",
    ]
    return out


if __name__ == "__main__":
    sys.exit("run it through bench/run.py --only streaming")
