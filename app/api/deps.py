"""Dependencies that hand routes the app's state and guard them."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from app.models.registry import Registry
from app.models.served_model import ServedModel
from core.errors import InvalidInput, Unauthorized


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def require_api_key(request: Request) -> None:
    """With GENSERVE_API_KEY set, the request must carry it as `X-API-Key` or `Authorization: Bearer`.
    (async: FastAPI would run a plain function in a thread pool, a thread hop on every request)"""
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        return
    given = request.headers.get("x-api-key") or None
    if given is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" and token else None
    # headers arrive decoded as latin-1; the key is ASCII (checked in Settings): compare bytes
    if given is None or not secrets.compare_digest(given.encode("latin-1"), expected.encode("ascii")):
        raise Unauthorized(
            "missing or wrong API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def resolve_model(request: Request, ref: str | None) -> ServedModel:
    """The served model a request names (or the default one); records it for the metrics."""
    ref = ref or request.app.state.settings.default_model
    if not ref:
        raise InvalidInput("no 'model' given and no GENSERVE_DEFAULT_MODEL set; name a model, e.g. \"digits-cvae\"")
    served = request.app.state.registry.get(ref)
    request.state.model = served.manifest.name
    return served
