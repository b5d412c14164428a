"""POST /generate, /encode, /reconstruct, /quantiles."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.deps import require_api_key, resolve_model
from app.schemas import (
    EncodeResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    QuantilesResponse,
    ReconstructResponse,
    RowsRequest,
)

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}
router = APIRouter(tags=["inference"], dependencies=[Depends(require_api_key)], responses=ERRORS)


def _answer(served, **fields) -> JSONResponse:
    # Arrays go out through .tolist(); the declared response models document the shape.
    body = {"model": served.manifest.name, "version": served.manifest.version}
    body.update({k: v.tolist() if hasattr(v, "tolist") else v for k, v in fields.items()})
    return JSONResponse(body)


@router.post("/generate", response_model=GenerateResponse, summary="Generate samples, optionally for a label")
async def generate(body: GenerateRequest, request: Request) -> JSONResponse:
    """Decode `n` latent codes drawn from N(0, temperature^2 I). A sample is the decoder's
    central value: the Bernoulli mean (pixel intensities), the Gaussian mean, or the median
    of a quantile head; all variation comes from z. The same `seed` gives the same samples."""
    served = resolve_model(request, body.model)
    samples = await served.generate(body.n, body.label, body.seed, body.temperature)
    return _answer(served, label=body.label, seed=body.seed, samples=samples)


@router.post("/encode", response_model=EncodeResponse, summary="Posterior q(z | x) of each row")
async def encode(body: RowsRequest, request: Request) -> JSONResponse:
    served = resolve_model(request, body.model)
    mean, log_var = await served.encode(body.inputs, body.labels)
    return _answer(served, mean=mean, log_var=log_var)


@router.post("/reconstruct", response_model=ReconstructResponse, summary="Reconstruct rows through the latent mean")
async def reconstruct(body: RowsRequest, request: Request) -> JSONResponse:
    served = resolve_model(request, body.model)
    reconstructions, errors = await served.reconstruct(body.inputs, body.labels)
    return _answer(served, reconstructions=reconstructions, errors=errors)


@router.post("/quantiles", response_model=QuantilesResponse, summary="Per-feature quantile bands of each row")
async def quantiles(body: RowsRequest, request: Request) -> JSONResponse:
    """Quantile head: its learned (calibrated) quantiles at the row's latent mean. Gaussian
    head: the exact quantiles of N(mean, sigma^2) at the latent mean, levels 0.05 to 0.95.
    Bernoulli head: 422, it has no spread to give quantiles of."""
    served = resolve_model(request, body.model)
    levels, bands = await served.quantiles(body.inputs, body.labels)
    return _answer(served, levels=levels, quantiles=bands)
