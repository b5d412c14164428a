"""GET /healthz (live), /readyz (ready), /metrics (Prometheus): open even when an API key is set."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app import metrics
from app.api.deps import RegistryDep
from app.api.schemas import ErrorResponse
from app.http.errors import error_body

router = APIRouter(tags=["health"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    summary="Ready: a model serves and every batcher runs (GENSERVE_READY_POLICY=all: and none failed)",
    responses={503: {"model": ErrorResponse}},
)
async def readyz(registry: RegistryDep) -> JSONResponse:
    """200 once at least one model version serves and every batcher runs (failed versions are
    listed in /models and do not hold readiness back), or, with GENSERVE_READY_POLICY=all, only
    when every version found loaded. 503 before that, while shutting down, or with no model."""
    reason = registry.not_ready_reason()
    if reason is None:
        return JSONResponse({"status": "ready", "models": [s.ref for s in registry.served()]})
    failed = {r.ref: r.reason for r in registry.all_records() if r.served is None}
    return JSONResponse(error_body("not_ready", reason, failed), 503, headers={"Retry-After": "1"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)
