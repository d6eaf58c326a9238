"""Is a result a copy of the query? The fused score's calibration, fitted per model on the benchmark.

For each model (weights name) ``calibration.json`` beside this module holds what ``make fit-fusion`` fitted on
half of the benchmark's queries (edited copies of indexed photos, and edited photos whose original is not
indexed):

- ``fusion``: the final score's weights (Weights: cosine, gist, ssim, geometry; pictrace.rerank fuses them);
- ``a``, ``b``: a logistic curve from the final score to the probability that the result is a copy,
  ``similarity = 1 / (1 + exp(-(a * final + b)))``, shown as a percentage;
- ``threshold``: the final score from which a result is called a copy (``match``), chosen so that at least 99 %
  of the matches on the fitting queries were copies; ``precision`` and ``recall`` say what it kept there.

A model without a calibration (``imagenet``, a weights file) answers ``match: null`` and its similarity is the
final score itself: nothing was measured to say more.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Weights:
    """How much each signal counts in the final score (defaults: fitted by `make fit-fusion`, bench/fusion.json)."""

    cosine: float = 0.3
    gist: float = 0.3
    ssim: float = 0.5
    geometry: float = 0.2


CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Calibration:
    """What the benchmark fitted for one model."""

    weights: str
    fusion: Weights
    a: float
    b: float
    threshold: float
    precision: float
    recall: float
    fitted: str = ""

    def probability(self, final: float) -> float:
        """The probability that a result with this final score is a copy of the query."""
        z = self.a * final + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    def is_copy(self, final: float) -> bool:
        """Whether a result with this final score is called a copy."""
        return final >= self.threshold


@dataclass(frozen=True)
class Verdict:
    """What a result says to a person: a percentage and, where calibrated, copy or not."""

    similarity: float  # 0-100
    match: bool | None


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    if not CALIBRATION_FILE.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(CALIBRATION_FILE.read_text())
    return data


def calibration_for(weights: str) -> Calibration | None:
    """The calibration fitted for a model, or None if the benchmark has none for it."""
    row = _table().get(weights)
    if row is None:
        return None
    return Calibration(
        weights=weights,
        fusion=Weights(**row["fusion"]),
        a=float(row["a"]),
        b=float(row["b"]),
        threshold=float(row["threshold"]),
        precision=float(row["precision"]),
        recall=float(row["recall"]),
        fitted=str(row.get("fitted", "")),
    )


def fusion_for(weights: str) -> Weights:
    """The final score's weights for a model: its fitted ones, else the defaults."""
    calibration = calibration_for(weights)
    return calibration.fusion if calibration is not None else Weights()


def verdict(final: float, calibration: Calibration | None) -> Verdict:
    """The similarity (percent) and the copy verdict of a final score."""
    if calibration is None:
        return Verdict(round(100 * final, 1), None)
    return Verdict(round(100 * calibration.probability(final), 1), calibration.is_copy(final))
