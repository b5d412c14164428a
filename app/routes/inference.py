"""POST /generate, /encode, /reconstruct, /quantiles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.deps import resolve_model
from app.responses import NPY_MEDIA_TYPE, ArrayJSONResponse, NpyResponse, wants_npy
from app.schemas import (
    EncodeResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    QuantilesResponse,
    ReconstructResponse,
    RowsRequest,
    json_body,
    read_body,
)
from app.served_model import ServedModel

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 413, 415, 422, 500, 503, 504)}
router = APIRouter(tags=["inference"], responses=ERRORS)  # the API key is attached in create_app


def _answer(served: ServedModel, **fields: Any) -> Response:
    # numpy arrays are encoded directly; the declared response models document the shape
    return ArrayJSONResponse({"model": served.manifest.name, "version": served.manifest.version, **fields})


@router.post(
    "/generate",
    response_model=GenerateResponse,
    summary="Generate samples, optionally for a label",
    responses={200: {"content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
    openapi_extra=json_body(GenerateRequest),
)
async def generate(request: Request) -> Response:
    """Decode `n` latent codes drawn from N(0, temperature^2 I). A sample is the decoder's
    central value: the Bernoulli mean (pixel intensities), the Gaussian mean, or the median
    of a quantile head; all variation comes from z. The same `seed` gives the same samples.

    With `Accept: application/x-npy` the answer is the samples alone, a float32 [n, features]
    array in NumPy's .npy format (headers `X-Model` and `X-Model-Version` name the model)."""
    body = await read_body(request, GenerateRequest)
    served = resolve_model(request, body.model)
    samples = await served.generate(body.n, body.label, body.seed, body.temperature)
    if wants_npy(request.headers.get("accept")):
        headers = {"X-Model": served.manifest.name, "X-Model-Version": str(served.manifest.version)}
        return NpyResponse(samples, headers=headers)
    return _answer(served, label=body.label, seed=body.seed, samples=samples)


@router.post(
    "/encode",
    response_model=EncodeResponse,
    summary="Posterior q(z | x) of each row",
    openapi_extra=json_body(RowsRequest),
)
async def encode(request: Request) -> Response:
    body = await read_body(request, RowsRequest)
    served = resolve_model(request, body.model)
    mean, log_var = await served.encode(body.inputs, body.labels)
    return _answer(served, mean=mean, log_var=log_var)


@router.post(
    "/reconstruct",
    response_model=ReconstructResponse,
    summary="Reconstruct rows through the latent mean",
    openapi_extra=json_body(RowsRequest),
)
async def reconstruct(request: Request) -> Response:
    body = await read_body(request, RowsRequest)
    served = resolve_model(request, body.model)
    reconstructions, errors = await served.reconstruct(body.inputs, body.labels)
    return _answer(served, reconstructions=reconstructions, errors=errors)


@router.post(
    "/quantiles",
    response_model=QuantilesResponse,
    summary="Per-feature quantile bands of each row",
    openapi_extra=json_body(RowsRequest),
)
async def quantiles(request: Request) -> Response:
    """Quantile head: its learned (calibrated) quantiles at the row's latent mean. Gaussian
    head: the exact quantiles of N(mean, sigma^2) at the latent mean, levels 0.05 to 0.95.
    Bernoulli head: 422, it has no spread to give quantiles of."""
    body = await read_body(request, RowsRequest)
    served = resolve_model(request, body.model)
    levels, bands = await served.quantiles(body.inputs, body.labels)
    return _answer(served, levels=levels, quantiles=bands)
