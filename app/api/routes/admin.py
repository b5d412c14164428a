"""POST /admin/reload: scan the model repository again without a restart (also on SIGHUP)."""

from __future__ import annotations

import logging
import os
import signal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from app.api.deps import RegistryDep
from app.api.schemas import ErrorResponse, require_json
from app.models.registry import ReloadReport
from core.errors import Forbidden

logger = logging.getLogger("genserve")


class ReloadResponse(ReloadReport):
    status: str = Field(description="reloaded")


def _same_origin_json(request: Request) -> None:
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none") or (
        origin is not None and urlsplit(origin).netloc.lower() != host.lower()
    ):
        raise Forbidden(f"a cross-origin request (from {origin or 'another site'}) cannot trigger a reload")
    require_json(request)  # a cross-site form or text/plain POST needs no CORS preflight: refuse it


router = APIRouter(
    prefix="/admin", tags=["admin"], responses={code: {"model": ErrorResponse} for code in (401, 403, 415)}
)


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Reload the model repository: new versions load, removed ones go, broken ones never replace good ones",
    responses={
        202: {"description": "Several workers: the server replaces them one by one, each loading afresh"},
        503: {"model": ErrorResponse, "description": "The model directory is missing: nothing changed"},
    },
)
async def reload(request: Request, registry: RegistryDep) -> JSONResponse:
    """With one worker, the reload happens in this process and the answer says what changed.
    With several (GENSERVE_WORKERS > 1) a reload in one worker would leave the others behind:
    the request asks the server process to replace its workers one by one instead (as SIGHUP
    to it does); each new worker loads the repository as it is, and is in service before the
    old one it replaces stops. That answer is 202, with nothing to report yet.

    A browser's cross-origin request is refused (403), and so is a body that is not JSON (415):
    a web page the operator opens cannot make its browser trigger a reload, API key or not."""
    _same_origin_json(request)
    if request.app.state.settings.workers > 1:
        os.kill(os.getppid(), signal.SIGHUP)
        return JSONResponse(
            {
                "status": "restarting workers",
                "message": "each worker is replaced, one by one, by one that loads the repository as it is now; "
                "the outcome is in the server log and in GET /models once done",
            },
            202,
        )
    report = await registry.reload()
    return JSONResponse({"status": "reloaded", **report.model_dump()})
