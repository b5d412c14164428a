"""Graceful shutdown: SIGTERM to a live server under load finishes every request it has
taken, refuses new connections, and exits 0 promptly.

A request is in flight once the server has read it: uvicorn's access log records each one
it answers. A request sent on an idle keep-alive connection just as the server closes it,
or on a new connection still in the listen backlog, is never read: its client sees the
connection refused or reset, and may retry it elsewhere."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import httpx

CLIENTS = 32


def test_sigterm_under_load_finishes_in_flight_requests_and_exits_0(live_server) -> None:
    server = live_server(log_level="info", access_log="true")
    statuses: Counter = Counter()
    unsent: list[str] = []  # connection reset before the server read the request
    spanning = []  # statuses of requests sent before SIGTERM and answered after it
    lock = threading.Lock()
    sent_term = threading.Event()
    term_at = 0.0

    def client() -> None:
        body = {"model": "digits-cvae", "n": 4, "label": "3"}
        with httpx.Client(timeout=30) as http:
            while True:
                started = time.monotonic()
                try:
                    status = http.post(server.url + "/generate", json=body).status_code
                except httpx.ConnectError:
                    with lock:
                        statuses["refused"] += 1
                    return  # refused: the server is shutting down
                except httpx.HTTPError as e:
                    with lock:
                        unsent.append(f"{type(e).__name__}: {e}")
                    return
                with lock:
                    statuses[status] += 1
                    if sent_term.is_set() and started < term_at:
                        spanning.append(status)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # load for a second, then stop the server in the middle of it
    term_at = time.monotonic()
    sent_term.set()
    server.process.send_signal(signal.SIGTERM)
    returncode = server.process.wait(timeout=30)
    took = time.monotonic() - term_at
    for thread in threads:
        thread.join(timeout=30)

    print(
        f"SIGTERM under load: {statuses[200]} answered 200, {len(spanning)} of them in flight at SIGTERM, "
        f"{statuses['refused']} refused and {len(unsent)} reset afterwards; exit {returncode} after {took:.2f} s"
    )
    assert returncode == 0, server.output()[-3000:]
    assert took < 10, f"exited {took:.1f} s after SIGTERM"
    assert statuses[200] > CLIENTS  # it was under load
    assert spanning and set(spanning) == {200}, spanning  # in flight at SIGTERM: all answered 200
    # every request the server read was answered 200 and arrived whole: no in-flight request failed
    log = server.output().splitlines()
    answered = Counter(line.split('HTTP/1.1" ')[1].split()[0] for line in log if '"POST /generate' in line)
    assert answered == {"200": statuses[200]}, (answered, statuses)
    # after SIGTERM no client could start another request: each one's next connection was refused or reset
    assert set(statuses) <= {200, "refused"}, statuses
    assert statuses["refused"] + len(unsent) == CLIENTS, (statuses, unsent)
    assert all("reset" in e or "disconnected" in e for e in unsent), unsent


def test_idle_keep_alive_connections_close_after_the_setting(live_server) -> None:
    """GENSERVE_KEEP_ALIVE_S: set it above a load balancer's idle timeout, so that the balancer,
    not the server, closes idle connections (else a request can meet a connection being closed)."""
    import socket

    server = live_server(keep_alive_s="0.5")
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()

    def read_response(conn: socket.socket) -> bytes:
        """One whole response: headers and body may arrive in separate reads."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += conn.recv(4096)
        return head

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(0.1)
        conn.sendall(request)  # still open well within the timeout: served
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert conn.recv(4096) == b""  # then the server closes it, once idle for 0.5 s
        assert 0.3 < time.monotonic() - started < 5


def test_a_stream_cut_by_the_shutdown_timeout_logs_one_warning_and_ends_unfinished(live_server) -> None:
    """A client that stops reading a long stream holds its response past the graceful-shutdown
    timeout: uvicorn cancels it. The log says so in one warning line, without uvicorn's
    traceback of the CancelledError, and the client's response ends without its last chunk."""
    import json
    import socket

    server = live_server(shutdown_timeout_s="1", max_stream_rows="100000000", log_level="info")
    body = json.dumps({"model": "penguins-cvae", "n": 50_000_000, "label": "Gentoo", "seed": 1}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        head = b"POST /generate/stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        client.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert client.recv(64).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # not reading: the server's writes back up
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        client.settimeout(10)
        tail = b""
        while chunk := client.recv(1 << 20):
            tail = (tail + chunk)[-16:]
    assert not tail.endswith(b"0\r\n\r\n")  # no closing chunk: the client can tell the stream was cut
    log = server.output()
    assert "a response still running was cut" in log, log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_only_the_shutdown_cancel_loses_its_traceback() -> None:
    """CutAtShutdown rewrites uvicorn's record of its own graceful-shutdown cancel; any other
    CancelledError (a bug) keeps its traceback and level, and an odd record passes untouched."""
    import asyncio
    import logging

    from app.main import CUT_AT_SHUTDOWN

    def record(msg: object, error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, None, (type(error), error, None))

    cut = record("Exception in ASGI application\n", asyncio.CancelledError("timeout graceful shutdown exceeded"))
    assert CUT_AT_SHUTDOWN.filter(cut) and cut.levelno == logging.WARNING and cut.exc_info is None
    assert cut.getMessage() == "a response still running was cut: timeout graceful shutdown exceeded"
    other = record("Exception in ASGI application\n", asyncio.CancelledError())
    assert CUT_AT_SHUTDOWN.filter(other) and other.levelno == logging.ERROR and other.exc_info is not None
    odd = record(ValueError("not text"), asyncio.CancelledError("graceful shutdown"))
    assert CUT_AT_SHUTDOWN.filter(odd) and odd.levelno == logging.ERROR
