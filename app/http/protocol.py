"""The HTTP/1.1 protocol genserve runs under uvicorn: uvicorn's httptools protocol with a limit
on every phase of a connection, so that no client can hold the server's sockets or memory
by being slow.

- **Headers**: the request line and headers must arrive within `GENSERVE_HEADER_TIMEOUT_S`
  of the connection's opening (or of a keep-alive request's first byte), in at most
  `GENSERVE_MAX_HEADER_BYTES` and `GENSERVE_MAX_HEADERS` lines: 408 or 431 otherwise, and the
  connection is closed before more is parsed.
- **Body**: an upload that pauses for `GENSERVE_BODY_TIMEOUT_S`, or that after that long
  averages under `GENSERVE_BODY_MIN_RATE` bytes/s, is answered 408 and closed; the app sees
  a disconnect (499) and drops what it had read. Time the server itself holds back reading
  (flow control, while the app has not taken the body yet) is not counted against the client.
- **Answer**: a client that takes none of its answer for `GENSERVE_SEND_TIMEOUT_S` (bytes
  waiting to be sent, none sent since) is cut off: the connection is aborted, what was unsent
  dropped, and the app sees a disconnect (a stream stops making rows). Logged as a warning with
  the request, and counted in `genserve_send_timeouts_total`. What a client that is behind holds
  in memory is bounded: in the kernel, UNSENT_KERNEL_BYTES not yet sent (TCP_NOTSENT_LOWAT; else
  Linux lets it grow to 4 MiB); in the transport, its high-water mark (64 KiB), since uvicorn
  waits for it to drain before each message; /generate/stream sends its parts in slices and makes
  the next only once the last is taken (app/api/routes/inference.py).
- **Idle keep-alive**: uvicorn's `GENSERVE_KEEP_ALIVE_S`.
- **Connections**: at most `GENSERVE_MAX_CONNECTIONS` open. One more evicts the connection
  that has waited longest without a request in progress (still sending headers, or idle
  between requests); when every one is busy, the new one is closed at once. The process's
  open-file limit is raised to allow them (`raise_open_files_limit`).
- **Shutdown**: a connection whose request has not fully arrived is closed at once instead
  of holding the drain for `GENSERVE_SHUTDOWN_TIMEOUT_S`.

A response's writes within one turn of the event loop (its status line and headers, then its
body) leave in one write (`CoalescingTransport`): one system call, and one wake-up of the
client, where uvicorn makes two.

A sweep every 0.5 s checks the deadlines (one timer per worker, not one per connection).
Memory a closed upload or a cut-off answer held goes back to the operating system
(`malloc_trim`, where glibc is the allocator).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import resource
import socket
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import metrics
from app.http.errors import error_body

logger = logging.getLogger("genserve")
SWEEP_S = 0.5
SWEEP_SLICE = 32  # connections checked per turn of the event loop
UNSENT_KERNEL_BYTES = 128 * 1024  # of an answer, held in the kernel but not yet sent (TCP_NOTSENT_LOWAT)
TRIM_AFTER_BYTES = 16 << 20  # bytes of request bodies and of answers cut short since the last trim


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    body_timeout_s: float = 10.0
    body_min_rate: int = 16 * 1024
    send_timeout_s: float = 30.0
    max_connections: int = 1000


_STATUS = {408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large"}


class TooManyHeaders(Exception):
    pass


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (`limits` is set by `configure`)."""

    limits: ClassVar[Limits] = Limits()
    _dropped_bytes: ClassVar[int] = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "headers"  # headers | body | app | idle (keep-alive, between requests)
        self._since = time.monotonic()
        self._header_bytes = 0
        self._header_lines = 0
        self._body_bytes = 0
        self._body_active_s = 0.0  # time in the body phase with reading not held back by the server
        self._last_body = self._since
        self._sent = 0  # response bytes the client has taken so far, and since when none were taken
        self._unsent_since = self._since

    # ---- connection -------------------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            transport.abort()  # every other connection is serving a request: this one waits its turn
            return
        _limit_unsent(transport)
        if not getattr(self.server_state, "genserve_sweeping", False):  # one sweep per server
            self.server_state.genserve_sweeping = True
            self.loop.call_later(SWEEP_S, _sweep, self.loop, self.server_state)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._phase == "body":
            GuardedProtocol._dropped_bytes += self._body_bytes
        elif self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            # an answer cut short (its client left or was cut off): what it made is freed now
            GuardedProtocol._dropped_bytes += getattr(self.transport, "accepted", 0)
        super().connection_lost(exc)

    def _evict_one(self) -> bool:
        waiting = [c for c in self.connections if isinstance(c, GuardedProtocol) and c is not self and c._waiting()]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._since)
        oldest.transport.abort()
        return True

    def _busy(self) -> bool:
        """A response is due or in progress (a pipelined request counts too)."""
        return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

    def _waiting(self) -> bool:
        """Open without a request in progress: still sending headers, or idle between requests."""
        return (
            self._phase in ("headers", "idle")
            and not self._busy()
            and not self.transport.is_closing()
            and not self.transport.get_write_buffer_size()  # an answer still on its way out (held or unsent)
        )

    def shutdown(self) -> None:
        if self._phase == "headers" and not self._busy():  # no request has arrived: none to serve
            self.transport.close()
            return
        if self._phase == "body" and not (self.cycle is not None and self.cycle.response_started):
            self.transport.close()  # its request has not fully arrived: it cannot be served
            return
        super().shutdown()

    # ---- parsing ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":
            self._enter("headers")
        counting = self._phase == "headers"
        if counting:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._header_lines > self.limits.max_headers:
                self._refuse(431, f"more than {self.limits.max_headers} header lines (GENSERVE_MAX_HEADERS)")
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self._phase == "headers" and counting and self._header_bytes > self.limits.max_header_bytes:
            if not self.transport.is_closing():
                self._refuse(
                    431, f"request headers over {self.limits.max_header_bytes} bytes (GENSERVE_MAX_HEADER_BYTES)"
                )
        elif self._phase == "body":
            self._last_body = time.monotonic()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_lines = 0
        if self._phase != "headers":
            self._enter("headers")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        if self._header_lines > self.limits.max_headers:
            raise TooManyHeaders  # stops the parser: data_received answers 431
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter("body")
        self._header_bytes = 0
        self._body_bytes = 0
        self._body_active_s = 0.0
        self._last_body = time.monotonic()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._phase == "body":
            GuardedProtocol._dropped_bytes += self._body_bytes  # the app frees it once answered
            self._enter("app")
        if self.cycle is not None and self.cycle.response_complete and not self._busy():
            # answered before its body had arrived (a 404, 413, 415): idle now, on the keep-alive clock,
            # which the body's bytes stopped
            self._enter("idle")
            if self.timeout_keep_alive_task is None and not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == "app" and not self._busy():
            self._enter("idle")

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._since = time.monotonic()

    # ---- deadlines --------------------------------------------------------------------------

    def _check(self, now: float) -> None:
        limits = self.limits
        unsent = self.transport.get_write_buffer_size()
        # progress is bytes taken by the client since the last sweep (a buffer that flow control keeps
        # refilling can read the same size twice while a slow reader reads steadily)
        sent = getattr(self.transport, "accepted", 0) - unsent
        if unsent == 0 or sent > self._sent:
            self._unsent_since = now
        self._sent = sent
        if unsent and now - self._unsent_since > limits.send_timeout_s:  # a client that stopped reading
            self._cut_off(unsent)
            return
        if self._busy() and self._phase != "body":
            return  # a request is being answered: the request timeout bounds it, not these
        if self._phase == "headers" and now - self._since > limits.header_timeout_s:
            self._refuse(408, f"request headers not received within {limits.header_timeout_s:g} s")
        elif self._phase == "body":
            if self.flow.read_paused:  # the server holds the upload back, not the client
                self._last_body = now
                return
            self._body_active_s += SWEEP_S
            if now - self._last_body > limits.body_timeout_s:
                self._refuse(408, f"request body paused for over {limits.body_timeout_s:g} s")
            elif (
                limits.body_min_rate
                and self._body_active_s > limits.body_timeout_s
                and self._body_bytes < limits.body_min_rate * self._body_active_s
            ):
                self._refuse(408, f"request body arriving slower than {limits.body_min_rate} bytes/s")

    def _cut_off(self, unsent: int) -> None:
        """Abort a connection whose client took none of its answer for send_timeout_s: the app sees a
        disconnect (a stream stops), and the unsent bytes are dropped."""
        scope = self.cycle.scope if self.cycle is not None else None
        request = f"{scope['method']} {scope['path']}" if scope else "a request"
        logger.warning(
            "closing %s: it took none of its answer to %s for %g s (GENSERVE_SEND_TIMEOUT_S); %d bytes unsent, dropped",
            _address(self.client),
            request,
            self.limits.send_timeout_s,
            unsent,
        )
        metrics.SEND_TIMEOUTS.inc()
        self.transport.abort()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` (if no response has started) and close the connection."""
        answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        if self._phase != "app" and not answering:
            code = "timeout" if status == 408 else "headers_too_large"
            payload = json.dumps(error_body(code, reason)).encode()  # the app's own error shape
            head = b"HTTP/1.1 " + _STATUS[status] + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            self.transport.write(head + b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        logger.debug("closing %s: %s", self.client, reason)
        self.transport.close()


class CoalescingTransport:
    """A transport whose writes in one turn of the event loop go out together at its end.

    uvicorn writes a response's head and its body separately, two system calls and, on a
    machine with few cores, two wake-ups of the client. Here the first write of a turn is held
    and a flush scheduled (`call_soon`): the body, written in the same turn, joins it. Order is
    kept; at most HOLD_BYTES are held (more goes out at once, so flow control sees it: as much as
    the transport's high-water mark, so that a paused stream holds no more here than there); `close`
    sends what is held first, `abort` drops it as the transport would; the write buffer's size
    counts it. Everything else is the transport's own."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport", "accepted")
    HOLD_BYTES = 64 * 1024

    def __init__(self, transport, loop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self.accepted = 0  # bytes given to write so far: less the write buffer's size, those sent

    def write(self, data: bytes) -> None:
        if not data:  # uvicorn's write of an empty chunk of a streamed body
            return
        self.accepted += len(data)
        if self._held is None:
            self._held, self._held_bytes = [data], len(data)
            self._loop.call_soon(self._flush)
        else:
            self._held.append(data)
            self._held_bytes += len(data)
        if self._held_bytes > self.HOLD_BYTES:
            self._flush()

    def _flush(self) -> None:
        held, self._held, self._held_bytes = self._held, None, 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held, self._held_bytes = None, 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def _limit_unsent(transport) -> None:
    """Hold at most UNSENT_KERNEL_BYTES of a connection's answer in the kernel's send queue, beyond
    what is on its way to the client: without it Linux lets the queue of a client that stopped
    reading grow to tcp_wmem's maximum (4 MiB), made at full speed first. What is in flight (a fast
    client's window) is not limited, so throughput is not either."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)  # Linux and macOS
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_KERNEL_BYTES)


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def _sweep(loop, server_state) -> None:
    try:
        now = time.monotonic()
        due = [c for c in list(server_state.connections) if isinstance(c, GuardedProtocol)]
        _check_some(loop, [c for c in due if not c.transport.is_closing()], now)
        dropped = GuardedProtocol._dropped_bytes
        if dropped >= TRIM_AFTER_BYTES or (dropped and not server_state.connections):  # the last sweep trims
            GuardedProtocol._dropped_bytes = 0
            loop.run_in_executor(None, trim_memory)  # ctypes lets go of the GIL: off the loop, it costs nothing here
    except Exception:  # a bug here must not end the sweep, and with it every deadline
        logger.exception("connection sweep")
    finally:
        if server_state.connections:
            loop.call_later(SWEEP_S, _sweep, loop, server_state)
        else:
            server_state.genserve_sweeping = False


def _check_some(loop, connections: list, now: float) -> None:
    """Check a slice of the connections, the rest in the loop's next turn: a thousand expiring at
    once (a slowloris flood) must not hold up the requests arriving meanwhile."""
    for connection in connections[:SWEEP_SLICE]:
        if not connection.transport.is_closing():
            try:
                connection._check(now)
            except Exception:
                logger.exception("checking %s", connection.client)
    if len(connections) > SWEEP_SLICE:
        loop.call_soon(_check_some, loop, connections[SWEEP_SLICE:], now)


def trim_memory() -> None:
    """Give freed heap memory back to the operating system: glibc's heap (elsewhere a no-op), and
    pyarrow's pool where a stream has loaded it (its CSV, Arrow and Parquet writers allocate there)."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def configure(limits: Limits) -> None:
    GuardedProtocol.limits = limits


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards `wanted` (up to the hard limit); return the
    connections that fit: the limit less room for the models, threads and logs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - 128)
