"""Request bodies validated off the event loop when they are large.

pydantic-core's JSON validation holds the GIL throughout: an 8 MB body of numbers takes
100-300 ms, and a thread would block the event loop as long. So a body above
`INLINE_BYTES` is validated in a helper process (one per server process, started on first
use), which sends back the validated request, or its first errors, or only the row count
when there are more rows than any request may have: an oversized or malformed body costs the
event loop nothing but its bytes. A small body is validated in place, where a hand-off would
cost more than the work.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import NotReady

INLINE_BYTES = 256 * 1024
_MAX_ERRORS = 20
_pool: ProcessPoolExecutor | None = None

ModelT = TypeVar("ModelT", bound=BaseModel)


class BodyInvalid(Exception):
    """The body does not validate: pydantic's errors (the first few, made portable)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid")
        self.errors = errors


class HelperGone(NotReady):
    """503: the helper process died with the request in it."""


class TooManyRows(Exception):
    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


async def validate_json(model: type[ModelT], raw: bytes, max_rows: int | None = None) -> ModelT:
    """`model.model_validate_json(raw)`; BodyInvalid or TooManyRows (a request's `inputs` over
    `max_rows`) instead of pydantic's ValidationError."""
    if len(raw) <= INLINE_BYTES:
        return _checked(_validate(model, raw), max_rows)
    target = f"{model.__module__}:{model.__qualname__}"
    pool = _executor()
    try:
        outcome, value = await asyncio.get_running_loop().run_in_executor(pool, _in_helper, target, raw, max_rows)
    except BrokenProcessPool:  # the helper died (killed, out of memory): a new one next time
        _reset(pool)
        raise HelperGone("the body parser process stopped; send the request again") from None
    if outcome == "invalid":
        raise BodyInvalid(value)
    if outcome == "rows":
        raise TooManyRows(value)
    return value


def _validate(model: type[ModelT], raw: bytes) -> ModelT:
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise BodyInvalid(portable_errors(e)) from None


def _checked(request: ModelT, max_rows: int | None) -> ModelT:
    rows = request.__dict__.get("inputs")  # a model without the field: no AttributeError raised and caught
    if max_rows is not None and isinstance(rows, list) and len(rows) > max_rows:
        raise TooManyRows(len(rows))
    return request


def _in_helper(target: str, raw: bytes, max_rows: int | None) -> tuple[str, Any]:
    """(In the helper process.) The outcome, small unless the request is valid."""
    module, _, name = target.partition(":")
    model = getattr(importlib.import_module(module), name)
    try:
        return "ok", _checked(_validate(model, raw), max_rows)
    except BodyInvalid as e:
        return "invalid", e.errors
    except TooManyRows as e:
        return "rows", e.rows


def portable_errors(error: ValidationError) -> list[dict[str, Any]]:
    """The first errors as plain data: a large input is left out, context values become text."""
    errors = []
    for e in error.errors(include_url=False)[:_MAX_ERRORS]:
        e = dict(e)
        if "ctx" in e:
            e["ctx"] = {k: v if isinstance(v, str | int | float) else str(v) for k, v in e["ctx"].items()}
        value = e.get("input")
        small = value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) < 200)
        if not small:
            e.pop("input", None)
        errors.append(e)
    return errors


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn: the server has threads (inference, onnxruntime's), which a fork would copy half-way
        _pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
        )
    return _pool


def _die_with_parent() -> None:
    """(In the helper.) Stop when the server process dies, even by SIGKILL: no orphans."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _reset(pool: ProcessPoolExecutor | None = None) -> None:
    """Drop the helper (`pool`: only if it is still the current one, not a fresh one)."""
    global _pool
    if _pool is not None and (pool is None or pool is _pool):
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def shutdown() -> None:
    """Stop the helper process (at the end of the server's lifespan)."""
    _reset()
