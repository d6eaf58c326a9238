"""The page, what it needs before it can sign in, and the liveness check: GET /, /auth/config, /health (public
with any ApiAuth: no image, id, key or link comes from them)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from pictrace import __version__
from pictrace.embedding import load_model_info
from pictrace.modelfetch import ensure_model
from pictrace.routes.deps import AppSettings, Service
from pictrace.verdict import Scoring

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def root() -> FileResponse:
    """The search page (pictrace/static/index.html; its assets are under /static, no CDN)."""
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/auth/config")
async def auth_config(settings: AppSettings) -> dict[str, str]:
    """How to sign in (the page reads it before it can): mode none, iam or jwt, or cognito with the hosted UI's
    domain, the app client id and the region."""
    if settings.auth_mode != "cognito":
        return {"mode": settings.auth_mode}
    return {
        "mode": "cognito",
        "domain": settings.auth_domain,
        "client_id": settings.auth_client_id,
        "region": settings.auth_region,
    }


@router.get("/health")
async def health(settings: AppSettings, svc: Service) -> dict[str, Any]:
    """Liveness, the model's weights and backend, the number of indexed images last seen, and how results are
    scored and judged (with why there is no verdict, where there is none)."""
    info = load_model_info(ensure_model(settings))
    await asyncio.to_thread(svc.backend.refresh)  # a no-op where the backend holds nothing (S3 Vectors)
    return {
        "status": "ok",
        "version": __version__,
        "weights": info["weights"],
        "backend": "onnxruntime",
        "model": {k: info.get(k) for k in ("architecture", "dim", "preprocess", "precision", "source", "sha256")},
        "indexed": svc.backend.count(),
        "scoring": scoring_json(settings.scoring(info["weights"], str(info.get("preprocess") or ""))),
    }


def scoring_json(scoring: Scoring) -> dict[str, Any]:
    """The fusion weights in use and how similarity and match are calibrated (verdict None, with the reason, where
    the running configuration has no calibration: every match is then null)."""
    c = scoring.calibration
    verdict = None
    if c is not None:
        verdict = {
            "threshold": c.threshold,
            "precision": c.precision,
            "recall": c.recall,
            "similarity": f"1 / (1 + exp(-({c.a:.3f} * final + {c.b:.3f})))",
            "cosine": "centred on the model's reference" if scoring.centre else "plain",
            "fitted": c.fitted,
            "region": dataclasses.asdict(c.region) if c.region else None,  # when a region of the query makes a copy
        }
    return {
        **dataclasses.asdict(scoring.fusion),
        "final": "sum(weight * signal) / sum(weight) over cosine, gist, ssim, geometry",
        "verdict": verdict,
        "uncalibrated": scoring.reason or None,
    }
