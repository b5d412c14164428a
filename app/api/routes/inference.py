"""POST /generate, /encode, /reconstruct, /quantiles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.api.deps import require_api_key, resolve_model
from app.api.pictures import (
    MAX_GRID_IMAGES,
    PNG_MEDIA_TYPE,
    SVG_MEDIA_TYPE,
    band_png,
    band_svg,
    image_grid,
    outside,
    picture_headers,
)
from app.api.schemas import (
    AnomalyRequest,
    AnomalyResponse,
    EncodeResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    GenerateStreamRequest,
    QuantilesResponse,
    Range,
    ReconstructResponse,
    RowsRequest,
    json_body,
    read_body,
)
from app.http.hot_routes import HotRoute
from app.http.protocol import trim_memory
from app.http.responses import (
    CSV_MEDIA_TYPE,
    NPY_MEDIA_TYPE,
    ArrayJSONResponse,
    CsvResponse,
    NpyResponse,
)
from app.models.served_model import ServedModel, TableRows
from core.errors import InvalidInput, NotAcceptable
from core.formats import ARROW, JSON, NDJSON, PARQUET, RowWriter, media_ranges, negotiate, row_format
from core.generation import Block
from core.table import rows_of

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 406, 413, 415, 422, 500, 503, 504)}
SLICE_BYTES = 64 * 1024  # a stream's parts go out in slices of this, each once the connection has room
# Hot routes (app/http/hot_routes.py): answered in front of the middleware stack, with their own
# guard. require_api_key lets every request through while no GENSERVE_API_KEY is set.
router = APIRouter(tags=["inference"], responses=ERRORS, route_class=HotRoute, dependencies=[Depends(require_api_key)])


def _answer(served: ServedModel, **fields: Any) -> Response:
    # numpy arrays are encoded directly; the declared response models document the shape
    return ArrayJSONResponse({"model": served.manifest.name, "version": served.manifest.version, **fields})


@router.post(
    "/generate",
    response_model=GenerateResponse,
    summary="Generate samples, optionally for a label",
    responses={
        200: {
            "content": {
                NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                PNG_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
    openapi_extra=json_body(GenerateRequest),
)
async def generate(request: Request) -> Response:
    """Decode `n` latent codes: from N(0, temperature^2 I), or for a table model from its latent
    prior (a Gaussian mixture per label fitted to the training rows' codes; temperature scales
    each component's spread). `mode: sample` draws each row
    from p(x | z[, y]): Gaussian noise with the learned variance, a Bernoulli or categorical
    draw, a missing value with its learned probability, an inverse-CDF draw through a quantile
    head's quantiles. `mode: mean` gives the decoder's central value (Bernoulli mean, Gaussian
    mean, median quantile, most likely category), where all variation comes from z. Table
    models default to `sample`, others to `mean`. The same `seed` gives the same samples.

    A table model answers `columns` and typed rows (integers as integers, categories as in the
    data, null for a missing value). With `Accept: text/csv` the answer is CSV with a header row
    (an empty field for a missing value); with `Accept: application/x-npy` (models without a
    column schema) a float32 [n, features] array in NumPy's .npy format. With `Accept: image/png`
    a model trained on images answers one PNG grid of its samples; a conditional one asked for
    no label draws a row of `n` for each of its labels. Headers `X-Model` and `X-Model-Version`
    name the model of a CSV, .npy or PNG answer."""
    body = await read_body(request, GenerateRequest)
    served = resolve_model(request, body.model)
    accept, offers = request.headers.get("accept"), _generate_offers(served)
    media_type = _negotiated(accept, offers)
    labels = served.manifest.labels
    if media_type == PNG_MEDIA_TYPE and served.manifest.image_shape:
        each_label = bool(labels) and body.label is None  # a conditional model, no label: a row for each
        _check_grid(body.n, len(labels) if each_label else 1)
        if each_label:
            conditions = _conditions(body)
            rows = [
                await served.generate(body.n, label, body.seed, body.temperature, body.mode, None, conditions)
                for label in labels
            ]
            grid = await run_in_threadpool(image_grid, np.concatenate(rows), served.manifest.image_shape, len(labels))
            return Response(grid, media_type=PNG_MEDIA_TYPE, headers=_picture_headers(served))
    samples = await served.generate(
        body.n, body.label, body.seed, body.temperature, body.mode, body.label_weights, _conditions(body)
    )
    label = None if body.label is None else str(body.label)
    mode = body.mode or served.default_mode
    if media_type not in offers:  # refused after generating, as before: a bad request is a 422 first
        if isinstance(samples, TableRows):
            raise NotAcceptable(
                f"model {served.ref} has a column schema and answers typed rows, not a float array; "
                "ask for application/json or text/csv"
            )
        raise NotAcceptable(
            f"model {served.ref} does not make images: ask for application/json, text/csv or application/x-npy"
        )
    if isinstance(samples, TableRows):
        rows = rows_of(samples.values)
        if media_type == CSV_MEDIA_TYPE:
            return CsvResponse(samples.columns, rows, headers=_model_headers(served))
        return _answer(served, label=label, seed=body.seed, mode=mode, columns=samples.columns, samples=rows)
    if media_type == NPY_MEDIA_TYPE:
        return NpyResponse(samples, headers=_model_headers(served))
    if media_type == PNG_MEDIA_TYPE:  # drawn off the event loop (zlib and numpy let go of the GIL)
        grid = await run_in_threadpool(image_grid, samples, served.manifest.image_shape)
        return Response(grid, media_type=PNG_MEDIA_TYPE, headers=_picture_headers(served))
    if media_type == CSV_MEDIA_TYPE:
        return CsvResponse(served.manifest.feature_names, samples, headers=_model_headers(served))
    return _answer(served, label=label, seed=body.seed, mode=mode, samples=samples)


def _check_grid(n: int, rows: int) -> None:
    """A PNG grid holds at most MAX_GRID_IMAGES images (n for each of `rows` labels)."""
    if n * rows > MAX_GRID_IMAGES:
        each = f"n={n} for each of {rows} labels is {n * rows:,}" if rows > 1 else f"n={n}"
        fits = f"ask for n <= {MAX_GRID_IMAGES // rows}" + (", or name a label" if rows > 1 else "")
        raise InvalidInput(f"a PNG grid holds at most {MAX_GRID_IMAGES:,} images; {each}: {fits}, or for JSON or .npy")


_TABLE_OFFERS = (JSON, CSV_MEDIA_TYPE)
_ARRAY_OFFERS = (JSON, CSV_MEDIA_TYPE, NPY_MEDIA_TYPE)
_IMAGE_OFFERS = (*_ARRAY_OFFERS, PNG_MEDIA_TYPE)


def _generate_offers(served: ServedModel) -> tuple[str, ...]:
    """What /generate answers for a model, JSON first: a table model typed rows (JSON or CSV),
    others a float array (also .npy), an image model also a PNG grid."""
    if served.table is not None:
        return _TABLE_OFFERS
    return _IMAGE_OFFERS if served.manifest.image_shape else _ARRAY_OFFERS


def _negotiated(accept: str | None, offers: tuple[str, ...]) -> str:
    """/generate's answer type by `negotiate`; when no offer is acceptable, `_refused`'s."""
    if not accept:
        return offers[0]
    try:
        return negotiate(accept, offers)
    except NotAcceptable:
        return _refused(accept)


def _refused(accept: str | None) -> str:
    """/generate's answer when none of the model's offers is acceptable: JSON, unless the header
    names (q > 0) a picture or array type the model does not make (.npy, PNG, SVG), refused with 406."""
    named = {media_range for media_range, q in media_ranges(accept) if q > 0}
    return next((t for t in (NPY_MEDIA_TYPE, PNG_MEDIA_TYPE, SVG_MEDIA_TYPE) if t in named), JSON)


@router.post(
    "/generate/stream",
    summary="Stream many generated rows, made as they are sent: NDJSON, CSV, Arrow or Parquet",
    responses={
        200: {
            "content": {
                NDJSON: {"schema": {"type": "string"}},
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                ARROW: {"schema": {"type": "string", "format": "binary"}},
                PARQUET: {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
    openapi_extra=json_body(GenerateStreamRequest),
)
async def generate_stream(request: Request) -> Response:
    """Up to GENSERVE_MAX_STREAM_ROWS rows, as /generate makes them (the same `seed` gives the
    same rows, row for row), streamed in blocks of 1,024 rows as they are made: the server's
    memory stays the same whatever `n` is, and the rows share the model with other requests batch
    by batch. The format follows `Accept`: `application/x-ndjson` (the default; one JSON object
    per row, keyed by column; for a model without a column schema an array in feature order),
    `text/csv` (a header row first), `application/vnd.apache.arrow.stream` (an Arrow IPC
    stream, a record batch per block) or `application/vnd.apache.parquet` (a row group per
    65,536 rows, fewer beyond 16 columns). Rows are made as fast as the client takes them: a slow
    client holds at most one part in the server's memory, and one that takes nothing for
    GENSERVE_SEND_TIMEOUT_S is cut off.
    A client that goes away stops the work. Errors found before the first row are JSON 4xx answers
    as elsewhere; a failure mid-stream, or a client cut off, ends the response unfinished (no last
    chunk), so it cannot pass for a complete one."""
    body = await read_body(request, GenerateStreamRequest)
    served = resolve_model(request, body.model)
    media_type = row_format(request.headers.get("accept"))
    limit = request.app.state.settings.max_stream_rows
    if body.n > limit:
        raise InvalidInput(f"n={body.n} is above the limit of {limit} rows per stream (GENSERVE_MAX_STREAM_ROWS)")
    blocks = served.stream(
        body.n, body.label, body.seed, body.temperature, body.mode, body.label_weights, _conditions(body)
    )
    first = await anext(blocks)  # made before the answer starts: its errors are JSON answers, not a cut stream
    writer = RowWriter(media_type, served.manifest.feature_names, served.table, labelled=first.labels is not None)
    headers = {**_model_headers(served), "X-Rows": str(body.n), "Cache-Control": "no-store"}
    body_parts = _streamed(writer, first, blocks, served)
    return StreamingResponse(body_parts, media_type=writer.content_type, headers=headers)


def _conditions(body: GenerateRequest) -> dict[str, Any] | None:
    """A request's conditions as core/rules.py's Conditions takes them: a range as {"min", "max"}."""
    if body.conditions is None:
        return None
    return {k: v.model_dump(exclude_none=True) if isinstance(v, Range) else v for k, v in body.conditions.items()}


async def _streamed(
    writer: RowWriter, first: Block, blocks: AsyncGenerator[Block, None], served: ServedModel
) -> AsyncIterator[bytes | memoryview]:
    """The bytes of each part as its blocks are made, in slices written as the client takes them
    (`_sliced`); the work stops when the client goes away (Starlette cancels this at the disconnect).
    Should this never start (the client left before the answer did), `blocks`, already started, is
    closed when collected, which lets go of the model."""
    m = served.manifest
    sent, active = metrics.STREAM_ROWS.labels(m.name, str(m.version)), metrics.STREAMS_ACTIVE.labels(m.name)
    loop = asyncio.get_running_loop()
    active.inc()
    _STREAMS[0] += 1
    try:
        part, more = [first], True
        del first  # held in `part` only: let go of once encoded, not while the client takes it
        while more:
            more = await _fill(part, blocks, writer.part_rows)
            if part:
                pieces = _sliced(await _encoded(writer, part, sent, loop))
                part = []
                for piece in pieces:
                    yield piece
        for piece in _sliced(writer.close()):
            yield piece
    finally:
        active.dec()
        try:
            await blocks.aclose()
        finally:
            _STREAMS[0] -= 1
            if not _STREAMS[0]:  # the last stream's blocks and parts, once this frame is gone, back to the system
                loop.call_later(TRIM_AFTER_STREAMS_S, loop.run_in_executor, None, trim_memory)


_STREAMS = [0]  # this worker's open streams
TRIM_AFTER_STREAMS_S = 0.2


async def _fill(part: list[Block], blocks: AsyncGenerator[Block, None], rows: int) -> bool:
    """Add blocks to `part` until it holds `rows` rows; False once `blocks` has ended."""
    have = sum(len(block) for block in part)
    while have < rows:
        block = await anext(blocks, None)
        if block is None:
            return False
        part.append(block)
        have += len(block)
    return True


def _sliced(data: bytes) -> Iterator[memoryview]:
    """A part's bytes in slices of SLICE_BYTES. Before each message the server's `send` waits while
    the connection's buffer is over its high-water mark (uvicorn's flow control;
    tests/test_protocol_contract.py), so a slice is written only once there is room, and the next
    part is made only once this one's last slice is written: a slow client holds at most one part
    and a buffer's worth in the server's memory, and no rows are made for it meanwhile."""
    view = memoryview(data)
    del data  # the slices hold the part; once the last is written, nothing does
    for start in range(0, len(view), SLICE_BYTES):
        yield view[start : start + SLICE_BYTES]


async def _encoded(writer: RowWriter, part: list[Block], sent: Any, loop: asyncio.AbstractEventLoop) -> bytes:
    # Parquet's large row groups are encoded off the event loop (pyarrow lets go of the GIL)
    data = await loop.run_in_executor(None, writer.write, part) if writer.threaded else writer.write(part)
    sent.inc(sum(len(block) for block in part))
    return data


@router.post(
    "/anomaly",
    response_model=AnomalyResponse,
    summary="Anomaly verdicts: each row's score, whether it is flagged, and which features fall outside",
    openapi_extra=json_body(AnomalyRequest),
)
async def anomaly(request: Request) -> Response:
    """Each row's anomaly score is its negative ELBO at the posterior mean (nats; higher is more
    anomalous): the model's -log p(x | z) for each value plus the KL of its latent code, plus its
    largest single-feature surprise (about -log p(value | the row's other values); models with more
    than 64 numeric features, or calibrated before surprises, go without). `flagged`
    compares it with the threshold calibrated at training on held-out normal rows, so that about
    `false_alarm_rate` of normal rows are flagged. `most_surprising` names the numeric feature
    least expected given the others; `outside` lists the numeric features outside their central
    `level` band (Gaussian and quantile heads), farthest first, in band widths."""
    body = await read_body(request, AnomalyRequest)
    served = resolve_model(request, body.model)
    threshold, rows = await served.anomaly(body.inputs, body.labels, body.false_alarm_rate, body.level)
    counters = metrics.anomaly_counters(served.manifest.name, served.manifest.version)
    counters[0].inc(len(rows))
    counters[1].inc(sum(1 for r in rows if r["flagged"]))
    return _answer(served, false_alarm_rate=body.false_alarm_rate, threshold=threshold, level=body.level, rows=rows)


def _band_plot(served: ServedModel, media_type: str, levels: list[float], bands: np.ndarray, row: Any) -> Response:
    """One row's bands [levels, features] as SVG (with feature names) or PNG."""
    if served.table is None:
        names, x = served.manifest.feature_names, np.asarray(row, dtype=np.float64)
    else:
        names = [c.name for c in served.table.numeric]
        values = [row.get(n) if isinstance(row, dict) else row[served.table.names.index(n)] for n in names]
        x = np.array([np.nan if v is None else float(v) for v in values])
    bands = np.asarray(bands, dtype=np.float64)
    content = band_svg(levels, bands, x, names) if media_type == SVG_MEDIA_TYPE else band_png(levels, bands, x)
    flagged = [quote(str(n), safe="") for n, o in zip(names, outside(bands, x), strict=True) if o]
    headers = {**_picture_headers(served), "X-Outside": ",".join(flagged)}  # percent-encoded feature names
    return Response(content, media_type=media_type, headers=headers)


def _model_headers(served: ServedModel) -> dict[str, str]:
    return {"X-Model": served.manifest.name, "X-Model-Version": str(served.manifest.version)}


def _picture_headers(served: ServedModel) -> dict[str, str]:
    return {**_model_headers(served), **picture_headers()}


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
    reconstructions, errors, column_errors = await served.reconstruct(body.inputs, body.labels)
    if isinstance(reconstructions, TableRows):
        rows = rows_of(reconstructions.values)
        return _answer(
            served, columns=reconstructions.columns, reconstructions=rows, errors=errors, column_errors=column_errors
        )
    return _answer(served, reconstructions=reconstructions, errors=errors)


@router.post(
    "/quantiles",
    response_model=QuantilesResponse,
    summary="Per-feature quantile bands of each row",
    responses={
        200: {
            "content": {
                PNG_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                SVG_MEDIA_TYPE: {"schema": {"type": "string"}},
            }
        }
    },
    openapi_extra=json_body(RowsRequest),
)
async def quantiles(request: Request) -> Response:
    """Quantile head: its learned (calibrated) quantiles at the row's latent mean. Gaussian
    head: the exact quantiles of N(mean, sigma^2) at the latent mean, levels 0.05 to 0.95.
    Bernoulli head: 422, it has no spread to give quantiles of. A table model gives bands for
    its numeric columns (named in `columns`) and, for its categorical columns, the probability
    of each category."""
    body = await read_body(request, RowsRequest)
    served = resolve_model(request, body.model)
    media_type = negotiate(request.headers.get("accept"), [JSON, PNG_MEDIA_TYPE, SVG_MEDIA_TYPE], default=JSON)
    if media_type != JSON and len(body.inputs) != 1:
        raise InvalidInput(f"a band plot shows one row; {len(body.inputs)} were sent")
    levels, bands, probabilities = await served.quantiles(body.inputs, body.labels)
    if media_type != JSON:
        return _band_plot(served, media_type, levels, bands[0], body.inputs[0])
    if served.table is None:
        return _answer(served, levels=levels, quantiles=bands)
    columns = [c.name for c in served.table.numeric]
    return _answer(served, levels=levels, columns=columns, quantiles=bands, probabilities=probabilities)
