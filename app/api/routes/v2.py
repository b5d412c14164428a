"""The Open Inference Protocol (KServe V2) REST endpoints, on the same registry and batchers.

Server metadata and health stay open like /healthz; the model endpoints need the API key
like the rest. Every error on these routes is the protocol's `{"error": "<message>"}`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from app.api import v2
from app.api.deps import RegistryDep
from app.api.schemas import ErrorResponse as ErrorModel
from app.api.schemas import inline_schema
from app.http.errors import ErrorResponse
from core.errors import GenserveError, InvalidInput, NotReady

logger = logging.getLogger("genserve")


class V2Route(APIRoute):
    """Renders errors as the protocol's `{"error": "<message>"}`. A client's mistake
    (InvalidInput, a 422 on genserve's own endpoints) is a 400 here, as the protocol has it."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except GenserveError as exc:
                status = 400 if isinstance(exc, InvalidInput) else exc.status
                return ErrorResponse({"error": exc.message}, status, headers=exc.headers)
            except Exception:
                logger.exception("unhandled error")
                return ErrorResponse({"error": "internal server error; see the server log"}, 500)

        return v2_handler


_EMPTY = {"description": "An empty body", "content": {}}
server_router = APIRouter(
    prefix="/v2", tags=["v2"], route_class=V2Route, responses={500: {"model": v2.V2Error}, 503: {"model": v2.V2Error}}
)
model_router = APIRouter(  # API key: see create_app
    prefix="/v2/models",
    tags=["v2"],
    route_class=V2Route,
    responses={code: {"model": v2.V2Error} for code in (400, 401, 404, 500, 503, 504)},
)
_INFER_DOCS = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(v2.InferenceRequest), "example": v2.INFER_EXAMPLE}},
        "description": "An inference request. With the binary tensor extension the body is this JSON, "
        "`Inference-Header-Content-Length` bytes long, followed by the inputs' binary data.",
    },
}
_INFER_ERRORS = {413: {"model": ErrorModel, "description": "Body too large (genserve's error shape)"}}


def _model(request: Request, name: str, version: str | None) -> v2.V2Model:
    found = v2.find_model(request.app.state.registry, name, version)
    request.state.model = found.served.manifest.name  # for the request metrics
    return found


async def _infer(request: Request, name: str, version: str | None) -> Response:
    body = await request.body()  # first: from resolving the model to holding it, nothing may wait (reloads)
    content, headers = await _model(request, name, version).infer(body, request.headers)
    return Response(content, headers=headers)


# ---- server ---------------------------------------------------------------------------------


@server_router.get("", response_model=v2.ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> v2.ServerMetadata:
    return v2.ServerMetadata(name=request.app.title, version=request.app.version, extensions=list(v2.EXTENSIONS))


@server_router.head("/health/live", include_in_schema=False)
@server_router.get(
    "/health/live", summary="Live: 200 with an empty body", response_class=Response, responses={200: _EMPTY}
)
async def server_live() -> Response:
    return Response()


@server_router.head("/health/ready", include_in_schema=False)
@server_router.get(
    "/health/ready",
    summary="Ready: 200 once a model is served and every batcher runs; else 503",
    response_class=Response,
    responses={200: _EMPTY},
)
async def server_ready(registry: RegistryDep) -> Response:
    reason = registry.not_ready_reason()
    if reason is not None:
        raise NotReady(reason)
    return Response()


# ---- models ---------------------------------------------------------------------------------


@model_router.get("/{name}", response_model=v2.ModelMetadata, summary="Model metadata (default version)")
async def model_metadata(name: str, request: Request) -> v2.ModelMetadata:
    return _model(request, name, None).metadata()


@model_router.get("/{name}/versions/{version}", response_model=v2.ModelMetadata, summary="Model metadata")
async def model_version_metadata(name: str, version: str, request: Request) -> v2.ModelMetadata:
    return _model(request, name, version).metadata()


@model_router.get(
    "/{name}/ready",
    summary="Model ready: 200 with an empty body, or 404 / 503",
    response_class=Response,
    responses={200: _EMPTY},
)
async def model_ready(name: str, request: Request) -> Response:
    _model(request, name, None).check_ready()
    return Response()


@model_router.get(
    "/{name}/versions/{version}/ready", summary="Model version ready", response_class=Response, responses={200: _EMPTY}
)
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    _model(request, name, version).check_ready()
    return Response()


@model_router.post(
    "/{name}/infer",
    response_model=v2.InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_DOCS,
    summary="Inference (default version)",
)
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@model_router.post(
    "/{name}/versions/{version}/infer",
    response_model=v2.InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_DOCS,
    summary="Inference",
)
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)
