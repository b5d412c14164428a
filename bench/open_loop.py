"""Open-loop HTTP load on asyncio streams: requests leave on a fixed schedule, whatever the
server answers.

wrk is closed-loop: a connection sends its next request only once the last one is answered,
so a server that slows down slows the load down with it. Overload needs the opposite. Here
request k is written at start + k / rate, on an idle keep-alive connection or a new one when
all are busy, and its answer is read by a task of its own: a slow answer never holds back the
next send. Each send's lag behind its schedule is recorded, so a run shows whether the
client kept the offered rate (if it did not, the client was the bottleneck, not the server).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import numpy as np

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def post(path: str, body: bytes) -> bytes:
    """A keep-alive HTTP/1.1 POST of a JSON body, as bytes on the wire."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of one response; its body is read and dropped."""
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers


@dataclass
class Exchange:
    sent_s: float  # when the request was written, seconds since the run started
    lag_s: float  # how late that was against the schedule
    latency_s: float  # written to answered (or to failure)
    status: int | None  # None: no answer, see `error`
    retry_after: bool = False
    error: str | None = None


class OpenLoop:
    """Requests at `rate` per second to 127.0.0.1:`port`; each answer is recorded as an `Exchange`."""

    def __init__(self, port: int, request: bytes, rate: float, timeout_s: float = 30.0) -> None:
        self.port = port
        self.request = request
        self.rate = rate
        self.timeout_s = timeout_s
        self.seconds = 0.0  # how long it sent, once `send` has run
        self.exchanges: list[Exchange] = []
        self.connections_opened = 0
        # first in, first out: every connection stays busy, none idles into the server's
        # keep-alive timeout (uvicorn's 5 s), after which reusing it would race the server closing it
        self._idle: deque[Connection] = deque()
        self._pending: set[asyncio.Task] = set()
        self._start = 0.0

    async def send(self, seconds: float) -> None:
        """Send on schedule for `seconds`; returns when the last request is sent, not answered."""
        loop = asyncio.get_running_loop()
        self._start = loop.time()
        self.seconds = seconds
        for k in range(int(seconds * self.rate)):
            scheduled = self._start + k / self.rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(self._exchange(scheduled))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for every answer, then close the connections."""
        await asyncio.gather(*self._pending)
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def _exchange(self, scheduled: float) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        writer = None
        try:
            while self._idle and self._idle[0][0].at_eof():  # closed by the server all the same
                self._idle.popleft()[1].close()
            if self._idle:
                reader, writer = self._idle.popleft()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.connections_opened += 1
            sent = loop.time()
            writer.write(self.request)
            status, headers = await asyncio.wait_for(read_answer(reader), self.timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            if writer is not None:
                writer.close()
            self._record(sent, scheduled, None, error=f"{type(e).__name__}: {e}")
            return
        self._record(sent, scheduled, status, retry_after="retry-after" in headers)
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))

    def _record(self, sent: float, scheduled: float, status: int | None, **extra: object) -> None:
        now = asyncio.get_running_loop().time()
        self.exchanges.append(Exchange(sent - self._start, sent - scheduled, now - sent, status, **extra))

    # ---- what the run shows -----------------------------------------------------------------

    def with_status(self, status: int | None) -> list[Exchange]:
        return [e for e in self.exchanges if e.status == status]

    def achieved_rate(self) -> float:
        """Requests per second actually written, first send to last."""
        times = [e.sent_s for e in self.exchanges]
        return (len(times) - 1) / (max(times) - min(times))

    def lag_p99_s(self) -> float:
        return float(np.percentile([e.lag_s for e in self.exchanges], 99))


class Probe:
    """Requests one after another on one keep-alive connection, each timed."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request

    async def __aenter__(self) -> Probe:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()

    async def ask(self) -> tuple[int, float]:
        """(status, seconds from writing the request to its whole answer)"""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        self._writer.write(self.request)
        status, _ = await read_answer(self._reader)
        return status, loop.time() - sent
