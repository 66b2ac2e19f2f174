"""The models clients may pick, with their label sets and evaluation metrics."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SettingsDep
from api.schemas import ModelOut, error_responses
from ml.artifact import ModelArtifactError, read_spec

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelOut], responses=error_responses(401, 429))
def list_models(settings: SettingsDep) -> list[ModelOut]:
    """Every configured model whose folder is present; metrics come from its model.json."""
    models = []
    for name in settings.model_names:
        try:
            spec = read_spec(settings.models_dir / name)
        except ModelArtifactError:
            continue
        models.append(
            ModelOut(
                name=name,
                num_classes=spec.num_classes,
                labels=spec.labels,
                metrics=spec.metrics,
                default=name == settings.default_model,
            )
        )
    return models
