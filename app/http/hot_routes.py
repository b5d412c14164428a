"""The hot POSTs' fast path: `HotRoute`, a route that answers its requests in one frame with the
rules of the layers it skips, and `HotRoutes`, the outermost middleware layer that hands them to it."""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.middleware import BodyOverLimit, RequestCounters, declared_length, read_body, send_too_large


class HotRoute(APIRoute):
    """A POST route answered in one frame, in front of FastAPI and every middleware layer
    (`HotRoutes` hands its requests here): with a small model those layers' awaits, wrappers
    and per-request objects cost as much as the inference.

    It does what the layers would, in their order, and nothing else wires these rules for it:
    the request metrics (as `RequestMetrics`: endpoint, model, status, 499 when no answer was
    started; timed), the body limit (as `BodyLimit`: 413 at once for a declared length over
    GENSERVE_MAX_BODY_BYTES, or once a chunked body passes it; counted as "unmatched"), its
    guards (its dependencies, such as the API key), the endpoint, and the app's exception
    handlers for what either raises. The body is read before the guards; the endpoint finds it
    read. The route stays an ordinary FastAPI route besides (OpenAPI, 405 for other methods).

    So that this is all FastAPI would do, the route is checked when it is built: POST only,
    `async def endpoint(request: Request) -> Response`, and guards of the form
    `async def guard(request: Request)`; anything with more to solve is a TypeError at import,
    not a 500 at run time."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.methods != {"POST"}:
            raise TypeError(f"{self.name}: a hot route answers POST only, not {sorted(self.methods or ())}")
        _require_request_only(endpoint, self.dependant.request_param_name, f"{self.name}: the endpoint")
        returns = typing.get_type_hints(endpoint).get("return")
        if not (isinstance(returns, type) and issubclass(returns, Response)):
            raise TypeError(f"{self.name}: the endpoint must be annotated `-> Response`, not {returns}")
        for sub in self.dependant.dependencies:
            _require_request_only(sub.call, sub.request_param_name, f"{self.name}: the guard {sub.call.__name__}")
        self.guards: tuple[Callable[[Request], Awaitable[None]], ...] = tuple(
            sub.call for sub in self.dependant.dependencies
        )
        self.counters = RequestCounters()

    async def serve(self, scope: Scope, receive: Receive, send: Send, max_bytes: int, guarded: bool = True) -> None:
        """Answer one POST to this route (scope["app"] is the app, for its exception handlers), its body
        limited to `max_bytes` (GENSERVE_MAX_BODY_BYTES); its guards run when `guarded` (an app whose
        guards would let every request through, with no GENSERVE_API_KEY, spares their calls)."""
        started = time.perf_counter()
        status = 499  # nginx's "client closed request": no response was started
        app: FastAPI = scope["app"]
        try:
            declared = declared_length(scope)
            if declared is not None and declared > max_bytes:
                status = 413
                await send_too_large(send, max_bytes)
                return
            try:
                body = await read_body(receive, max_bytes)
            except BodyOverLimit:
                status = 413
                await send_too_large(send, max_bytes)
                return
            if body is None:
                return  # the client left: nothing to answer
            scope["route"] = self  # matched once the body is within the limit: a 413 is "unmatched", as elsewhere
            request = Request(scope, receive, send)
            request._body = body  # read: the endpoint's request.body() answers it
            try:
                if guarded:
                    for guard in self.guards:
                        await guard(request)
                response = await self.endpoint(request)
            except Exception as exc:
                response = await _render_exception(app, request, exc)
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
            endpoint = self.path if "route" in scope else "unmatched"
            self.counters.record(endpoint, model, status, time.perf_counter() - started)


class HotRoutes:
    """The outermost middleware layer: a POST to a `HotRoute`'s path goes straight to that
    route, past every other layer and FastAPI's router; any other request goes on down the
    stack. While CORS is on, a cross-origin POST (an `Origin` header) passes CORSMiddleware
    first, with the options the stack's own CORS layer has."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        max_body_bytes: int,
        guarded: bool = True,
        cors: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes if isinstance(route, HotRoute)}
        self.max_body_bytes, self.guarded = max_body_bytes, guarded
        self.cross_origin = CORSMiddleware(self._serve, **cors) if cors else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(scope["path"])
            if route is not None:
                if self.cross_origin is not None and _has_origin(scope):
                    await self.cross_origin(scope, receive, send)
                else:
                    await route.serve(scope, receive, send, self.max_body_bytes, self.guarded)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.routes[scope["path"]].serve(scope, receive, send, self.max_body_bytes, self.guarded)


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def _require_request_only(call: Callable[..., Any], request_param: str | None, what: str) -> None:
    """`call` must be a coroutine function whose one parameter FastAPI reads as the Request."""
    parameters = list(inspect.signature(call).parameters)
    if not inspect.iscoroutinefunction(call) or request_param is None or parameters != [request_param]:
        raise TypeError(f"{what} must be `async def {call.__name__}(request: Request)`, not {parameters}")


async def _render_exception(app: FastAPI, request: Request, exc: Exception) -> Response:
    """An exception raised on the fast path, answered by the app's own exception handlers."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc
