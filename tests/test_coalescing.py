"""app/http/protocol.py's CoalescingTransport: a response's writes in one turn of the event loop leave
in one write to the socket, in order; close sends them, abort drops them."""

from __future__ import annotations

import asyncio
import socket

from app.http.protocol import CoalescingTransport


class RecordingTransport:
    """An asyncio transport's write side, recording each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 8000) if name == "sockname" else default


def test_writes_in_one_turn_leave_together_in_order() -> None:
    async def run() -> RecordingTransport:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"{}")
        assert inner.writes == [] and transport.get_write_buffer_size() == 21
        await asyncio.sleep(0)  # the turn ends: one write
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert transport.get_extra_info("sockname") == ("127.0.0.1", 8000)  # the rest is the transport's own
        return inner

    assert asyncio.run(run()).writes[-1] == b"next"


def test_close_sends_what_is_held_abort_drops_it_and_large_writes_are_not_held() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"bye")
        transport.close()
        assert inner.writes == [b"bye"] and inner.closed
        await asyncio.sleep(0)
        assert inner.writes == [b"bye"]  # the scheduled flush finds nothing more

        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"lost")
        transport.abort()
        await asyncio.sleep(0)
        assert inner.writes == [] and inner.aborted

        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        big = b"x" * (CoalescingTransport.HOLD_BYTES + 1)
        transport.write(b"head")
        transport.write(big)
        assert inner.writes == [b"head" + big]  # at once: flow control must see it
        assert transport.get_write_buffer_size() == 0

    asyncio.run(run())


def test_a_live_response_arrives_whole(live_server) -> None:
    """Head and body of a /generate answer come in one segment on the loopback interface."""
    server = live_server()
    body = b'{"model": "digits-cvae", "n": 1, "label": "7", "seed": 1}'
    request = (
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        for _ in range(3):
            s.sendall(request)
            data = s.recv(1 << 20)
            head, _, rest = data.partition(b"\r\n\r\n")
            headers = dict(h.split(b": ", 1) for h in head.split(b"\r\n")[1:])
            length = int(headers[b"content-length"])
            assert head.startswith(b"HTTP/1.1 200") and len(rest) == length  # nothing left to read
