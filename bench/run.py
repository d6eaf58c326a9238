"""`python -m bench.run [--quick | --from-results JSON]` (`make bench`, `make bench-quick`): every phase in order
(bench.phases), timed; bench/results.json written first, then the tables, the plots and (full runs only)
docs/benchmarks.md rendered from it (bench.report). docs/benchmarks.md says what is measured and how."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import models, results
from bench.common import ROOT
from bench.layersonly import hidden_env
from bench.phases.data import Dataset, choose_data
from bench.phases.duplicates import SIZES, duplicates
from bench.phases.embed_speed import embed_speed
from bench.phases.gist import gist_verdict
from bench.phases.latency import indexed_latency, padded_latency
from bench.phases.machine import machine
from bench.phases.quality import STRATEGIES, model_quality, strategies, write_signals
from bench.phases.queries import make_queries, query_originals
from bench.phases.side_index import index_side_models
from bench.profile import FULL, QUICK
from bench.report.page import fusion_report, render_page, render_tables
from bench.report.plots import plots
from bench.results import Load, ModelResult, Results
from bench.searching import QueryCase, SearchRecord, stratified
from bench.transforms import VARIANTS

_ENV = "LOG_LEVEL=WARNING POWERTOOLS_LOG_LEVEL=WARNING TF_CPP_MIN_LOG_LEVEL=2 POWERTOOLS_SERVICE_NAME=pictrace-bench"
ENVIRONMENT = dict(kv.split("=") for kv in f"{_ENV} POWERTOOLS_METRICS_NAMESPACE=PicTraceBench".split())


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far: this process, its finished children, moto's server, the machine's busy time and steal."""
    import psutil

    from bench.stack import ProcessMotoServer

    t, machine_times = psutil.Process().cpu_times(), psutil.cpu_times()
    steal = getattr(machine_times, "steal", 0.0)
    busy = sum(machine_times) - machine_times.idle - getattr(machine_times, "iowait", 0.0) - steal
    out = {"bench": t.user + t.system, "children": t.children_user + t.children_system, "machine": busy, "steal": steal}
    for server in ProcessMotoServer.running:
        with contextlib.suppress(psutil.Error):
            out["s3 (moto)"] = server.cpu_seconds()
    return out


class Clock:
    """Phase timer and progress printer, with each phase's CPU time (cpu_seconds)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self.current: tuple[str, float, dict[str, float]] | None = None

    def phase(self, name: str) -> None:
        self.end()
        print(f"[{time.perf_counter() - self.started:6.1f} s] {name}", flush=True)
        self.current = (name, time.perf_counter(), cpu_seconds())

    def end(self) -> None:
        if self.current:
            name, started, cpu = self.current
            self.phases[name] = round(time.perf_counter() - started, 2)
            now = cpu_seconds()
            self.cpu[name] = {k: round(now[k] - cpu.get(k, 0.0), 2) for k in now}
            self.current = None


def load_summary(clock: Clock, started_load: tuple[float, float, float]) -> Load:
    """Other processes' CPU time while the bench ran and the steal, phase by phase (a child's is counted when it
    ends, so over the whole run ours could exceed the machine's and hide the others')."""
    cpus = list(clock.cpu.values())
    ours = [sum(v for k, v in cpu.items() if k not in ("machine", "steal")) for cpu in cpus]
    others = sum(max(0.0, cpu.get("machine", 0.0) - o) for cpu, o in zip(cpus, ours, strict=True))
    wall, steal = sum(clock.phases.values()), sum(cpu.get("steal", 0.0) for cpu in cpus)
    frac = others / (wall * (os.cpu_count() or 1)) if wall else 0.0  # of the cores' time
    o, s, u, start, end = round(others, 1), round(steal, 1), round(sum(ours), 1), started_load, os.getloadavg()
    return Load(
        others_core_s=o, others_share=frac, steal_core_s=s, ours_core_s=u, loadavg_start=[*start], loadavg_end=[*end]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick profile (make bench-quick, ~8 min)")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where results.json and the plots go")
    parser.add_argument("--docs", default=str(ROOT / "docs/benchmarks.md"), help="written by full runs")
    parser.add_argument("--from-results", metavar="JSON", help="measure nothing: tables, plots, docs from it")
    args = parser.parse_args(argv)
    out_dir, docs = Path(args.out), Path(args.docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        return report(results.load(Path(args.from_results)), out_dir, docs)
    profile = QUICK if args.quick else FULL
    for name, value in {**ENVIRONMENT, "PICTRACE_MODEL_DIR": str(models.run_configs()[0].model_dir)}.items():
        os.environ.setdefault(name, value)
    os.environ.pop("PICTRACE_REFRESH_SECONDS", None)  # the product's default (2 s), as deployed
    os.environ.update(hidden_env())  # fresh processes (cold starts, memory) import only what the layers ship
    signal.signal(signal.SIGTERM, _terminated)  # run the finally blocks (stop moto's server) on `kill`
    clock, started_load = Clock(), os.getloadavg()
    r = Results(profile=profile, machine=machine(), started=time.time())
    with tempfile.TemporaryDirectory(prefix="pictrace-bench-") as tmp:
        try:
            run(r, clock, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - report what was measured, then fail
            r.errors["run"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            clock.end()
            r.phases_s, r.phases_cpu_s = clock.phases, clock.cpu
            r.load, r.wall_s = load_summary(clock, started_load), round(time.perf_counter() - clock.started, 1)
    results.save(r, out_dir / "results.json")  # before anything is rendered, which reads it back as --from-results
    print(f"wrote {out_dir / 'results.json'}")
    report(results.load(out_dir / "results.json"), out_dir, docs if not (failed := "run" in r.errors) else None)
    print(f"bench ({profile.name}) took {r.wall_s:.0f} s")
    return 1 if failed else 0


def report(r: Results, out_dir: Path, docs: Path | None) -> int:
    """Print the tables, write the plots and, for a full run that did not fail, docs/benchmarks.md."""
    text = render_tables(r, fusion := fusion_report())
    print(f"\n{text}")
    print("wrote " + ", ".join(plots(r, out_dir)))
    if docs is not None and r.profile.name == "full" and "run" not in r.errors:
        docs.write_text(render_page(r, text, fusion))
        print(f"wrote {docs}")
    return 0


def guarded(r: Results, errors_key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), or None with the failure in r.errors[errors_key] (one phase failing must not cost the others)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        r.errors[errors_key] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return None


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def run(r: Results, clock: Clock, work: Path) -> None:
    """Every phase, in order; fills r."""
    from pictrace.storage import ProcessClients

    from bench.phases.backends import backend_parity
    from bench.phases.capacity import capacity
    from bench.stack import start_stack

    configs, profile = models.run_configs(), r.profile
    clock.phase(f"models: {', '.join(c.label for c in configs)} (build/models; built once, then reused)")
    for config in configs:
        r.models[config.label] = ModelResult(config, models.build(config))
        print(f"    {config.label}: {r.models[config.label].build}", flush=True)
    clock.phase("data: originals (some held out), distractors (same-domain photos first)")
    r.data = (data := choose_data(profile)).summary
    same, other = data.summary["photo_distractors"], data.summary["distractors"]["chosen"]
    print(f"  {len(data.originals)} originals ({len(data.held_out)} held out), {same} same-domain, {other} opencv-doc")
    clock.phase("local stack: moto's S3 + SQS server in its own process")
    stack = start_stack()
    ProcessClients.clear_all()
    try:
        dim = run_on_stack(r, configs, data, stack, clock, work)
    finally:
        stack.stop()
    n, neg, variants = SIZES[profile.name]
    clock.phase(f"duplicates: {n} originals + {neg} held out, {len(variants)} edits each, in one bucket (own stacks)")
    r.duplicates = guarded(r, "duplicates", duplicates, data.originals, data.held_out, work, SIZES[profile.name])
    ns = " and ".join(f"{n:,}" for n in profile.capacity_n)
    clock.phase(f"capacity: segmented index load and scan at N = {ns}, synthetic vectors (fresh processes)")
    r.capacity = guarded(r, "capacity", capacity, list(profile.capacity_n), work, dim)
    if r.capacity and (failures := r.capacity["failures"]):
        r.errors["capacity"] = "; ".join(f"N = {f['n']:,} {f['dtype']}: {f['error']}" for f in failures)
    if profile.tf_images:
        keras = next(c for c in configs if c.weights.startswith("random:"))
        clock.phase(f"Keras vs ONNX Runtime for {keras.label} on {profile.tf_images} originals (fresh process)")
        r.backends = guarded(r, "backends", backend_parity, keras.model_dir, data.originals[: profile.tf_images])


def run_on_stack(
    r: Results, configs: list[models.ModelConfig], data: Dataset, stack: Any, clock: Clock, work: Path
) -> int:
    """The phases on the local stack; returns the default model's embedding width."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.search import SearchService
    from pictrace.settings import Settings

    from bench.phases.coldstart import cold_starts, compacted_cold_starts
    from bench.phases.large_ingest import large_ingest
    from bench.phases.memory import index_memory
    from bench.phases.scan import scan_vs_faiss
    from bench.stack import upload_and_index

    profile, default = r.profile, configs[0]
    clock.phase(
        f"ingest {len(data.files)} images for {default.label}: S3 put -> SQS -> the real ingest handler, 2 workers"
    )
    r.ingest_index = upload_and_index(stack, data.files, workers=2, details_workers=2)  # details: the queries need them
    print(f"    {r.ingest_index['images_per_s']:.1f} images/s end to end", flush=True)
    side = configs[1:]
    clock.phase(f"index the same images for {', '.join(c.label for c in side)} (one decode each, 2 processes)")
    r.side_index = index_side_models(side, sorted(data.files), work)

    settings = Settings.from_env(model_dir=str(default.model_dir))
    service = SearchService(settings, embedder=OnnxEmbedder(default.model_dir))
    service.backend.refresh(force=True)
    indexed = set(service.index_store.entry_ids())
    missing = sorted(p.name for p in data.indexed_originals if data.original_ids[p.name] not in indexed)
    data.summary["indexed"], data.summary["originals_not_indexed"] = len(indexed), missing
    usable = query_originals(profile, [p for p in data.originals if p.name not in missing], data.held_out)
    n_neg = sum(1 for p in usable if p.name in data.held_out)
    clock.phase(f"make queries: {len(usable)} originals ({n_neg} held out: negatives) x {len(VARIANTS)} variants")
    query_set = make_queries(usable, data.original_ids, work / "queries", data.held_out)
    cases, r.queries = query_set.cases, query_set.summary

    default_records = quality_passes(r, configs, cases, clock, work)
    clock.phase(f"partial copies, {default.label}: their queries once per way of finding them ({len(STRATEGIES)} more)")
    r.strategies = guarded(r, "strategies", strategies, default, cases, default_records, work) or {}
    r.gist = gist_verdict(default_records, settings.verify, default.weights, default.preprocess or "")
    clock.phase("embedding speed per model: the same decoded originals, one at a time, 2 threads")
    r.embed_speed = guarded(r, "embed_speed", embed_speed, configs, data.originals[: profile.embed_images])

    loop = asyncio.new_event_loop()
    latency_cases = stratified([c for c in cases if c.positive], profile.latency_per_variant, salt=1)
    latency_cases = latency_cases[:: profile.latency_every]
    clock.phase(f"latency: {len(latency_cases)} queries, N = {len(indexed)}, cold feature cache")
    at_n = indexed_latency(service, latency_cases, loop, len(indexed))
    r.latency, r.latency_keys = dict(at_n.latency), dict(at_n.keys)
    padded_latencies(r, configs, latency_cases, loop, clock, len(indexed))
    loop.close()

    probes = [service.index_store.get_entry(i)[0] for i in sorted(data.original_ids.values())[:5] if i in indexed]
    clock.phase(f"scan vs faiss IndexFlatIP at N = {profile.faiss_n}")
    r.scan = guarded(r, "scan", scan_vs_faiss, profile, service.store, settings, probes[0], probes)
    clock.phase(f"index memory at N = {profile.scan_n} (fresh process)")
    r.memory = guarded(r, "memory", index_memory, profile.scan_n)
    query = Path(latency_cases[0].path)
    clock.phase(f"cold start of the search handler x{profile.coldstarts} (fresh processes)")
    r.coldstart = guarded(r, "coldstart", cold_starts, profile, query)
    clock.phase("compaction (what the scheduled compact Lambda runs), then the cold starts again")
    r.coldstart_compacted = guarded(r, "coldstart_compacted", compacted_cold_starts, profile, settings, query)
    clock.phase(f"index memory at N = {profile.scan_n} after the compaction (fresh process)")
    r.memory_compacted = guarded(r, "memory_compacted", index_memory, profile.scan_n)
    for config in configs[:3]:
        clock.phase(f"ingest of {profile.large_images} large JPEGs vs the model alone, {config.label}")
        r.models[config.label].ingest_large = guarded(r, "ingest_large", large_ingest, profile, stack, config)
    return int(probes[0].embedding.shape[0])


def quality_passes(
    r: Results, configs: list[models.ModelConfig], cases: list[QueryCase], clock: Clock, work: Path
) -> list[SearchRecord]:
    """Every model's quality pass (r; the candidates in `make fit-fusion`'s signals file); the default's records."""
    signals: dict[str, list[SearchRecord]] = {}
    scorings: dict[str, dict[str, Any]] = {}
    for config in configs:
        clock.phase(f"quality, {config.label}: {len(cases)} queries through SearchService (two processes)")
        passed = model_quality(config, cases, work)
        signals[config.label] = passed.records
        scorings[config.label] = {"model": passed.model, "centre": passed.centre}
        r.models[config.label].quality = q = passed.summary
        r.quality_records[config.label] = passed.without_hits()
        (low, s), r1 = q.lowest_family, q.overall["recall@1"]
        print(f"    R@1 {r1:.3f} (lowest {low} {s['recall@1']:.3f}), µAP {q.micro_ap:.3f}", flush=True)
    configs_by_label = {c.label: {**asdict(c), "slug": c.slug} for c in configs}
    commit = r.machine.commit if r.machine else "?"
    r.signals_file = str(write_signals(signals, r.profile.name, commit, configs_by_label, scorings).relative_to(ROOT))
    return signals[configs[0].label]


def padded_latencies(
    r: Results, configs: list[models.ModelConfig], cases: list[QueryCase], loop: Any, clock: Clock, n: int
) -> None:
    """Each model's latency queries at N = scan_n (n real entries + synthetic rows); the default's join r.latency."""
    for config in configs:
        side_cases = cases if config.default else cases[:: r.profile.side_latency_every]
        how = f"N = {r.profile.scan_n} ({n} real + synthetic), " + ("cold then warm" if config.default else "cold")
        clock.phase(f"latency, {config.label}: {len(side_cases)} queries, {how}")
        if (padded := guarded(r, "latency_padded", padded_latency, r.profile, config, side_cases, loop)) is None:
            continue
        r.models[config.label].latency = dict(padded.latency)
        if config.default:
            r.latency.update(padded.latency)
            r.latency_keys.update(padded.keys)
            r.latency_synthetic_in_shortlists = padded.synthetic_in_shortlists


if __name__ == "__main__":
    sys.exit(main())
