"""Phase "cold start": fresh processes running the search Lambda's handler (bench.coldstart: import, model load,
first request), on the index as ingest writes it, then again after one compaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from bench import metrics
from bench.common import child_json
from bench.profile import Profile


class ColdStartRun(TypedDict):
    """bench.coldstart's output (ms, from the moment the parent spawned the process)."""

    interpreter_ms: float
    import_ms: float
    model_ms: float
    first_request_ms: float
    total_ms: float
    second_request_ms: float
    first_stages: dict[str, float]
    second_stages: dict[str, float]


@dataclass(frozen=True)
class ColdStarts:
    """results.json's "coldstart" and "coldstart_compacted" (compaction: what the compaction did, and its time)."""

    runs: list[ColdStartRun]
    total_p50: float
    median_run: ColdStartRun
    compaction: dict[str, Any] | None = field(default=None)

    def record(self) -> dict[str, Any]:
        """results.json's shape: no "compaction" key before a compaction."""
        out: dict[str, Any] = {"runs": self.runs, "total_p50": self.total_p50, "median_run": self.median_run}
        if self.compaction is not None:
            out["compaction"] = self.compaction
        return out


def cold_starts(profile: Profile, query: Path) -> ColdStarts:
    """profile.coldstarts fresh processes, each searching with the query image."""
    runs: list[ColdStartRun] = []
    for _ in range(profile.coldstarts):
        spawned = time.time()
        runs.append(child_json(["bench.coldstart", repr(spawned), str(query)], timeout=300))
    totals = [r["total_ms"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
    return ColdStarts(runs, metrics.percentile(totals, 50), median_run)


def compacted_cold_starts(profile: Profile, settings: Any, query: Path) -> ColdStarts:
    """One compaction of the index (pictrace.index.backend.compact: entries folded into segments and a manifest, as
    the scheduled compact function does), then the same cold starts: the first refresh now reads the segments."""
    from pictrace.index.backend import compact

    started = time.perf_counter()
    outcome = compact(settings)
    seconds = time.perf_counter() - started
    after = cold_starts(profile, query)
    compaction = {"seconds": seconds, **{k: v for k, v in vars(outcome).items() if k != "written"}}
    return ColdStarts(after.runs, after.total_p50, after.median_run, compaction)
