"""`python -m bench.run [--quick]`: PicTrace's retrieval quality and speed on real images, with the seed's method as
the baseline, in one run (issue 4). `make bench` / `make bench-quick` run it after their set-up.

Prints the tables, writes bench/results.json, bench/recall_by_family.png and bench/latency_by_stage.png, and
(full runs only) docs/benchmarks.md. What is measured, and how, is described in docs/benchmarks.md.

This module orchestrates: the profile, the order of the phases (bench.phases, one module each, each returning a
typed result), their timing, results.json and the rendering (bench.report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import models, report
from bench.common import ROOT, json_default, record
from bench.layersonly import hidden_env
from bench.phases.build import build_model
from bench.phases.data import Dataset, choose_data
from bench.phases.embed_speed import embed_speed
from bench.phases.gist import gist_verdict
from bench.phases.latency import indexed_latency, padded_latency
from bench.phases.machine import machine
from bench.phases.quality import model_quality, write_signals
from bench.phases.queries import QueryCase, make_queries, query_originals, stratified
from bench.phases.side_index import index_side_models
from bench.profile import FULL, QUICK, Profile
from bench.searching import SearchRecord
from bench.transforms import VARIANTS

log = logging.getLogger("bench")


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) so far of this process (and its finished children) and of the moto server; the
    machine's busy time, and its steal (a virtual machine's cores given by the hypervisor to other guests), apart."""
    import psutil

    from bench.stack import ProcessMotoServer

    me = psutil.Process()
    t = me.cpu_times()
    machine_times = psutil.cpu_times()
    steal = getattr(machine_times, "steal", 0.0)
    busy = sum(machine_times) - machine_times.idle - getattr(machine_times, "iowait", 0.0) - steal
    out = {"bench": t.user + t.system, "children": t.children_user + t.children_system, "machine": busy, "steal": steal}
    for server in ProcessMotoServer.running:
        if server.pid is not None:
            try:
                s = psutil.Process(server.pid).cpu_times()
                out["s3 (moto)"] = s.user + s.system
            except psutil.Error:
                pass
    return out


class Clock:
    """Phase timer and progress printer; also the CPU time each phase took in the bench and in moto's server."""

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

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# --- the run -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick profile (make bench-quick, ~8 min)")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where results.json and the plots go")
    parser.add_argument("--docs", default=str(ROOT / "docs/benchmarks.md"), help="written by full runs")
    parser.add_argument(
        "--from-results", metavar="JSON", help="measure nothing: tables, plots, docs from a results.json"
    )
    args = parser.parse_args(argv)
    if args.from_results:
        return from_results(Path(args.from_results), Path(args.out), Path(args.docs))
    profile = QUICK if args.quick else FULL
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    for name, value in {
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "pictrace-bench",
        "POWERTOOLS_METRICS_NAMESPACE": "PicTraceBench",
        "PICTRACE_MODEL_DIR": str(models.run_configs()[0].model_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("PICTRACE_REFRESH_SECONDS", None)  # the product's default (2 s), as deployed
    os.environ.update(hidden_env())  # fresh processes (cold starts, memory) import only what the layers ship

    signal.signal(signal.SIGTERM, _terminated)  # run the finally blocks (stop moto's server) on `kill`
    clock = Clock()
    started_load = os.getloadavg()
    results: dict[str, Any] = {"profile": asdict(profile), "machine": asdict(machine()), "started": time.time()}
    with tempfile.TemporaryDirectory(prefix="pictrace-bench-") as tmp:
        work = Path(tmp)
        failed = False
        try:
            run(profile, results, clock, work)
        except Exception as exc:  # noqa: BLE001 - report what was measured, then fail
            failed = True
            results.setdefault("errors", {})["run"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            clock.end()
            results["phases_s"] = clock.phases
            results["phases_cpu_s"] = clock.cpu
            results["load"] = load_summary(clock, started_load)
            results["wall_s"] = round(clock.elapsed(), 1)
    # written before anything is rendered: a rendering bug costs a rerun of `--from-results`, not the measurements;
    # rendered from what was written, as `--from-results` renders it
    written = json.dumps(results, indent=1, default=json_default) + "\n"
    (out_dir / "results.json").write_text(written)
    results = json.loads(written)
    text = render(results)
    print()
    print(text)
    plots = report.plots(results, out_dir)
    print(f"\nwrote {out_dir / 'results.json'}" + "".join(f", {p}" for p in plots))
    if profile.name == "full" and not failed:
        Path(args.docs).write_text(report.markdown(results, text))
        print(f"wrote {args.docs}")
    print(f"bench ({profile.name}) took {results['wall_s']:.0f} s")
    return 1 if failed else 0


def from_results(path: Path, out_dir: Path, docs: Path) -> int:
    """Re-render a run's tables, plots and (full runs) docs page from its results.json."""
    results = json.loads(path.read_text())
    text = render(results)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = report.plots(results, out_dir)
    print("wrote " + ", ".join(plots))
    if results["profile"]["name"] == "full" and not results.get("errors"):
        docs.write_text(report.markdown(results, text))
        print(f"wrote {docs}")
    return 0


def render(results: dict[str, Any]) -> str:
    """The tables of a run's results (as results.json holds them), with the latest fit and the goals attached."""
    attach_fusion(results)
    results["goals"] = report.goals(results)
    return report.tables(results)


def attach_fusion(results: dict[str, Any]) -> None:
    """The latest `make fit-fusion` report (bench/fusion.json), shown with the tables."""
    path = ROOT / "bench" / "fusion.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if "models" in data:
            results["fusion"] = data


def load_summary(clock: Clock, started_load: tuple[float, float, float]) -> dict[str, Any]:
    """How much CPU other processes on this machine took while the bench ran (they share its two cores), and how
    much the hypervisor gave to other guests (steal; runs before it was counted apart have none: it was in "others").

    Phase by phase: a child's CPU time is counted when it ends (the moto server's, already counted phase by phase,
    again when the stack stops), so over the whole run our count can exceed the machine's and hide the others'.
    """
    ours = others = steal = 0.0
    for cpu in clock.cpu.values():
        phase_ours = sum(v for k, v in cpu.items() if k not in ("machine", "steal"))
        ours += phase_ours
        others += max(0.0, cpu.get("machine", 0.0) - phase_ours)
        steal += cpu.get("steal", 0.0)
    wall = sum(clock.phases.values())
    cores = os.cpu_count() or 1
    return {
        "others_core_s": round(others, 1),
        "others_share": others / (wall * cores) if wall else 0.0,
        "steal_core_s": round(steal, 1),
        "ours_core_s": round(ours, 1),
        "loadavg_start": started_load,
        "loadavg_end": os.getloadavg(),
    }


def guarded(results: dict[str, Any], key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """results[key] = fn(*args) as results.json holds it; returns the typed result. A failure is recorded under
    results["errors"], returns None, and the run goes on."""
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - one probe failing must not cost the other measurements
        results.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return None
    results[key] = record(value)
    return value


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def run(profile: Profile, results: dict[str, Any], clock: Clock, work: Path) -> None:
    """Every phase, in order; fills results."""
    from pictrace.storage import s3_client

    from bench.stack import start_stack

    configs = models.run_configs()
    clock.phase(f"models: {', '.join(c.label for c in configs)} (build/models; built once, then reused)")
    results["models"] = {}
    for config in configs:
        built = build_model(config)
        results["models"][config.label] = asdict(built)
        print(f"    {config.label}: {built.build}", flush=True)

    clock.phase("data: originals (some held out), distractors (same-domain photos first)")
    data = choose_data(profile)
    results["data"] = dict(data.summary)
    print(
        f"    {len(data.originals)} originals ({len(data.held_out)} held out), {data.summary['photo_distractors']} "
        f"same-domain and {data.summary['distractors']['chosen']} opencv-doc distractors",
        flush=True,
    )

    clock.phase("local stack: moto's S3 + SQS server in its own process")
    stack = start_stack()
    s3_client.cache_clear()
    try:
        dim = run_on_stack(profile, configs, data, stack, results, clock, work)
    finally:
        stack.stop()

    from bench.capacity import capacity

    ns = " and ".join(f"{n:,}" for n in profile.capacity_n)
    clock.phase(f"capacity: segmented index load and scan at N = {ns}, synthetic vectors (fresh processes)")
    guarded(results, "capacity", capacity, list(profile.capacity_n), work, dim)
    failures = results.get("capacity", {}).get("failures")
    if failures:
        results.setdefault("errors", {})["capacity"] = "; ".join(
            f"N = {f['n']:,} {f['dtype']}: {f['error']}" for f in failures
        )

    keras = next(c for c in configs if c.weights.startswith("random:"))
    if not profile.tf_images:
        return
    from bench.phases.backends import backend_parity

    clock.phase(f"Keras vs ONNX Runtime for {keras.label} on {profile.tf_images} originals (fresh process)")
    guarded(results, "backends", backend_parity, keras.model_dir, data.originals[: profile.tf_images])


def run_on_stack(
    profile: Profile,
    configs: list[models.ModelConfig],
    data: Dataset,
    stack: Any,
    results: dict[str, Any],
    clock: Clock,
    work: Path,
) -> int:
    """The phases that need the local stack: index, queries, quality, speed, cold starts, large ingest. Returns the
    default model's embedding width."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.search import SearchService
    from pictrace.settings import Settings

    from bench.phases.coldstart import cold_starts, compacted_cold_starts
    from bench.phases.large_ingest import large_ingest
    from bench.phases.memory import index_memory
    from bench.phases.scan import scan_vs_faiss
    from bench.phases.seed import seed_phase
    from bench.stack import upload_and_index

    default = configs[0]
    clock.phase(
        f"ingest {len(data.files)} images for {default.label}: S3 put -> SQS -> the real ingest handler, 2 workers"
    )
    results["ingest_index"] = upload_and_index(stack, data.files, workers=2)
    print(f"    {results['ingest_index']['images_per_s']:.1f} images/s end to end", flush=True)

    side = configs[1:]
    clock.phase(f"index the same images for {', '.join(c.label for c in side)} (one decode each, 2 processes)")
    results["side_index"] = asdict(index_side_models(side, sorted(data.files), work))

    settings = Settings.from_env(model_dir=str(default.model_dir))
    service = SearchService(settings, embedder=OnnxEmbedder(default.model_dir))
    service.backend.refresh(force=True)
    indexed = set(service.index_store.entry_ids())
    missing = sorted(p.name for p in data.indexed_originals if data.original_ids[p.name] not in indexed)
    results["data"]["indexed"] = len(indexed)
    results["data"]["originals_not_indexed"] = missing
    usable = query_originals(profile, [p for p in data.originals if p.name not in missing], data.held_out)

    n_neg = sum(1 for p in usable if p.name in data.held_out)
    clock.phase(f"make queries: {len(usable)} originals ({n_neg} held out: negatives) x {len(VARIANTS)} variants")
    query_set = make_queries(usable, data.original_ids, work / "queries", data.held_out)
    cases = query_set.cases
    results["queries"] = asdict(query_set.summary)

    default_records = quality_passes(profile, configs, cases, results, clock, work)
    results["gist"] = gist_verdict(default_records, settings.verify, default.weights, default.preprocess or "")

    clock.phase("embedding speed per model: the same decoded originals, one at a time, 2 threads")
    guarded(results, "embed_speed", embed_speed, configs, data.originals[: profile.embed_images])

    loop = asyncio.new_event_loop()
    positives = [c for c in cases if c.positive]
    latency_cases = stratified(positives, profile.latency_per_variant, salt=1)[:: profile.latency_every]
    clock.phase(f"latency: {len(latency_cases)} queries, N = {len(indexed)}, cold feature cache")
    at_n = indexed_latency(service, latency_cases, loop, len(indexed))
    results["latency"] = at_n.latency
    results["latency_keys"] = at_n.keys
    padded_latencies(profile, configs, latency_cases, loop, results, clock, len(indexed))
    loop.close()

    probes = [service.index_store.get_entry(i)[0] for i in sorted(data.original_ids.values())[:5] if i in indexed]

    if profile.seed_asis:
        clock.phase("seed's method: as-is latency (fetch, decode, SSIM + ORB for every image) and precomputed")
        guarded(
            results,
            "seed",
            seed_phase,
            profile,
            service.store,
            data.key_ids,
            positives,
            work,
            default_records,
            clock.phase,
        )

    clock.phase(f"scan vs faiss IndexFlatIP at N = {profile.faiss_n}")
    guarded(results, "scan", scan_vs_faiss, profile, service.store, settings, probes[0], probes)

    clock.phase(f"index memory at N = {profile.scan_n} (fresh process)")
    guarded(results, "memory", index_memory, profile.scan_n)

    query = Path(latency_cases[0].path)
    clock.phase(f"cold start of the search handler x{profile.coldstarts} (fresh processes)")
    guarded(results, "coldstart", cold_starts, profile, query)

    clock.phase("compaction (what the scheduled compact Lambda runs), then the cold starts again")
    guarded(results, "coldstart_compacted", compacted_cold_starts, profile, settings, query)

    clock.phase(f"index memory at N = {profile.scan_n} after the compaction (fresh process)")
    guarded(results, "memory_compacted", index_memory, profile.scan_n)

    for config in configs[:3]:
        clock.phase(f"ingest of {profile.large_images} large JPEGs vs the model alone, {config.label}")
        ingest = guarded(results, "ingest_large", large_ingest, profile, stack, config)
        if ingest is not None:
            results["models"][config.label]["ingest_large"] = results.pop("ingest_large")
    if "ingest_large" in results["models"][default.label]:
        results["ingest_large"] = results["models"][default.label]["ingest_large"]
    return int(probes[0].embedding.shape[0])


def quality_passes(
    profile: Profile,
    configs: list[models.ModelConfig],
    cases: list[QueryCase],
    results: dict[str, Any],
    clock: Clock,
    work: Path,
) -> list[SearchRecord]:
    """Every model's quality pass over the queries; the default model's summary is results["quality"]; the
    records (without their candidates) results["quality_records"]; the candidates go to the signals file.
    Returns the default model's records, candidates included."""
    signals: dict[str, list[SearchRecord]] = {}
    scorings: dict[str, dict[str, Any]] = {}
    records = {}
    for config in configs:
        clock.phase(f"quality, {config.label}: {len(cases)} queries through SearchService (two processes)")
        passed = model_quality(config, cases, work)
        signals[config.label] = passed.records
        scorings[config.label] = {"model": passed.model, "centre": passed.centre}
        summary = passed.summary
        results["models"][config.label]["quality"] = summary
        worst = min(summary["families"].items(), key=lambda kv: kv[1]["recall@1"])
        print(
            f"    R@1 {summary['overall']['recall@1']:.3f} (lowest {worst[0]} {worst[1]['recall@1']:.3f}), "
            f"µAP {summary['micro_ap']:.3f}",
            flush=True,
        )
        records[config.label] = passed.without_hits()
    results["quality"] = results["models"][configs[0].label]["quality"]
    results["quality_records"] = records
    configs_by_label = {label: m["config"] for label, m in results["models"].items()}
    out = write_signals(signals, profile.name, results["machine"]["commit"], configs_by_label, scorings)
    results["signals_file"] = str(out.relative_to(ROOT))
    return signals[configs[0].label]


def padded_latencies(
    profile: Profile,
    configs: list[models.ModelConfig],
    latency_cases: list[QueryCase],
    loop: asyncio.AbstractEventLoop,
    results: dict[str, Any],
    clock: Clock,
    n: int,
) -> None:
    """The latency queries at N = scan_n (n real entries + synthetic rows) for each model (padded_latency): the
    default model's figures join results["latency"], every model's go to its own results."""
    for config in configs:
        side_cases = latency_cases if config.default else latency_cases[:: profile.side_latency_every]
        clock.phase(
            f"latency, {config.label}: {len(side_cases)} queries, N = {profile.scan_n} ({n} real + synthetic), "
            + ("cold then warm" if config.default else "cold")
        )
        padded = guarded(results, "latency_padded", padded_latency, profile, config, side_cases, loop)
        results.pop("latency_padded", None)
        if padded is None:
            continue
        results["models"][config.label]["latency"] = padded.latency
        if config.default:
            results["latency"].update(padded.latency)
            results["latency_keys"].update(padded.keys)
            results["latency_synthetic_in_shortlists"] = asdict(padded.synthetic_in_shortlists)


if __name__ == "__main__":
    sys.exit(main())
