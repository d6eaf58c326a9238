"""The model at cold start: fetched from the model layer's archive when the model directory does not hold it.

The functions do not attach ModelLayer: with it, SearchFunction would be over Lambda's 250 MB unzipped limit.
The stack still builds and versions the model as a layer (`sam build` + `sam deploy`, nothing else to upload);
each new container asks Lambda for the layer version's archive (GetLayerVersionByArn: a link valid 10 minutes),
checks its SHA-256, and extracts model/ into PICTRACE_MODEL_DIR (under /tmp). Warm invocations find it there.
Where the directory already holds the model (local runs, tests, `make invoke`), nothing is fetched.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pictrace.embedding import INFO_FILE, has_model
from pictrace.errors import ConfigError, UpstreamError
from pictrace.settings import Settings

logger = logging.getLogger(__name__)

#: where the model sits inside the layer archive (/opt/model when a layer is attached)
ARCHIVE_DIR = "model/"
_lock = threading.Lock()


def ensure_model(settings: Settings, client: Any | None = None) -> str:
    """settings.model_dir, after fetching the model from settings.model_layer into it if it was not there."""
    if settings.model_layer and not has_model(settings.model_dir):
        with _lock:
            if not has_model(settings.model_dir):
                fetch_layer_model(settings.model_layer, settings.model_dir, client)
    return settings.model_dir


def fetch_layer_model(layer_arn: str, model_dir: str, client: Any | None = None, timeout: float = 60.0) -> None:
    """Download the layer version's archive, check its SHA-256 and extract the model files into model_dir."""
    started = time.perf_counter()
    client = client or boto3.client("lambda", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    try:
        content = client.get_layer_version_by_arn(Arn=layer_arn)["Content"]
    except (ClientError, BotoCoreError) as exc:
        raise UpstreamError(f"cannot look up the model layer {layer_arn}: {exc}") from exc
    location, expected = content["Location"], content["CodeSha256"]
    if not location.startswith(("https://", "http://")):
        raise UpstreamError(f"the model layer {layer_arn} has no downloadable archive ({location!r})")
    target = Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as scratch:
        archive = Path(scratch) / "layer.zip"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(location, timeout=timeout) as response, archive.open("wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"cannot download the model layer {layer_arn}: {exc}") from exc
        if base64.b64encode(digest.digest()).decode() != expected:
            raise UpstreamError(f"the model layer {layer_arn} archive does not match its SHA-256 {expected}")
        _extract(archive, target, layer_arn)
    seconds = time.perf_counter() - started
    logger.info("fetched the model from layer %s into %s in %.2f s", layer_arn, target, seconds)


def _extract(archive: Path, target: Path, layer_arn: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(ARCHIVE_DIR) and not m.is_dir()]
        names = {m.filename[len(ARCHIVE_DIR) :] for m in members}
        if INFO_FILE not in names:
            raise ConfigError(
                f"the model layer {layer_arn} has no {ARCHIVE_DIR}{INFO_FILE}: build it with `make model`"
            )
        # model.json last: has_model() is true only once every file it names is complete
        for member in sorted(members, key=lambda m: m.filename == ARCHIVE_DIR + INFO_FILE):
            relative = Path(member.filename[len(ARCHIVE_DIR) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise ConfigError(f"the model layer {layer_arn} holds an unsafe path {member.filename!r}")
            final = target / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{final.name}.partial")
            with zf.open(member) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(partial, final)
    if not has_model(target):
        raise ConfigError(f"the model layer {layer_arn} lacks the file its {INFO_FILE} names: rebuild it")
