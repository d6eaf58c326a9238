"""Phase "side index": the other models' indexes of the same images (bench.worker index), in worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import models
from bench.common import ROOT


@dataclass(frozen=True)
class SideIndex:  # results.json's "side_index"
    models: list[str]
    entries_written: int
    seconds: float


def index_side_models(configs: list[models.ModelConfig], keys: list[str], work: Path, workers: int = 2) -> SideIndex:
    """The side models' indexes of the same images: `workers` bench.worker index processes over the keys."""
    started = time.perf_counter()
    spec = work / "side-models.json"
    spec.write_text(json.dumps([[str(c.model_dir), c.index_prefix] for c in configs]))
    procs = []
    for i in range(workers):
        part = work / f"side-keys-{i}.json"
        part.write_text(json.dumps(keys[i::workers]))
        command = [sys.executable, "-m", "bench.worker", "index", str(part), str(spec)]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True))
    written = 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a side-model index worker failed with exit code {proc.returncode}")
        written += json.loads(out.strip().splitlines()[-1])["written"]
    return SideIndex([c.label for c in configs], written, time.perf_counter() - started)
