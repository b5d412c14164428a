"""What the attack suites share (tests/test_hostile*.py): raw requests on fresh connections,
probes of /healthz and /generate every 50 ms, and the bound a probe's p99 is held to.

The bound is relative to the machine: `latency_bound` takes the p99 of probes measured just
before the attack (on a quiet 2-core machine a few ms) and allows ten times it, and at least
50 ms. An event loop blocked by the attack shows as probes of hundreds of ms or seconds, which
fails on any machine; a machine whose two cores are busy with other work slows the quiet probes
as much as the attacked ones, and does not fail the test.
"""

from __future__ import annotations

import socket
import time

QUIET_BOUND_MS = 50.0  # the p99 a probe is held to on a quiet machine
SLOWDOWN = 10.0  # ... and at most this many times the machine's own unloaded p99
GENERATE = b'{"model": "digits-cvae", "label": "3"}'


def answer_status(port: int, request: bytes, timeout: float = 5.0) -> int:
    """Send one request on a new connection and return the status of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


PROBES = {
    "/healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "/generate": post("/generate", GENERATE),
}


def probe(port: int, seconds: float) -> dict[str, list[float]]:
    """Probe both endpoints every 50 ms for `seconds`: each answer's latency in ms (inf: failed)."""
    latencies: dict[str, list[float]] = {path: [] for path in PROBES}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, request in PROBES.items():
            started = time.perf_counter()
            try:
                ok = answer_status(port, request) == 200
            except OSError:
                ok = False
            latencies[path].append((time.perf_counter() - started) * 1000 if ok else float("inf"))
        time.sleep(0.05)
    return latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def report(what: str, latencies: dict[str, list[float]]) -> None:
    """The figures, for the log of the run (pytest -s shows them)."""
    for path, values in latencies.items():
        median = sorted(values)[len(values) // 2]
        print(f"{what}: {path} {len(values)} probes, median {median:.1f} ms, p99 {p99(values):.1f} ms")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def answer_metrics(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def latency_bound(port: int, seconds: float = 3.0) -> float:
    """The p99 (ms) probes may reach under an attack: 50 ms, or ten times their p99 on this
    machine just now, unattacked, whichever is larger (printed with its reason)."""
    quiet = probe(port, seconds)
    worst = max(p99(values) for values in quiet.values())
    bound = max(QUIET_BOUND_MS, SLOWDOWN * worst)
    print(f"unattacked probes' p99 {worst:.1f} ms: the bound under attack is {bound:.0f} ms")
    return bound


def assert_answering(latencies: dict[str, list[float]], bound: float) -> None:
    """Every probe answered 200, and each endpoint's p99 is within `bound` ms."""
    for path, values in latencies.items():
        assert all(v != float("inf") for v in values), f"{path}: a probe failed"
        assert p99(values) < bound, f"{path}: p99 {p99(values):.1f} ms over {len(values)} probes (bound {bound:.0f} ms)"
