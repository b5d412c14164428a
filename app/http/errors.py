"""One exception hierarchy carrying status and code, and the handlers that render every
error as `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core.errors import GenserveError

logger = logging.getLogger("genserve")


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


class ErrorResponse(JSONResponse):
    """ASCII-escaped JSON: an error may echo a client's string, and a lone surrogate in it
    cannot be encoded as UTF-8 (it would turn a 422 into a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GenserveError)
    async def _genserve(_: Request, exc: GenserveError) -> JSONResponse:
        return ErrorResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_describe(e) for e in exc.errors()[:20]]
        first = details[0] if details else {"loc": "body", "msg": "invalid request"}
        message = f"{first['loc']}: {first['msg']}" + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")
        return ErrorResponse(error_body("invalid_request", message, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ErrorResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> Response:
        # the client left before its body arrived: nothing can be answered, nothing went wrong here
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return ErrorResponse(error_body("internal_error", "internal server error; see the server log"), 500)


def _describe(error: dict) -> dict:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    described = {"loc": loc, "msg": error.get("msg", "invalid")}
    if error.get("type") == "json_invalid":  # loc is the character position, when known
        reason = (error.get("ctx") or {}).get("error", "")
        where = f" at character {loc}" if loc != "body" else ""
        described = {"loc": "body", "msg": f"invalid JSON{where}" + (f": {reason}" if reason else "")}
    value = error.get("input")
    # echo scalar inputs back, except NaN/inf, which JSON cannot carry
    if isinstance(value, str | int | bool) or (isinstance(value, float) and math.isfinite(value)):
        described["input"] = value
    return described
