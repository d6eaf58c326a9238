"""The tables of a run's results as Markdown pipe tables (tabulate) and how their cells are written; the sections
around them are templates/tables.md.j2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from bench.metrics import Quality
from bench.phases.capacity import Capacity
from bench.phases.large_ingest import LargeIngest
from bench.results import Results

STAGES = ("decode", "embed", "refresh", "scan", "fetch", "rerank")


def _none(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def cell(v: Any) -> str:
    """A table cell: floats with 3 decimals below 10, else 1; None and NaN as –; booleans as yes/no."""
    if _none(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def ms(v: float | None) -> str:
    """Milliseconds, readable."""
    if v is None or _none(v):
        return "–"
    return f"{v / 1000:.1f} s" if v >= 10_000 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def f3(v: float | None, digits: int = 3) -> str:
    """A fraction with its digits, – for none."""
    return "–" if _none(v) else f"{v:.{digits}f}"


def largest(parts: dict[str, float]) -> str:
    """The largest part, in ms and as a share of the positive parts' sum."""
    name, value = max(parts.items(), key=lambda kv: kv[1])
    total = sum(v for v in parts.values() if v > 0)
    return f"{name} ({ms(value)} ms" + (f", {100 * value / total:.0f} %)" if total > 0 else ")")


def table(headers: Sequence[str] | str, rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A pipe table whose columns line up (headers split at "|"; align: l or r per column, default l then r)."""
    headers = headers.split("|") if isinstance(headers, str) else list(headers)
    colalign = ["right" if a == "r" else "left" for a in align or "l" + "r" * (len(headers) - 1)]
    cells = [[cell(v) for v in row] for row in rows]
    return str(tabulate(cells, headers, "pipe", colalign=colalign, disable_numparse=True, preserve_whitespace=True))


def _models(r: Results) -> dict[str, Quality]:
    return {label: m.quality for label, m in r.models.items() if m.quality}


def _lowest(q: Quality) -> str:
    return f"{q.lowest_family[1]['recall@1']:.3f} ({q.lowest_family[0]})"


def _embed(r: Results, label: str, part: str = "ms_p50") -> str:
    speed = r.embed_speed.models.get(label) if r.embed_speed else None
    return ms(getattr(speed, part) if speed else None)


def models_table(r: Results) -> str:
    """The models side by side: quality, µAP, verdict, speed."""
    rows = []
    for label, q in _models(r).items():
        m, v, overall = r.models[label], q.verdict or {}, q.overall
        cold = next((x for k, x in m.latency.items() if k.endswith("cold")), {}).get("total", {}).get("p50")
        ingest = f"{m.ingest_large.ingest_per_s:.2f}" if isinstance(m.ingest_large, LargeIngest) else "–"
        quality = [overall["recall@1"], _lowest(q), overall["recall@10"], overall["mAP"], q.micro_ap]
        verdict = [q.precision_at_recall_90, f3(v.get("precision")), f3(v.get("recall"))]
        rows.append([label, *quality, *verdict, _embed(r, label), ingest, ms(cold)])
    headers = "model|R@1|R@1 lowest family|R@10|mAP|µAP|P@R0.9|verdict P|verdict R|embed ms/img|ingest img/s (≥12 MP)"
    return table(f"{headers}|search p50 ms N=10k", rows)


def family_recall_table(r: Results) -> str:
    """recall@1 per family, one column per model."""
    models = _models(r)
    families = next(iter(models.values())).families
    rows = [[f, *[q.families.get(f, {}).get("recall@1", math.nan) for q in models.values()]] for f in families]
    return table(["family", *models], [*rows, ["**all**", *[q.overall["recall@1"] for q in models.values()]]])


def shortlist_table(r: Results) -> str:
    """Shortlist recall per size: product / cosine alone."""
    models = _models(r)
    sizes = list(next(iter(models.values())).shortlist_sizes)
    rows = [
        [label, *[f"{q.shortlist_sizes[k]['product']:.3f} / {q.shortlist_sizes[k]['cosine_only']:.3f}" for k in sizes]]
        for label, q in models.items()
    ]
    return table(["model", *[f"size {k}" for k in sizes]], rows)


def preprocessing_table(r: Results) -> str:
    """SSCD with each preprocessing ("" when the run had one)."""
    rows = []
    for label, q in _models(r).items():
        if (config := r.models[label].config).weights == "sscd":
            quality = [q.overall["recall@1"], _lowest(q), q.overall["shortlist@1"], q.micro_ap]
            rows.append(
                [f"{label} ({config.preprocess})", *quality, _embed(r, label), _embed(r, label, "preprocess_ms_p50")]
            )
    return table("sscd with|R@1|lowest family|cos R@1|µAP|embed ms/img|of it resize ms", rows) if len(rows) > 1 else ""


def calibration_table(fusion: dict[str, Any]) -> str:
    """The latest fit per model (bench/fusion.json): weights, a and b, threshold, both halves."""
    rows = []
    for label, f in fusion.get("models", {}).items():
        w, held, fit, n = f["weights"], f["report"], f["fit"], f["queries"]["report"]
        fitted = [f"{w['cosine']}/{w['gist']}/{w['ssim']}/{w['geometry']}", f"{f['a']:.1f}, {f['b']:.1f}"]
        verdicts = [f"{f3(x['verdict']['precision'])} / {f3(x['verdict']['recall'])}" for x in (fit, held)]
        other = [held["micro_ap"], held["min_recall@1"], f"{n['positive']} + {n['negative']}"]
        rows.append([label, *fitted, f"{f['threshold']:.4f}", *verdicts, *other])
    headers = "model|weights cos/gist/ssim/geo|a, b|threshold|fit: P / R|other half: P / R|other half µAP"
    return table(f"{headers}|other half min family R@1|other half queries (+ / −)", rows)


def gist_table(r: Results) -> str:
    """The rerank replayed with the fitted weights and with gist's weight at 0."""
    assert r.gist is not None
    g = r.gist
    rows: list[list[Any]] = [[f, v, g["gist0_recall@1"].get(f, math.nan)] for f, v in g["fitted_recall@1"].items()]
    rows.append(["**µAP**", g["fitted_micro_ap"], g["gist0_micro_ap"]])
    return table(["family (R@1)", f"fitted weights (gist {g['fitted']['gist']})", "gist weight 0"], rows)


def quality_table(q: Quality) -> str:
    """The default model per family and variant: final ranking vs the shortlist."""
    keys = ("recall@1", "recall@5", "recall@10", "mAP", "shortlist@1", "shortlist@10", "shortlist@50")
    rows = []
    for family, s in [*q.families.items(), ("all", q.overall)]:
        rows.append([f"**{family}**", int(s["queries"]), *[s[k] for k in keys]])
        mine = {name.split("/", 1)[1]: vs for name, vs in q.variants.items() if name.split("/", 1)[0] == family}
        if len(mine) > 1:
            rows += [[f"  {name}", int(vs["queries"]), *[vs[k] for k in keys]] for name, vs in mine.items()]
    return table("family / variant|queries|R@1|R@5|R@10|mAP|cos R@1|cos R@10|shortlisted", rows)


def latency_table(r: Results) -> str:
    """Search latency by stage, p50 / p95, per index size and feature cache."""
    parts = (*STAGES, "total")
    rows = [
        [name, st["queries"], *[f"{ms(st[s]['p50'])} / {ms(st[s]['p95'])}" if s in st else "–" for s in parts]]
        for name, st in r.latency.items()
    ]
    return table(["index", "queries", *parts], rows)


def ingest_tables(r: Results) -> list[str]:
    """The index build's throughput; the large JPEGs' ingest against the model alone, and their stages."""
    rows: list[list[Any]] = []
    if b := r.ingest_index:
        what = f"index build: {b['images']} images, S3 put → SQS → ingest handler ({b['workers']} worker processes)"
        rows.append([what, f"{b['images_per_s']:.2f} img/s", f"{b['total_s']:.0f} s"])
    if not (il := r.ingest_large):
        return [table("|throughput|time", rows)]
    mp, cpu = [i["mp"] for i in il.images], il.cpu_ms
    ingested = f"{len(mp)} JPEGs of {min(mp):.1f}–{max(mp):.1f} MP through Ingestor (S3 record → entry)"
    rows.append([ingested, f"{il.ingest_per_s:.2f} img/s", f"{ms(il.ingest_mean_ms)} ms/img"])
    alone = ["the model alone on the same decoded images", f"{il.model_per_s:.2f} img/s"]
    rows.append([*alone, f"{ms(1000 / il.model_per_s)} ms/img"])
    cpu_ms = f"{ms(cpu['ingest'])}, {ms(cpu['model'])} ms/img"
    rows.append(["CPU time (this process): ingest, the model alone", "", cpu_ms])
    batches = f"in batches of {il.batch_size}, overlapping (index: its reads and writes)"
    stages = {"large-JPEG ingest stage, one after another": il.stages_mean_ms, batches: il.batch_stages_mean_ms}
    mean_ms = [table([name, *st], [["mean ms", *map(ms, st.values())]]) for name, st in stages.items()]
    return [table("|throughput|time", rows), *mean_ms]


def coldstart_table(r: Results) -> str:
    """Each cold-start variant's median run: init and the first response apart ("–": not a step of its path)."""
    rows = []
    for cs, when in ((r.coldstart, ""), (r.coldstart_compacted, ", compacted")):
        for label, v in (cs.variants if cs else {}).items():
            new, restore, fetch = v["path"] == "new", v["path"] == "restore", v.get("fetch")
            waited = "acquire_wait_ms" in v  # "lambda" fetched: its wait for the exec wrapper's prefetch
            acquire = f"waited {ms(v['acquire_wait_ms'])}" if waited else ms(v.get("acquire_ms")) if new else "–"
            if fetch:
                acquire = f"{ms(v['acquire_modelled_ms'])} ({ms(fetch['download_ms'])})"
            init = [ms(v["model_ms"]) if new else "–", ms(v["index_ms"]) if new else "–"]
            hooks = [ms(v["snapshot_hooks_ms"]) if restore else "–", ms(v["restore_hooks_ms"]) if restore else "–"]
            first = [ms(v["first_ms"]), ms(v["restore_path_ms"] if restore else v["to_first_response_ms"])]
            cpu = ms(v.get("cpu_ms")) + (f" + {ms(v['prefetch_cpu_ms'])}" if "prefetch_cpu_ms" in v else "")
            start = [label + when, ms(v["interpreter_ms"]), ms(v["import_ms"]), acquire]
            rows.append([*start, *init, *hooks, *first, cpu, ms(v.get("second_ms"))])
    headers = "variant|interpreter|import|model acquisition (download as measured)|model load|index load|snapshot hooks"
    more = "restore hooks|first request|to first response / restore path|CPU time at first response|2nd request"
    return table(f"{headers}|{more}", rows)


def capacity_table(c: Capacity) -> str:
    """The load-and-scan path at N synthetic images (the capacity phase), one row per N and dtype."""

    def mb(run: dict[str, Any], *keys: str) -> list[str]:
        return [f"{run[k] / 1e6:,.0f}" for k in keys]

    rows = []
    for run in c["runs"]:
        scans = [run["gets"], f"{run['load_s']:.1f}", ms(run["scan_p50_ms"]), ms(run["masked_scan_ms"])]
        memory = mb(run, "matrices_bytes", "rss_growth", "peak_rss")
        rows.append([f"{run['n']:,}", run["dtype"], run["segments"], *mb(run, "segment_bytes"), *scans, *memory])
    headers = "N|stored as|segments|segment MB|GETs at cold load|cold load s|scan p50 ms|masked scan ms|matrices MB"
    return table(f"{headers}|RSS growth MB|peak RSS MB", rows, "rl" + "r" * 9)


def duplicates_table(r: Results) -> str:
    """The copies phase's pair recall per variant, as groups (GET /duplicates) and as direct links; its totals."""
    assert r.duplicates is not None
    d = r.duplicates
    rows: list[list[Any]] = [[v, s["groups"], s["links"]] for v, s in d["recall_by_variant"].items()]
    for what in ("recall", "precision"):
        rows.append([f"**all pairs: {what}**", d["groups"][what], d["links"][what]])
    return table("variant (pair recall)|groups|direct links", rows)
