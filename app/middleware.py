"""ASGI middleware: the request body limit (413 before any parsing), request metrics, and
the direct path to the hot endpoints."""

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
from app.errors import BodyTooLarge, error_body


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
        parts, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            size += len(part)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            parts.append(part)
            more = message.get("more_body", False)
        body, replayed = b"".join(parts), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        error = BodyTooLarge(f"request body is larger than {self.max_bytes} bytes (GENSERVE_MAX_BODY_BYTES)")
        payload = json.dumps(error_body(error.code, error.message), ensure_ascii=True).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class RequestMetrics:
    """Counts every request by endpoint (the route's path template), model and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], tuple] = {}  # label lookups cost more than the increments

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
            key = (endpoint, model, str(status))
            children = self._children.get(key)
            if children is None:
                children = (metrics.REQUESTS.labels(*key), metrics.REQUEST_LATENCY.labels(endpoint))
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


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
        request = Request(scope, receive, send)
        try:
            for guard in self.guards:
                await guard(request)
            response = await route.endpoint(request)
        except Exception as exc:
            response = await self._render(request, exc)
        await response(scope, receive, send)

    async def _render(self, request: Request, exc: Exception) -> Response:
        handlers = self.owner.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc
