"""Shared fixtures: the model artifact, test images, and a local stack (moto's server over real HTTP)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MODEL_DIR = ROOT / "layers" / "model" / "model"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "pictrace-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PicTraceTest")
os.environ.setdefault("LOG_LEVEL", "WARNING")

PHOTOS = ["astronaut.jpg", "coffee.png", "chelsea.webp", "rocket.bmp", "camera.tiff"]


def read(name: str) -> bytes:
    """Bytes of a file in tests/data."""
    return (DATA / name).read_bytes()


@pytest.fixture(scope="session")
def model_dir() -> str:
    """The model artifact `make model` builds; tests need it rather than skipping without it."""
    from pictrace.modelfiles import has_model

    if not has_model(MODEL_DIR):
        pytest.fail(f"no model artifact in {MODEL_DIR}: run `make model` (make test does it)")
    return str(MODEL_DIR)


@pytest.fixture(scope="session")
def embedder(model_dir: str):  # type: ignore[no-untyped-def]
    from pictrace.embedding import get_embedder

    return get_embedder(model_dir)


def forget_container() -> None:
    """What a container makes once (settings, clients, wiring, ingestor) is made again from the environment."""
    from pictrace.detailstage import get_stage
    from pictrace.ingest import get_ingestor
    from pictrace.settings import get_settings
    from pictrace.storage import ProcessClients
    from pictrace.wiring import container_wiring

    get_settings.cache_clear()
    ProcessClients.clear_all()  # the S3 and SQS clients of a previous stack's endpoints
    container_wiring.cache_clear()
    get_ingestor.cache_clear()
    get_stage.cache_clear()


@pytest.fixture
def stack(model_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh local stack (bucket, queue, DLQ, S3 -> SQS notifications) with the environment pointing at it."""
    from infra.local import LocalStack

    saved = dict(os.environ)
    # moto's backends are shared by every server in this process: a bucket of its own per test
    local = LocalStack(bucket=f"pictrace-test-{uuid.uuid4().hex[:12]}", max_receive_count=3).start()
    for name, value in local.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PICTRACE_MODEL_DIR", model_dir)
    monkeypatch.setenv("PICTRACE_REFRESH_SECONDS", "0")
    forget_container()
    try:
        yield local
    finally:
        local.stop()
        forget_container()
        os.environ.clear()
        os.environ.update(saved)
