"""GET /healthz (live), /readyz (ready), /metrics (Prometheus): open even when an API key is set."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app import metrics
from app.deps import RegistryDep
from app.errors import error_body
from app.schemas import ErrorResponse

router = APIRouter(tags=["health"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    summary="Ready: at least one model loaded and every batcher running",
    responses={503: {"model": ErrorResponse}},
)
async def readyz(registry: RegistryDep) -> JSONResponse:
    models = [s.ref for s in registry.served()]
    if registry.ready:
        return JSONResponse({"status": "ready", "models": models})
    failed = {f"{r.name}@{r.version}": r.reason for r in registry.all_records() if r.served is None}
    body = error_body("not_ready", "no model is being served" if not models else "batchers are not running", failed)
    return JSONResponse(body, 503, headers={"Retry-After": "1"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)
