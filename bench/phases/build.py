"""Phase "models": each model's artifact in build/models/<slug> (infra/build_model.py; built once, then reused)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench import models


@dataclass(frozen=True)
class BuiltModel:
    """results.json's models[label] as this phase leaves it (later phases add quality, latency, ingest_large)."""

    config: dict[str, Any]  # bench.models.ModelConfig's fields and its slug
    build: str  # infra/build_model.py's last output line


def build_model(config: models.ModelConfig) -> BuiltModel:
    """Build (or find up to date) one model's artifact."""
    return BuiltModel(config={**asdict(config), "slug": config.slug}, build=models.build(config))
