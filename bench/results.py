"""A run's results: the schema bench.run fills (Results, version SCHEMA), written to results.json and read back
typed, and the figures derived from it, defined once here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from pydantic import TypeAdapter

from bench.common import json_default
from bench.metrics import Quality
from bench.models import ModelConfig
from bench.phases.backends import BackendParity
from bench.phases.capacity import Capacity
from bench.phases.coldstart import ColdStarts
from bench.phases.data import DataSummary
from bench.phases.duplicates import DuplicatesResult
from bench.phases.embed_speed import EmbedSpeed
from bench.phases.gist import GistVerdict
from bench.phases.large_ingest import LargeIngest, NoLargeImages
from bench.phases.latency import SyntheticCounts
from bench.phases.machine import MachineInfo
from bench.phases.memory import IndexMemory
from bench.phases.queries import QueriesSummary
from bench.phases.scan import ScanResult
from bench.phases.side_index import SideIndex
from bench.profile import Profile
from bench.searching import LatencySummary
from bench.stack import IndexBuild

#: results.json's version (1, before cf2086b, had no "schema" and is no longer read: such a run is run again)
SCHEMA = 2


@dataclass
class ModelResult:
    """One model of the run: its config, its artifact's build line, and what the phases measured with it."""

    config: ModelConfig
    build: str
    quality: Quality | None = None
    latency: dict[str, LatencySummary] = field(default_factory=dict)  # padded to N = scan_n
    ingest_large: LargeIngest | NoLargeImages | None = None


class Load(TypedDict):
    """What else ran on the machine during the run (bench.run.load_summary)."""

    others_core_s: float
    others_share: float
    steal_core_s: float
    ours_core_s: float
    loadavg_start: list[float]
    loadavg_end: list[float]


@dataclass
class Results:
    """results.json: each phase's result under its name (None: not run, or failed: see errors)."""

    profile: Profile
    machine: MachineInfo | None = None
    started: float = 0.0
    schema: int = SCHEMA
    models: dict[str, ModelResult] = field(default_factory=dict)
    data: DataSummary | None = None
    ingest_index: IndexBuild | None = None
    side_index: SideIndex | None = None
    queries: QueriesSummary | None = None
    quality_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per model, without candidates
    strategies: dict[str, Quality] = field(default_factory=dict)  # issue 27: the partial copies per way of finding
    signals_file: str | None = None
    gist: GistVerdict | None = None
    embed_speed: EmbedSpeed | None = None
    latency: dict[str, LatencySummary] = field(default_factory=dict)  # the default model's passes by name
    latency_keys: dict[str, str] = field(default_factory=dict)  # cold, large, large_warm: which pass is which
    latency_synthetic_in_shortlists: SyntheticCounts | None = None
    scan: ScanResult | None = None
    memory: IndexMemory | None = None
    memory_compacted: IndexMemory | None = None
    coldstart: ColdStarts | None = None
    coldstart_compacted: ColdStarts | None = None
    capacity: Capacity | None = None
    backends: BackendParity | None = None
    duplicates: DuplicatesResult | None = None  # issue 28: copies within the collection
    errors: dict[str, str] = field(default_factory=dict)  # phase -> what it raised
    phases_s: dict[str, float] = field(default_factory=dict)
    phases_cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)
    load: Load | None = None
    wall_s: float = 0.0

    @property
    def quick(self) -> bool:
        """A quick run (smaller N than the goals')."""
        return self.profile.name == "quick"

    @property
    def default_label(self) -> str:
        """The default model's label: the model the goals are judged on."""
        return next((label for label, m in self.models.items() if m.config.default), "")

    @property
    def quality(self) -> Quality | None:
        """The default model's quality."""
        return self.models[self.default_label].quality if self.default_label else None

    @property
    def ingest_large(self) -> LargeIngest | None:
        """The default model's large-JPEG ingest."""
        found = self.models[self.default_label].ingest_large if self.default_label else None
        return found if isinstance(found, LargeIngest) else None

    def latency_pass(self, key: str) -> tuple[str, LatencySummary] | None:
        """The default model's latency pass latency_keys[key] ("cold", "large", "large_warm"): its name and figures."""
        name = self.latency_keys.get(key)
        return (name, self.latency[name]) if name in self.latency else None

    @property
    def coldstart_variants(self) -> dict[str, dict[str, Any]]:
        """Each cold-start variant's median run: search's after the compaction where the run made one."""
        return {k: v for cs in (self.coldstart, self.coldstart_compacted) if cs for k, v in cs.variants.items()}


def save(results: Results, path: Path) -> str:
    """Write results.json; returns what was written."""
    text = json.dumps(dataclasses.asdict(results), indent=1, default=json_default) + "\n"
    path.write_text(text)
    return text


def load(path: Path) -> Results:
    """A results.json, typed."""
    return from_json(json.loads(path.read_text()))


def from_json(data: dict[str, Any]) -> Results:
    """Results from results.json's document (this schema's)."""
    if (version := data.get("schema", 1)) != SCHEMA:
        raise ValueError(f"results.json schema {version}: this bench reads {SCHEMA} (run the bench again)")
    results: Results = TypeAdapter(Results).validate_python(data)  # pydantic: typed field by field, unions by shape
    return results
