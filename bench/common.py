"""What the bench's phases share: the tree's paths, the sample images, child processes, JSON of typed results."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data/samples"
SIGNALS_DIR = ROOT / "build" / "bench"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
#: the search's shortlist (and top_k) in the quality pass; the latency passes use the product's defaults
SHORTLIST = 50


def images_in(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def child_json(args: list[str], timeout: float = 600) -> Any:
    """Run `python -m <args>` in a fresh process with this environment; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def record(value: Any) -> Any:
    """A phase's result as results.json holds it: a dataclass as its dict (its own `record()` where the JSON shape
    is not its fields'), anything else as it is."""
    if hasattr(value, "record") and callable(value.record):
        return value.record()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def json_default(o: Any) -> Any:
    """json.dumps' fallback: numpy scalars, paths, typed results."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return record(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
