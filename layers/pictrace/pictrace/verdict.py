"""Is a result a copy of the query? The fused score's calibration, fitted per model on the benchmark.

For each model, named by its weights and its preprocessing (``sscd/sscd-short256``: both change the embedding),
``calibration.json`` beside this module holds what ``make fit-fusion`` fitted on half of the benchmark's queries
(edited copies of indexed photos, and edited photos whose original is not indexed):

- ``centre``: the embedding every cosine is centred on before it is scored (the mean embedding of the bench's
  indexed collection when it was fitted): the score's reference is the model's, never the index's, so a search
  scores the same against one indexed image as against a million, and on either index backend;
- ``fusion``: the final score's weights (Weights: cosine, gist, ssim, geometry; pictrace.rerank fuses them);
- ``a``, ``b``: a logistic curve from the final score to the probability that the result is a copy,
  ``similarity = 1 / (1 + exp(-(a * final + b)))``, shown as a percentage;
- ``threshold``: the final score from which a result is called a copy (``match``), chosen so that at least 99 %
  of the matches on the fitting queries were copies; ``precision`` and ``recall`` say what it kept there;
- ``region`` (RegionRule; where fitted): when a region of the query makes a result a copy (pictrace.regions), and
  a detail of the result (pictrace.details). A model without one has no region search, and its entries no details.

The verdict holds only for the configuration it was fitted on. Where the running one differs (another model or
preprocessing, or fusion weights set with ``PICTRACE_WEIGHT_*``), ``match`` is null, the similarity is the final
score itself, and ``Scoring.reason`` (shown by ``/health``) says why.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Weights:
    """How much each signal counts in the final score (defaults: fitted by `make fit-fusion`, bench/fusion.json)."""

    cosine: float = 0.3
    gist: float = 0.3
    ssim: float = 0.5
    geometry: float = 0.2

    @property
    def total(self) -> float:
        """The weights' sum: what the final score is divided by."""
        return self.cosine + self.gist + self.ssim + self.geometry


CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
SIGNALS = ("cosine", "gist", "ssim", "geometry")
#: how far a shortlist's cosine may be from the score's, computed from the entry (float rounding, with room to spare)
COSINE_SLACK = 0.01


def model_key(weights: str, preprocess: str) -> str:
    """How calibration.json names a model: its weights and its preprocessing."""
    return f"{weights}/{preprocess}"


@dataclass(frozen=True)
class RegionRule:
    """When a region of the query (pictrace.regions) alone makes a result a copy: its cosine reaches match_cosine,
    or it is verified: its cosine reaches one of `verified`'s cosines with at least that tier's ORB inliers inside
    it; and when a detail of the result (pictrace.details) does: the query's cosine with it reaches detail_cosine
    (0: the model's entries have no details)."""

    match_cosine: float
    verified: tuple[tuple[float, int], ...]  # (cosine, inliers) tiers: a lower cosine needs more inliers
    fitted: str = ""  # on what, and how
    detail_cosine: float = 0.0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RegionRule:
        """The rule as calibration.json writes it (its tiers as [cosine, inliers] pairs)."""
        tiers = tuple((float(c), int(n)) for c, n in row["verified"])
        return cls(float(row["match_cosine"]), tiers, str(row.get("fitted", "")), float(row.get("detail_cosine", 0)))

    def is_copy(self, cosine: float, inliers: int, detail: float = 0.0) -> bool:
        """Whether a region with this cosine and these inliers, or a detail with this cosine, makes its result a
        copy."""
        if cosine >= self.match_cosine or any(cosine >= c and inliers >= n for c, n in self.verified):
            return True
        return self.detail_cosine > 0 and detail >= self.detail_cosine


@dataclass(frozen=True)
class Calibration:
    """What the benchmark fitted for one model (weights and preprocessing)."""

    weights: str
    preprocess: str
    fusion: Weights
    centre: tuple[float, ...]  # the embedding cosines are centred on; () for the plain cosine
    a: float
    b: float
    threshold: float
    precision: float
    recall: float
    fitted: str = ""
    region: RegionRule | None = None

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


@dataclass(frozen=True)
class Scoring:
    """How the running configuration scores and judges a result: the fusion weights in use, the centre of the
    cosine, and the calibration the verdict rests on (None where there is none for this configuration; reason
    says why)."""

    fusion: Weights
    centre: tuple[float, ...] = ()
    calibration: Calibration | None = None
    reason: str = ""

    def verdict(self, final: float) -> Verdict:
        """The similarity (percent) and the copy verdict of a final score."""
        if self.calibration is None:
            return Verdict(round(100 * final, 1), None)
        return Verdict(round(100 * self.calibration.probability(final), 1), self.calibration.is_copy(final))

    @property
    def region(self) -> RegionRule | None:
        """When a region of the query makes a result a copy (None: no region search for this configuration)."""
        return self.calibration.region if self.calibration is not None else None

    def could_be_copy(self, cosine: float, gist: float) -> bool:
        """Whether a result with this cosine (a shortlist's: known within COSINE_SLACK) and gist could be called a
        copy, whatever its other signals (True where nothing is calibrated)."""
        if self.calibration is None:
            return True
        w = self.fusion
        best = w.cosine * max(0.0, cosine + COSINE_SLACK) + w.gist * max(0.0, gist) + w.ssim + w.geometry
        return best / w.total >= self.calibration.threshold


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    if not CALIBRATION_FILE.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(CALIBRATION_FILE.read_text())
    return data


def calibration_for(weights: str, preprocess: str) -> Calibration | None:
    """The calibration fitted for a model, or None if the benchmark has none for it."""
    row = _table().get(model_key(weights, preprocess))
    if row is None:
        return None
    return Calibration(
        weights=weights,
        preprocess=preprocess,
        fusion=Weights(**row["fusion"]),
        centre=tuple(float(x) for x in row.get("centre") or ()),
        a=float(row["a"]),
        b=float(row["b"]),
        threshold=float(row["threshold"]),
        precision=float(row["precision"]),
        recall=float(row["recall"]),
        fitted=str(row.get("fitted", "")),
        region=RegionRule.from_row(row["region"]) if row.get("region") else None,
    )


def scoring_for(weights: str, preprocess: str, overrides: Mapping[str, float] | None = None) -> Scoring:
    """How a model scores: its fitted fusion weights with the overrides (signal -> weight) applied, its centre,
    and its calibration where the overrides leave the fitted weights as they are."""
    fitted = calibration_for(weights, preprocess)
    base = fitted.fusion if fitted is not None else Weights()
    fusion = replace(base, **dict(overrides or {}))
    if fitted is None:
        reason = (
            f"no calibration is fitted for weights {weights!r} with {preprocess} preprocessing "
            f"({CALIBRATION_FILE.name} has {', '.join(sorted(_table())) or 'none'}; `make fit-fusion` fits one)"
        )
        return Scoring(fusion, (), None, reason)
    if fusion != fitted.fusion:
        changed = ", ".join(
            f"{n} {getattr(fusion, n)} (fitted {getattr(fitted.fusion, n)})"
            for n in SIGNALS
            if getattr(fusion, n) != getattr(fitted.fusion, n)
        )
        reason = f"the fusion weights are set (PICTRACE_WEIGHT_*: {changed}): the calibration holds for its own only"
        return Scoring(fusion, fitted.centre, None, reason)
    return Scoring(fusion, fitted.centre, fitted)
