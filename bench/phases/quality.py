"""Phase "quality": every query through SearchService.search for one model (bench.worker search, one process per
core), summarised per family and variant (bench.metrics.quality); the partial-copy queries once per way of finding
them (strategies); and the signals file `make fit-fusion` fits on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from bench import metrics, models
from bench.common import ROOT, SIGNALS_DIR, json_default
from bench.searching import QueryCase, SearchRecord
from bench.transforms import FAMILIES, PARTIAL, VARIANTS

#: issue 27's ways of finding a partial copy, each adding to the one before (pictrace.settings): the whole image only;
#: with the query's regions and the candidates' details; with the details shortlist too (the product: its own pass)
STRATEGIES = {"whole image": {"PICTRACE_REGIONS": "false"}, "+ regions": {"PICTRACE_DETAILS_HELD": "0"}}
PRODUCT = "+ details shortlist"


@dataclass(frozen=True)
class ModelQuality:  # one model's quality pass: every record (with its reranked candidates) and the summary
    records: list[SearchRecord]
    summary: metrics.Quality
    model: str  # pictrace.verdict.model_key: the calibration's name for this model
    centre: list[float]  # the reference the cosines were centred on (the model's, else the index's mean)

    def without_hits(self) -> list[dict[str, Any]]:
        """The records as results.json keeps them (without the candidates)."""
        return [{k: v for k, v in r.items() if k != "hits"} for r in self.records]


def parallel_searches(
    cases: list[QueryCase], work: Path, workers: int = 2, env: dict[str, str] | None = None
) -> tuple[list[SearchRecord], dict[str, Any]]:
    """The queries over bench.worker search processes (env added): records in order, the model and centre."""
    procs = []
    for i in range(workers):
        part = work / f"cases-{i}.json"
        part.write_text(json.dumps([asdict(c) for c in cases[i::workers]]))
        command = [sys.executable, "-m", "bench.worker", "search", str(part), str(work / f"records-{i}.json")]
        procs.append(subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}))
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"a search worker failed with exit code {proc.returncode}")
    outputs = [json.loads((work / f"records-{i}.json").read_text()) for i in range(workers)]
    records = [r for row in zip_longest(*(o["records"] for o in outputs)) for r in row if r is not None]  # in order
    return records, {"model": outputs[0]["model"], "centre": outputs[0]["centre"]}


def model_quality(
    config: models.ModelConfig, cases: list[QueryCase], work: Path, env: dict[str, str] | None = None
) -> ModelQuality:
    """The model's quality pass over these queries (env: settings of the search added)."""
    env = {"PICTRACE_MODEL_DIR": str(config.model_dir), "PICTRACE_INDEX_PREFIX": config.index_prefix, **(env or {})}
    records, scoring = parallel_searches(cases, work, env=env)
    summary = metrics.quality(records, FAMILIES, [v.name for v in VARIANTS])
    return ModelQuality(records, summary, scoring["model"], scoring["centre"])


def strategies(
    config: models.ModelConfig, cases: list[QueryCase], records: list[SearchRecord], work: Path
) -> dict[str, metrics.Quality]:
    """The partial-copy queries and their negatives searched once per STRATEGIES, and the product's pass over all
    queries (records) kept to them: each summarised per family."""
    mine = [c for c in cases if c.family in PARTIAL]
    out = {name: model_quality(config, mine, work, env).summary for name, env in STRATEGIES.items()}
    return out | {PRODUCT: metrics.quality([r for r in records if r["family"] in PARTIAL], FAMILIES, [])}


def write_signals(
    signals: dict[str, list[SearchRecord]],
    profile: str,
    commit: str,
    configs: dict[str, Any],
    scorings: dict[str, dict[str, Any]],
) -> Path:
    """Every query's reranked candidates per model, what `make fit-fusion` fits on: build/bench/signals-*.json."""
    from pictrace.settings import Settings

    out = SIGNALS_DIR / f"signals-{profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    created, verify = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), Settings(bucket="bench").verify
    payload = dict(profile=profile, commit=commit, created=created, fields=list(metrics.HIT_FIELDS), verify=verify)
    payload |= dict(models=dict(signals), configs=configs, scorings=scorings)
    out.write_text(json.dumps(payload, default=json_default))
    return out
