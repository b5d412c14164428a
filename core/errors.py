"""genserve's errors, one hierarchy carrying an HTTP status and a code: raised by the shared core and the
service alike, rendered as `{"error": {"code", "message", "details"}}` by app/http/errors.py."""

from __future__ import annotations

from typing import Any


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


class Unreachable(GenserveError):
    """Too few of the model's rows hold what was asked (its rules, a request's conditions) for the rows asked:
    `details` says how many were drawn and how many held."""

    status, code = 422, "unreachable"


class InferenceFailed(GenserveError):
    status, code = 500, "inference_failed"


class ModelFault(GenserveError):
    """The model computed something it should not (non-finite values from sane inputs)."""

    status, code = 500, "model_fault"


class StartupError(RuntimeError):
    """The service cannot start as configured (e.g. GENSERVE_DEVICE=cuda without a GPU)."""
