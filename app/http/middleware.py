"""ASGI middleware: the request body limit (413 before any parsing) and request metrics, and
the pieces of both that `HotRoute` (app/http/hot_routes.py) applies on its own."""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.http.errors import error_body
from core.errors import BodyTooLarge


class BodyLimit:
    """Refuses a body over `max_bytes` with 413 before the app parses it: at once when the
    declared Content-Length is too large; a body without one (chunked) is read and counted first."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await send_too_large(send, self.max_bytes)
                return
            # the server reads exactly the declared length: nothing more can arrive
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyOverLimit:
            await send_too_large(send, self.max_bytes)
            return
        if body is None:
            return  # the client left
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def declared_length(scope: Scope) -> int | None:
    """The body's length as its Content-Length header declares it; None without a valid one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyOverLimit(Exception):
    """More than the limit arrived (`read_body`); the rest is left unread."""


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """A request's body, read and counted as it arrives: BodyOverLimit as soon as it passes
    `max_bytes`, None when the client leaves first."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        part = message.get("body", b"")
        size += len(part)
        if size > max_bytes:
            raise BodyOverLimit
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def send_too_large(send: Send, max_bytes: int) -> None:
    """The 413 answer (and the connection is closed: the rest of the body is not read)."""
    error = BodyTooLarge(f"request body is larger than {max_bytes} bytes (GENSERVE_MAX_BODY_BYTES)")
    payload = json.dumps(error_body(error.code, error.message), ensure_ascii=True).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RequestCounters:
    """The request counter and latency histogram children per (endpoint, model, status): label
    lookups cost more than the increments."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str], tuple] = {}

    def record(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        key = (endpoint, model, str(status))
        children = self._children.get(key)
        if children is None:
            children = (metrics.REQUESTS.labels(*key), metrics.REQUEST_LATENCY.labels(endpoint))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class RequestMetrics:
    """Counts every request by endpoint (the route's path template), model and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counters = RequestCounters()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 499  # nginx's "client closed request": no response was started

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")  # a template, so unknown paths cannot blow up cardinality
            model = scope.get("state", {}).get("model", "")
            self.counters.record(endpoint, model, status, time.perf_counter() - started)
