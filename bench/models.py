"""The models the bench runs side by side, each built by infra/build_model.py in build/models/<slug>: ``sscd`` (the
default, with `make model`'s preprocessing; the goals are judged on it), ``sscd-mobile`` (the distilled student),
``random:0`` (Keras' ResNet50 with seeded random weights, as a floor) and ``sscd/<other>`` (each other preprocessing).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pictrace.embedding import SSCD_PREPROCESS, SSCD_PREPROCESSINGS

from bench.common import ROOT

MODELS_DIR = ROOT / "build" / "models"


@dataclass(frozen=True)
class ModelConfig:
    """One model of the run: its label in the tables, its weights name, its preprocessing (None: the model's own)."""

    label: str
    weights: str
    preprocess: str | None
    default: bool = False

    @property
    def slug(self) -> str:
        """Directory name and index prefix part: no ':' or '/'."""
        base = self.weights.replace(":", "-")
        return f"{base}-{self.preprocess.removeprefix('sscd-')}" if self.preprocess else base

    @property
    def model_dir(self) -> Path:
        """Where its artifact is built."""
        return MODELS_DIR / self.slug

    @property
    def index_prefix(self) -> str:
        """Its index in the bench's bucket: the default model's is the product's own prefix."""
        return "index/" if self.default else f"index-{self.slug}/"


def configs(default_preprocess: str) -> list[ModelConfig]:
    """sscd (default preprocessing), sscd-mobile, random:0, then sscd with each other preprocessing."""
    others = [p for p in SSCD_PREPROCESSINGS if p != default_preprocess]
    return [
        ModelConfig("sscd", "sscd", default_preprocess, default=True),
        ModelConfig("sscd-mobile", "sscd-mobile", default_preprocess),
        ModelConfig("random:0", "random:0", None),
    ] + [ModelConfig(f"sscd/{other.removeprefix('sscd-')}", "sscd", other) for other in others]


def run_configs() -> list[ModelConfig]:
    """The run's models, the default first (its preprocessing: the one `make model` uses)."""
    return configs(SSCD_PREPROCESS)


def build(config: ModelConfig) -> str:
    """Build (or find up to date) the config's artifact with infra/build_model.py; its last output line."""
    command = [sys.executable, str(ROOT / "infra/build_model.py"), "--weights", config.weights]
    command += ["--out", str(config.model_dir), *(["--preprocess", config.preprocess] if config.preprocess else [])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {config.label} failed: {done.stderr.strip()[-1500:]}")
    return (done.stdout.strip().splitlines() or [""])[-1]
