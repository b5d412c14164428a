"""Slow readers of /generate/stream against a live server on 127.0.0.1 (as tests/test_hostile.py):
the readers run in a child process, while this process probes /healthz and /generate on fresh
connections and measures the server's memory.

A slow reader costs the server what its stream holds while the client is behind: that is
bounded per connection (a stream makes its next part only once the client has taken the last),
and a client that takes nothing for GENSERVE_SEND_TIMEOUT_S is cut off, its work stopped.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.attacks import answer_metrics, assert_answering, latency_bound, probe, report, rss_mb
from tests.conftest import ROOT, LiveServer, metric_value

PENGUINS = {"model": "penguins-cvae", "label": "Gentoo", "seed": 1, "n": 10_000_000}
DIGITS = {"model": "digits-cvae", "label": "3", "seed": 1, "n": 10_000_000}
# what the readers ask for, in turn: each format of a table model, and the largest rows (64 floats) as NDJSON
STREAMS = (
    (PENGUINS, "application/x-ndjson"),
    (PENGUINS, "text/csv"),
    (PENGUINS, "application/vnd.apache.arrow.stream"),
    (DIGITS, "application/x-ndjson"),
)
FIRST_BYTE_WAIT_S = 30.0


def stream_request(body: dict, accept: str) -> bytes:
    payload = json.dumps(body).encode()
    head = f"POST /generate/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: {accept}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


def warm_up(port: int) -> None:
    """One short stream of each of STREAMS, read whole: what the first stream of a format loads once
    (pyarrow, its CSV writer) is in place before memory is measured."""
    for body, accept in STREAMS:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(stream_request({**body, "n": 3000}, accept))
            answer = b""
            while chunk := s.recv(1 << 20):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"0\r\n\r\n"), answer[:200]


def slow_readers(port: int, count: int, first_bytes, ready) -> None:
    """(In a child process.) `count` streams, of STREAMS in turn, each read a byte a second once its
    first byte has come. The time each waited for its first byte (s; inf: none within 30 s) is put
    on `first_bytes` as one list, then `ready` is set; holds them until killed."""
    selector = selectors.DefaultSelector()
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(stream_request(*STREAMS[i % len(STREAMS)]))
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, (i, time.monotonic()))
        socks.append(s)
    waited = [float("inf")] * count
    deadline = time.monotonic() + FIRST_BYTE_WAIT_S
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            i, sent = key.data
            with contextlib.suppress(OSError):
                if key.fileobj.recv(1):
                    waited[i] = time.monotonic() - sent
            selector.unregister(key.fileobj)
    first_bytes.put(waited)
    ready.set()
    while True:
        time.sleep(1)
        for s in socks:
            with contextlib.suppress(OSError):
                s.recv(1)


class PeakRss:
    """The largest RSS (MB) of a process, sampled every 50 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_mb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def metric(port: int, name: str, **labels: str) -> float:
    return metric_value(answer_metrics(port).split("\r\n\r\n", 1)[1], name, **labels)


def streams_active(port: int) -> float:
    return metric(port, "genserve_streams_active")


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def start_server() -> Iterator:
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    servers: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        server = LiveServer({"GENSERVE_LOG_LEVEL": "info", **{f"GENSERVE_{k.upper()}": v for k, v in env.items()}})
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_fifty_slow_readers_hold_bounded_memory_and_leave_the_server_answering(start_server, attack) -> None:
    server = start_server()  # the default send deadline (30 s): the readers are not cut off while measured
    pid = server.process.pid
    warm_up(server.port)
    bound = latency_bound(server.port)
    before = rss_mb(pid)
    first_bytes = multiprocessing.get_context("fork").Queue()
    ready = multiprocessing.get_context("fork").Event()
    with PeakRss(pid) as rss:
        attacker = attack(slow_readers, server.port, 50, first_bytes, ready)
        assert ready.wait(FIRST_BYTE_WAIT_S + 30), "the readers did not get going"
        waited = sorted(first_bytes.get(timeout=10))
        during = probe(server.port, 8)  # the streams are held back by now: what they hold is in place
        held = rss_mb(pid)
    print(
        f"50 slow readers: first byte after median {waited[25] * 1000:.0f} ms, slowest {waited[-1] * 1000:.0f} ms; "
        f"{streams_active(server.port):.0f} streams open"
    )
    report("50 readers of /generate/stream at 1 byte/s", during)
    attacker.kill()
    attacker.join()
    assert wait_for(lambda: streams_active(server.port) == 0, 10), "the streams did not stop with their readers"
    wait_for(lambda: rss_mb(pid) < before + 20, 3)  # freed memory goes back to the system at the next sweep
    after = rss_mb(pid)
    print(f"RSS {before:.0f} MB before, peak {rss.peak:.0f} MB, {held:.0f} MB held by the readers, {after:.0f} after")
    assert all(w < FIRST_BYTE_WAIT_S for w in waited), f"{sum(w == float('inf') for w in waited)} had no first byte"
    assert rss.peak < before + 50, f"RSS {before:.0f} MB before, peak {rss.peak:.0f} MB with 50 slow readers"
    assert_answering(during, bound)
    assert after < before + 20, f"RSS {before:.0f} MB before, {after:.0f} MB after the readers left"
    log = server.output()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert "never retrieved" not in log, log[-3000:]  # the streams' work stopped cleanly when they left


def test_a_reader_that_stops_is_cut_off_at_the_send_deadline(start_server) -> None:
    server = start_server(send_timeout_s="3")

    def rows_sent() -> float:
        return metric(server.port, "genserve_stream_rows_total", model="penguins-cvae")

    def cut() -> float:
        return metric(server.port, "genserve_send_timeouts_total")

    # a reader that takes 64 KiB every quarter second for two deadlines is slow, not stalled: not cut. (The
    # server sees what the client takes once the kernel's buffers drain, a few hundred KiB at a time.)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as steady:
        steady.sendall(stream_request(PENGUINS, "text/csv"))
        taken, started = 0, time.monotonic()
        while time.monotonic() - started < 6:
            chunk = steady.recv(65536)
            assert chunk, f"the stream of a reader taking 64 KiB every 0.25 s was cut after {taken} bytes"
            taken += len(chunk)
            time.sleep(0.25)
    assert cut() == 0
    print(f"a reader taking 64 KiB every 0.25 s: {taken} bytes in 6 s, not cut (GENSERVE_SEND_TIMEOUT_S=3)")

    # a reader that stops: cut once it has taken nothing for 3 s, its rows no longer made
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(stream_request(PENGUINS, "application/x-ndjson"))
        assert stalled.recv(4096).startswith(b"HTTP/1.1 200 ")
        stopped = time.monotonic()  # from here it reads nothing
        assert wait_for(lambda: cut() == 1, 10), "a reader that stopped was not cut off"
        took = time.monotonic() - stopped
        print(f"a reader that stopped reading was cut off {took:.1f} s later (GENSERVE_SEND_TIMEOUT_S=3)")
        assert 3 <= took < 3 + 2
        assert wait_for(lambda: streams_active(server.port) == 0, 2), "its stream still runs"
        rows = rows_sent()
        time.sleep(0.5)
        assert rows_sent() == rows, "rows are still being made for a stream that was cut off"
        tail = b""
        with contextlib.suppress(ConnectionResetError):  # aborted: what was not yet read may be dropped
            while chunk := stalled.recv(1 << 20):
                tail = (tail + chunk)[-16:]
    assert not tail.endswith(b"0\r\n\r\n"), "a stream cut off ended as if complete"
    log = server.output()
    assert "GENSERVE_SEND_TIMEOUT_S" in log and "/generate/stream" in log, log[-3000:]
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
