"""GET /models and /models/{name}."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import RegistryDep
from app.errors import ModelNotFound
from app.registry import ModelRecord
from app.schemas import ErrorResponse, ModelDetail, ModelList, ModelSummary

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
        normalization=manifest.normalization.model_dump() if manifest else None,
        metrics=manifest.evaluation.metrics if manifest else None,
        quality=manifest.evaluation.quality if manifest else None,
        coverage_by_feature=manifest.evaluation.coverage_by_feature if manifest else None,
        warnings=manifest.evaluation.warnings if manifest else [],
        training=manifest.training.model_dump() if manifest else None,
    )
