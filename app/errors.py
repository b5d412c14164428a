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

logger = logging.getLogger("genserve")


class GenserveError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class InvalidInput(GenserveError):
    status, code = 422, "invalid_input"


class Forbidden(GenserveError):
    status, code = 403, "forbidden"


class ModelNotFound(GenserveError):
    status, code = 404, "model_not_found"


class Unauthorized(GenserveError):
    status, code = 401, "unauthorized"


class BodyTooLarge(GenserveError):
    status, code = 413, "body_too_large"


class UnsupportedMediaType(GenserveError):
    status, code = 415, "unsupported_media_type"


class NotAcceptable(GenserveError):
    status, code = 406, "not_acceptable"


class Overloaded(GenserveError):
    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(GenserveError):
    status, code = 503, "not_ready"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class RepositoryUnavailable(GenserveError):
    status, code = 503, "repository_unavailable"


class RequestTimeout(GenserveError):
    status, code = 504, "timeout"


class InferenceFailed(GenserveError):
    status, code = 500, "inference_failed"


class ModelFault(GenserveError):
    """The model computed something it should not (non-finite values from sane inputs)."""

    status, code = 500, "model_fault"


class StartupError(RuntimeError):
    """The service cannot start as configured (e.g. GENSERVE_DEVICE=cuda without a GPU)."""


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
