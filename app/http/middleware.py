"""ASGI middleware: the request body limit (413 before any parsing), request metrics, the
direct path to the hot endpoints, and `HotRoutes`, which answers those endpoints' plain
requests in front of the whole stack, doing all of the above in one frame."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
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
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._too_large(send)
                return
            # the server reads exactly the declared length: nothing more can arrive
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyOverLimit:
            await self._too_large(send)
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

    async def _too_large(self, send: Send) -> None:
        await send_too_large(send, self.max_bytes)


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


class _RequestCounters:
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
        self.counters = _RequestCounters()

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


class DirectRoutes:
    """Runs the hot POST endpoints (the inference routes) straight from here, past the router's
    search over every route and FastAPI's per-request machinery (dependency solving, exit
    stacks, exception middleware), which together cost more than these requests' own work.

    What those layers would do for these routes is done here too: the guards (the API key) run
    first, and an exception is rendered by the app's own exception handlers, so answers and
    errors are the same. The routes stay declared on the app as usual (OpenAPI, and every other
    method or path goes through FastAPI); the metrics see the matched route in scope["route"].
    Only endpoints of the form `async def endpoint(request) -> Response` qualify."""

    def __init__(
        self,
        app: ASGIApp,
        owner: FastAPI,
        routes: Sequence[APIRoute],
        guards: Sequence[Callable[[Request], Awaitable[None]]] = (),
    ) -> None:
        self.app = app
        self.owner = owner
        self.routes = {route.path: route for route in routes if route.methods == {"POST"}}
        self.guards = tuple(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        response = await answer(self.owner, self.guards, route, Request(scope, receive, send))
        await response(scope, receive, send)


class HotRoutes:
    """The inference POSTs (`DirectRoutes`' routes) answered in one frame, in front of FastAPI
    and every middleware layer (`GenserveAPI.__call__` hands them here): with a small model
    those layers' awaits, wrappers and per-request objects cost as much as the inference.

    It does what the layers would, in their order: the request metrics (`RequestMetrics`:
    endpoint, model, status, 499 when no answer was started; timed), the body limit
    (`BodyLimit`: 413 at once for a declared length over the limit, or once a chunked body
    passes it), the guards (the API key), the endpoint, and the app's exception handlers for
    its errors. The body is read here, before the guards, as BodyLimit's count of a chunked
    body did; the endpoint finds it already read. A request with an `Origin` header goes the
    usual way when CORS is on (CORSMiddleware answers it), and so does every other request."""

    def __init__(
        self,
        owner: FastAPI,
        routes: Sequence[APIRoute],
        max_body_bytes: int,
        guards: Sequence[Callable[[Request], Awaitable[None]]] = (),
        cors: bool = False,
    ) -> None:
        self.owner = owner
        self.routes = {route.path: route for route in routes if route.methods == {"POST"}}
        self.max_body_bytes = max_body_bytes
        self.guards = tuple(guards)
        self.cors = cors
        self.counters = _RequestCounters()

    def route_for(self, scope: Scope) -> APIRoute | None:
        """The hot route this request goes to, or None: it takes the usual way."""
        route = self.routes.get(scope["path"])
        if route is None or not self.cors:
            return route
        for name, _ in scope["headers"]:
            if name == b"origin":  # a cross-origin call: CORSMiddleware adds its headers
                return None
        return route

    async def __call__(self, route: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 499  # nginx's "client closed request": no response was started
        try:
            declared = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    declared = value
                    break
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                status = 413
                await send_too_large(send, self.max_body_bytes)
                return
            try:
                body = await read_body(receive, self.max_body_bytes)
            except BodyOverLimit:
                status = 413
                await send_too_large(send, self.max_body_bytes)
                return
            if body is None:
                return  # the client left: nothing to answer
            scope["route"] = (
                route  # matched once the body is within the limit: a 413 is "unmatched", as on the usual path
            )
            request = Request(scope, receive, send)
            request._body = body  # read: the endpoint's request.body() answers it
            response = await answer(self.owner, self.guards, route, request)
            if response.background is None and type(response).__call__ is Response.__call__:
                status = response.status_code
                await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
            else:  # a response of its own kind (streamed, with a background task): it sends itself

                async def record_status(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await response(scope, receive, record_status)
        finally:
            model = scope["state"].get("model", "") if "state" in scope else ""
            endpoint = route.path if "route" in scope else "unmatched"
            self.counters.record(endpoint, model, status, time.perf_counter() - started)


async def answer(
    owner: FastAPI, guards: Sequence[Callable[[Request], Awaitable[None]]], route: APIRoute, request: Request
) -> Response:
    """A direct path's answer: the guards, then the endpoint; an exception either raises is
    answered by the app's own exception handlers, as FastAPI's stack would."""
    try:
        for guard in guards:
            await guard(request)
        return await route.endpoint(request)
    except Exception as exc:
        return await render_exception(owner, request, exc)


async def render_exception(owner: FastAPI, request: Request, exc: Exception) -> Response:
    """An exception raised on a direct path, answered by the app's own exception handlers."""
    handlers = owner.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc
