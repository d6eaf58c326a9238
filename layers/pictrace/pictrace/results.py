"""What a search answers: results best first (Hit), with the time each stage took (SearchResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pictrace.rerank import Scores


@dataclass
class Hit:
    """One result."""

    id: str
    keys: tuple[str, ...]
    url: str | None
    scores: Scores
    similarity: float  # percent: the calibrated probability of being a copy (pictrace.verdict)
    rank_cosine: int
    match: bool | None = None  # a copy of the query? None where the model has no calibration


@dataclass
class SearchResult:
    """Results best first, with the time each stage took (ms)."""

    results: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    indexed: int | None = 0  # None: the index lives in S3 Vectors (not counted per search)
