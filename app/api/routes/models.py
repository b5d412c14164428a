"""GET /models and /models/{name}."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import RegistryDep
from app.api.pictures import SVG_MEDIA_TYPE, picture_headers
from app.api.schemas import ErrorResponse, ModelDetail, ModelList, ModelSummary
from app.models.registry import ModelRecord
from core.errors import ModelNotFound
from core.heads import HEADS
from core.repository import COLUMNS_FIGURE, HISTORY_FILE, LOSS_FIGURE, contained_file

router = APIRouter(
    tags=["models"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def summary(record: ModelRecord) -> ModelSummary:
    m, served = record.manifest, record.served
    fields = {}
    if m is not None:
        fields = {
            "head": m.head,
            "conditional": m.conditional,
            "labels": m.labels,
            "input_dim": m.input_dim,
            "columns": [c.name for c in m.columns] if m.columns is not None else None,
            "quantile_levels": m.quantile_levels,
            "bands": HEADS[m.head].spread,
            "latent_dim": m.latent_dim,
            "image_shape": m.image_shape,
            "promoted": m.promotion.promoted if m.promotion else True,
            "promotion": m.promotion.reason if m.promotion else "made before promotion checks: promoted",
        }
    if served is not None:
        fields |= {"device": served.device, "backend": served.backend}
    return ModelSummary(name=record.name, version=record.version, state=record.state, reason=record.reason, **fields)


@router.get("/models", response_model=ModelList, summary="Every model version found, with its state")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[summary(r) for r in registry.all_records()])


FILES = {HISTORY_FILE: "application/json", LOSS_FIGURE: SVG_MEDIA_TYPE, COLUMNS_FIGURE: SVG_MEDIA_TYPE}


@router.get(
    "/models/{name}/files/{file}",
    summary="What training wrote beside a model: its history (JSON) and figures (SVG)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, SVG_MEDIA_TYPE: {}}}},
)
async def model_file(
    name: str,
    file: Literal["history.json", "loss.svg", "columns.svg"],
    registry: RegistryDep,
    version: int | None = Query(None, ge=1, description="default: the version `name` resolves to"),
) -> Response:
    """`history.json`: every epoch's losses (train, its reconstruction and KL terms, validation),
    KL weight and learning rate; `loss.svg`: their curves; `columns.svg` (table models): each
    column's real test rows against generated rows."""
    versions = registry.records.get(name)
    if not versions:
        raise ModelNotFound(f"no model named {name!r}; models: {sorted(registry.records)}")
    chosen = version if version is not None else registry.default(name)[0]
    record = versions.get(chosen) if chosen is not None else None
    if record is None:
        raise ModelNotFound(f"model {name!r} has no version {chosen}; versions: {sorted(versions)}")
    try:
        content = contained_file(record.path, file).read_bytes()
    except (OSError, ValueError):
        raise ModelNotFound(f"{record.ref} has no {file} (made before training wrote it, or not a table)") from None
    return Response(content, media_type=FILES[file], headers=picture_headers(file))


@router.get("/models/{name}", response_model=ModelDetail, summary="One model: versions, metrics, training")
async def model_detail(name: str, registry: RegistryDep) -> ModelDetail:
    versions = registry.records.get(name)
    if not versions:
        raise ModelNotFound(f"no model named {name!r}; models: {sorted(registry.records)}")
    ready = [v for v, r in versions.items() if r.served is not None]
    default, why = registry.default(name)
    manifest = versions[default].manifest if default is not None else None
    return ModelDetail(
        name=name,
        default_version=default,
        default_reason=why,
        latest=max(ready) if ready else None,
        versions=[summary(r) for r in versions.values()],
        feature_names=manifest.feature_names if manifest else None,
        columns=[c.model_dump(exclude_none=True) for c in manifest.columns] if manifest and manifest.columns else None,
        label_weights=(
            dict(zip(manifest.labels, manifest.label_weights, strict=True))
            if manifest and manifest.labels and manifest.label_weights
            else None
        ),
        dropped_columns=(
            [d.model_dump(exclude_none=True) for d in manifest.dropped_columns]
            if manifest and manifest.dropped_columns is not None
            else None
        ),
        rules=[r.model_dump(exclude_none=True) | {"text": r.text()} for r in manifest.rules]
        if manifest and manifest.rules
        else None,
        gap_patterns=manifest.gap_patterns if manifest else None,
        reference=(
            [r.model_dump(exclude_none=True) for r in manifest.reference] if manifest and manifest.reference else None
        ),
        normalization=manifest.normalization.model_dump() if manifest else None,
        metrics=manifest.evaluation.metrics if manifest else None,
        quality=manifest.evaluation.quality if manifest else None,
        coverage_by_feature=manifest.evaluation.coverage_by_feature if manifest else None,
        anomaly=manifest.evaluation.anomaly if manifest else None,
        warnings=manifest.evaluation.warnings if manifest else [],
        training=manifest.training.model_dump() if manifest else None,
    )
