"""The model artifact's files: its record (model.json) and the ONNX file the record names.

Standard library only: pictrace.modelfetch, which the exec wrapper's prefetch runs beside the runtime's import,
checks a model directory without importing the inference stack (pictrace.embedding: OpenCV, numpy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

INFO_FILE = "model.json"


def model_file(model_dir: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """The ONNX file a model artifact's record names."""
    return Path(model_dir) / str(info.get("file", ""))


def has_model(model_dir: str | os.PathLike[str]) -> bool:
    """Whether the directory holds a complete model artifact (model.json and the file it names)."""
    info_path = Path(model_dir) / INFO_FILE
    if not info_path.is_file():
        return False
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    return bool(info.get("file")) and model_file(model_dir, info).is_file()
