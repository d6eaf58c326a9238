"""Tables (valid Markdown, aligned for a terminal), goals, plots and docs/benchmarks.md from a run's results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGES = ("decode", "embed", "refresh", "scan", "fetch", "rerank")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A pipe table whose columns line up (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if right is None:
        right = [i > 0 for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        padded = [c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join(("-" * (w + 1) + ":") if right[i] else ("-" * (w + 2)) for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def ms(v: float | None) -> str:
    """Milliseconds, readable."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v >= 10_000:
        return f"{v / 1000:.1f} s"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _largest(parts: dict[str, float]) -> str:
    name, value = max(parts.items(), key=lambda kv: kv[1])
    total = sum(v for v in parts.values() if v > 0)
    share = f", {100 * value / total:.0f} %" if total > 0 else ""
    return f"{name} ({ms(value)} ms{share})"


# --- goals ---------------------------------------------------------------------------------------------------------


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 4: target, what was measured, met or not, and when not, the stage that costs most."""
    out: list[dict[str, Any]] = []
    keys = r.get("latency_keys", {})
    lat = r.get("latency", {})
    quick = r.get("profile", {}).get("name") == "quick"
    scope = " (quick run: smaller N than the goal's)" if quick else ""

    def add(goal: str, measured: str, met: bool | None, why: str = "") -> None:
        out.append(
            {"goal": goal + scope if quick and "N =" in goal else goal, "measured": measured, "met": met, "why": why}
        )

    large = lat.get(keys.get("large", ""), {})
    if large:
        p50 = large["total"]["p50"]
        stages = {s: large[s]["p50"] for s in STAGES if s in large}
        add(
            f"search p50 ≤ 300 ms at N = 10,000 ({keys['large']})",
            f"p50 {ms(p50)} ms, p95 {ms(large['total']['p95'])} ms",
            p50 <= 300,
            "" if p50 <= 300 else f"costliest stage: {_largest(stages)}",
        )
    seed = r.get("seed", {})
    cold = lat.get(keys.get("cold", ""), {})
    if seed and cold:
        speedup = seed["latency"]["as_is_p50"] / cold["total"]["p50"]
        ours, theirs = seed["pictrace_on_sample"]["recall@1"], seed["recall"]["recall@1"]
        met = speedup >= 50 and ours >= theirs
        why = []
        if speedup < 50:
            why.append("speed: costliest stage " + _largest({s: cold[s]["p50"] for s in STAGES if s in cold}))
        if ours < theirs:
            why.append(f"recall@1 {ours:.3f} < seed's {theirs:.3f} on the same {seed['recall']['queries']} queries")
        add(
            f"≥ 50× faster than the seed at N = 1,000 with recall@1 ≥ the seed's ({keys['cold']})",
            f"{speedup:.0f}× ({ms(seed['latency']['as_is_p50'])} vs {ms(cold['total']['p50'])} ms); "
            f"recall@1 {ours:.3f} vs seed {theirs:.3f} ({seed['recall']['queries']} queries)",
            met,
            "; ".join(why),
        )
    cs = r.get("coldstart_compacted") or r.get("coldstart", {})
    before = r.get("coldstart", {}) if "coldstart_compacted" in r else {}
    if cs:
        run = cs["median_run"]
        parts = {
            "interpreter start": run["interpreter_ms"],
            "import": run["import_ms"],
            "model load": run["model_ms"],
        }
        stages = run.get("first_stages", {})
        for s in STAGES:
            if s in stages:
                parts[f"first request: {s}"] = stages[s]
        parts["first request: other"] = max(0.0, run["first_request_ms"] - stages.get("total", 0.0))
        total = cs["total_p50"]
        when = " after a compaction" if before else ""
        if before:
            when += f" (before the first compaction: {ms(before['total_p50'])} ms)"
        add(
            "search cold start ≤ 1.0 s (fresh process: import, model load, first request)",
            f"{ms(total)} ms, median of {len(cs['runs'])}{when}",
            total <= 1000,
            "" if total <= 1000 else f"costliest: {_largest(parts)}",
        )
    ing = r.get("ingest_large", {})
    if "ratio" in ing:
        stages = {k: v for k, v in ing["stages_mean_ms"].items() if k != "embed"}
        stages["other (index writes, checks)"] = max(0.0, ing["ingest_mean_ms"] - sum(ing["stages_mean_ms"].values()))
        add(
            "ingest ≥ 0.8× bare model throughput (≥ 12 MP JPEGs)",
            f"{ing['ratio']:.2f}× ({ing['ingest_per_s']:.2f} vs {ing['model_per_s']:.2f} images/s)",
            ing["ratio"] >= 0.8,
            "" if ing["ratio"] >= 0.8 else f"costliest stage besides the model: {_largest(stages)}",
        )
    sc = r.get("scan", {})
    if sc:
        add(
            f"scan ≥ 0.8× faiss flat (N = {sc['n']:,})",
            f"{sc['ratio']:.2f}× (scan {ms(sc['scan_p50_ms'])} ms, faiss {ms(sc['faiss_same_work_p50_ms'])} ms "
            "for the same work)",
            sc["ratio"] >= 0.8,
            "" if sc["ratio"] >= 0.8 else "the scan itself (matrix-vector product + top-k)",
        )
    mem = r.get("memory", {})
    if mem:
        ratio = mem["rss_delta"] / mem["raw_vector_bytes"]
        emb = mem.get("vector_bytes", {}).get("embedding", mem["raw_vector_bytes"])
        held = mem["held_bytes"]
        parts = {k: float(v) for k, v in held.items() if k != "matrix"}
        parts["allocations the refresh left resident"] = float(max(0, mem["rss_delta"] - mem["held_total"]))
        add(
            f"index memory ≤ 1.1× raw vector bytes (N = {mem['n']:,})",
            f"{ratio:.3f}× resident ({mem['rss_delta'] / 2**20:.1f} MiB for {mem['raw_vector_bytes'] / 2**20:.1f} MiB"
            f" of vectors; {mem['rss_delta'] / emb:.3f}× the embeddings alone; the index object holds "
            f"{mem['held_total'] / mem['raw_vector_bytes']:.3f}×)",
            ratio <= 1.1,
            "" if ratio <= 1.1 else f"largest besides the matrix: {_largest_bytes(parts)}",
        )
    q = r.get("quality", {}).get("families", {})
    if q:
        worst = min(q.items(), key=lambda kv: kv[1]["recall@1"])
        failing = [(f, s) for f, s in q.items() if s["recall@1"] < 0.97]
        ordered = sorted(failing, key=lambda fs: fs[1]["recall@1"])
        lost = "; ".join(
            f"{f} {s['recall@1']:.2f} ({100 * (1 - s['shortlist@50']):.0f} % never shortlisted, "
            f"{100 * max(0.0, s['shortlist@50'] - s['recall@1']):.0f} % outranked in the rerank)"
            for f, s in ordered
        )
        add(
            "final recall@1 ≥ 0.97 in every family",
            f"lowest: {worst[0]} {worst[1]['recall@1']:.3f}; {len(q) - len(failing)} of {len(q)} families met",
            not failing,
            lost if failing else "",
        )
    data = r.get("data", {})
    if data:
        n_d = data["distractors"]["chosen"]
        add(
            "data: ≥ 50 real originals, ≥ 500 real distractors",
            f"{data['originals']} originals, {n_d} distractors",
            data["originals"] >= 50 and n_d >= 500,
            "" if data["originals"] >= 50 and n_d >= 500 else ("quick run indexes fewer" if quick else "make samples"),
        )
    return out


def _largest_bytes(parts: dict[str, float]) -> str:
    name, value = max(parts.items(), key=lambda kv: kv[1])
    return f"{name} ({value / 2**20:.1f} MiB)"


# --- tables --------------------------------------------------------------------------------------------------------


def tables(r: dict[str, Any]) -> str:
    """Every result as Markdown sections (headings + aligned pipe tables)."""
    out: list[str] = []
    m = r["machine"]
    p = r["profile"]
    d = r.get("data", {})
    out.append(
        f"## PicTrace bench ({p['name']}) — {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, no GPU; "
        f"Python {m['python']}; commit {m['commit']}; {r.get('wall_s', 0):.0f} s"
    )
    if m.get("uncommitted"):
        out.append(f"Uncommitted changes measured too: {', '.join(m['uncommitted'])}.")
    errors = r.get("errors")
    if errors:
        out.append("**Failed phases** (their tables are missing): " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    load = r.get("load")
    if load:
        out.append(
            f"Machine load: other processes used {load['others_core_s']:.0f} core-seconds while this ran "
            f"({100 * load['others_share']:.0f} % of the machine; load average {load['loadavg_start'][0]:.1f} at the "
            f"start, {load['loadavg_end'][0]:.1f} at the end); the bench itself {load['ours_core_s']:.0f}."
        )
    if d:
        ds = d["distractors"]
        out.append(
            f"Index: {d.get('indexed', d['index_entries'])} entries = {d['originals']} originals "
            f"({', '.join(f'{k} {v}' for k, v in d['originals_by_source'].items())}) + {ds['chosen']} opencv-doc "
            f"distractors ({ds['diagrams_used']} of them Doxygen class diagrams; {ds['diagrams_available']} such "
            f"diagrams available, the rest left out). Queries: {r['queries']['count']} = {r['queries']['originals']} "
            f"originals × {len(r['queries']['variants'])} variants, JPEG."
        )

    q = r.get("quality")
    if q:
        out.append("\n### Quality: copy detection, final ranking vs the shortlist")
        rows = []
        for fam, s in q["families"].items():
            rows.append(_qrow(f"**{fam}**", s))
            for name, vs in q["variants"].items():
                if name.split("/", 1)[0] == fam and len([v for v in q["variants"] if v.startswith(fam + "/")]) > 1:
                    rows.append(_qrow(f"  {name.split('/', 1)[1]}", vs))
        rows.append(_qrow("**all**", q["overall"]))
        out.append(
            table(
                ["family / variant", "queries", "R@1", "R@5", "R@10", "mAP", "cos R@1", "cos R@10", "shortlisted"],
                rows,
            )
        )
        out.append(
            "R@k, mAP: the final ranking (the fused score of the rerank). cos R@k: the original within the top k by "
            "embedding cosine alone. shortlisted: it reached the rerank (top 25 by cosine ∪ top 25 by gist)."
        )

    s = r.get("seed")
    lat = r.get("latency", {})
    keys = r.get("latency_keys", {})
    if s:
        sl = s["latency"]
        cold = lat.get(keys.get("cold", ""), {})
        ours = cold.get("total", {}).get("p50", math.nan)
        out.append(f"\n### Baseline: the seed's method at N = {sl['n']:,} (no shortlist; every image scored)")
        out.append(
            table(
                ["method", "queries", "latency p50 (ms)", "× PicTrace p50"],
                [
                    [
                        "seed as-is (fetch + decode + 256² gray + SSIM + ORB per image)",
                        sl["as_is_queries"],
                        ms(sl["as_is_p50"]),
                        f"{sl['as_is_p50'] / ours:.0f}×",
                    ],
                    [
                        "seed, features precomputed (SSIM + ORB match per image)",
                        sl["precomputed_queries"],
                        ms(sl["precomputed_p50"]),
                        f"{sl['precomputed_p50'] / ours:.0f}×",
                    ],
                    [f"PicTrace ({keys.get('cold')})", cold.get("queries"), ms(ours), "1×"],
                ],
                right=[False, True, True, True],
            )
        )
        rows = [
            ["seed (precomputed, same scores as as-is)", *_recall_cells(s["recall"])],
            ["PicTrace on the same queries", *_recall_cells(s["pictrace_on_sample"])],
        ]
        out.append("")
        out.append(table(["recall on the seed's sample", "queries", "R@1", "R@5", "R@10", "mAP"], rows))
        agree = s["latency"]["agreement"]
        per_variant = len(s["sample"]) // max(1, len(r["queries"]["variants"]))
        out.append(
            f"Sample: {s['recall']['queries']} queries ({per_variant} per variant, stratified over the originals). "
            f"Checks: the precomputed seed ranks like the as-is seed "
            f"({sum(a['same_top10_as_is'] for a in agree)}/{len(agree)} queries, same top 10); the batched SSIM used "
            f"for the sample ranks like scikit-image's ({sum(a['same_top10_batched'] for a in agree)}/{len(agree)}, "
            f"max |Δscore| {max((a['max_abs_score_diff_batched'] or 0) for a in agree):.1e})."
        )
        seed_fam = s.get("recall_by_family", {})
        if seed_fam:
            out.append("")
            out.append(
                table(
                    ["seed R@1 by family", *[f for f in seed_fam if seed_fam[f]["queries"]]],
                    [["R@1", *[seed_fam[f]["recall@1"] for f in seed_fam if seed_fam[f]["queries"]]]],
                )
            )

    if lat:
        out.append("\n### Search latency by stage (ms, p50 / p95)")
        rows = []
        for name, st in lat.items():
            row: list[Any] = [name, st["queries"]]
            for stage in (*STAGES, "total"):
                row.append(f"{ms(st[stage]['p50'])} / {ms(st[stage]['p95'])}" if stage in st else "–")
            rows.append(row)
        out.append(table(["index", "queries", *STAGES, "total"], rows))
        syn = r.get("latency_synthetic_in_shortlists")
        out.append(
            "cold: the feature cache emptied before the query, so every shortlisted entry is fetched from S3; warm: "
            "the same query again right after (its shortlist's entries cached). S3 is moto's server on 127.0.0.1, in "
            "a process of its own. Beyond the real entries, synthetic rows stand in, for the scan"
            + (
                f" (one reached the shortlist in {syn['with_any']} of {syn['searches']} searches; it is skipped at "
                "fetch, having no S3 object)."
                if syn is not None
                else "."
            )
        )

    ing = r.get("ingest_index")
    il = r.get("ingest_large", {})
    if ing or il:
        out.append("\n### Ingest")
        rows = []
        if ing:
            rows.append(
                [
                    f"index build: {ing['images']} images, S3 put → SQS → ingest handler "
                    f"({ing.get('workers', 1)} worker processes)",
                    f"{ing['images_per_s']:.2f} img/s",
                    f"{ing['total_s']:.0f} s",
                ]
            )
        if "ratio" in il:
            mp = [i["mp"] for i in il["images"]]
            rows.append(
                [
                    f"{len(mp)} JPEGs of {min(mp):.1f}–{max(mp):.1f} MP through Ingestor (S3 record → entry)",
                    f"{il['ingest_per_s']:.2f} img/s",
                    f"{ms(il['ingest_mean_ms'])} ms/img",
                ]
            )
            rows.append(
                [
                    "the model alone on the same decoded images",
                    f"{il['model_per_s']:.2f} img/s",
                    f"{ms(il['stages_mean_ms']['embed'])} ms/img",
                ]
            )
            out.append(table(["", "throughput", "time"], rows, right=[False, True, True]))
            out.append("")
            per_stage = il["stages_mean_ms"]
            out.append(
                table(["large-JPEG ingest stage", *per_stage], [["mean ms", *[ms(v) for v in per_stage.values()]]])
            )
        else:
            out.append(table(["", "throughput", "time"], rows, right=[False, True, True]))

    phases = [("entries only", r.get("coldstart")), ("after compaction", r.get("coldstart_compacted"))]
    if any(cs for _, cs in phases):
        out.append("\n### Search Lambda cold start (fresh process, real handler, POST /search with an image)")
        rows = []
        runs = [(label, i, run) for label, cs in phases if cs for i, run in enumerate(cs["runs"], start=1)]
        for label, i, run in runs:
            st = run.get("first_stages", {})
            rows.append(
                [
                    f"{label} #{i}",
                    ms(run["interpreter_ms"]),
                    ms(run["import_ms"]),
                    ms(run["model_ms"]),
                    ms(run["first_request_ms"]),
                    " ".join(f"{k} {ms(st[k])}" for k in STAGES if k in st),
                    ms(run["total_ms"]),
                    ms(run["second_request_ms"]),
                ]
            )
        out.append(
            table(
                [
                    "index / run",
                    "interpreter",
                    "import",
                    "model",
                    "first request",
                    "its stages",
                    "total",
                    "2nd request",
                ],
                rows,
                right=[False, True, True, True, True, False, True, True],
            )
        )
        comp = (r.get("coldstart_compacted") or {}).get("compaction")
        if comp:
            out.append(
                f"entries only: the index as ingest writes it (an object per image; the first refresh reads them all). "
                f"after compaction: one run of pictrace.segments.compact (the scheduled compact function) folded "
                f"{comp.get('folded')} entries into {comp.get('segments')} segment(s) in {comp['seconds']:.1f} s; the "
                "first refresh reads the manifest and the segments."
            )

    sc = r.get("scan")
    mem = r.get("memory")
    be = r.get("backends")
    rows = []
    if sc:
        rows.append(
            [
                f"shortlist scan vs faiss IndexFlatIP, N = {sc['n']:,} ({sc['synthetic']:,} synthetic), k = 50",
                f"search's scan (embedding + gist×8 turns, top 25 each) {ms(sc['scan_p50_ms'])} ms vs faiss "
                f"{ms(sc['faiss_same_work_p50_ms'])} ms → {sc['ratio']:.2f}× faiss speed; cosine top 50 alone "
                f"{ms(sc['cosine_top50_p50_ms'])} ms vs faiss {ms(sc['faiss_top50_p50_ms'])} ms "
                f"({sc['cosine_ratio']:.2f}×, same top 50 in {100 * sc['same_top50']:.0f} %)",
            ]
        )
    if mem:
        rows.append(
            [
                f"index resident memory, N = {mem['n']:,} (fresh process)",
                f"RSS +{mem['rss_delta'] / 2**20:.1f} MiB for {mem['raw_vector_bytes'] / 2**20:.1f} MiB of vectors "
                f"({mem['rss_delta'] / mem['raw_vector_bytes']:.3f}×); index object "
                f"{mem['held_total'] / 2**20:.1f} MiB ({mem['held_total'] / mem['raw_vector_bytes']:.3f}×)",
            ]
        )
    if be:
        rows.append(
            [
                f"TensorFlow vs LiteRT, {be['images']} originals, one at a time",
                f"TF {ms(be['tensorflow_ms'])} ms/img, LiteRT {ms(be['litert_ms'])} ms/img; cosine min "
                f"{be['cosine_min']:.5f}, mean {be['cosine_mean']:.5f}",
            ]
        )
    if rows:
        out.append("\n### Scan, memory, backends")
        out.append(table(["measure", "result"], rows, right=[False, False]))

    cap = r.get("capacity")
    if cap:
        out.append("\n### Capacity (segmented index, synthetic vectors)")
        out.append(capacity_table(cap))

    g = r.get("goals")
    if g:
        out.append("\n### Goals (issue 4)")
        out.append(
            table(
                ["goal", "measured", "status", "where it costs most"],
                [[x["goal"], x["measured"], _status(x["met"]), x["why"] or ""] for x in g],
                right=[False, False, False, False],
            )
        )
    return "\n".join(out)


def capacity_table(c: dict[str, Any]) -> str:
    """The load-and-scan path at N synthetic images (bench.capacity's result): a table, agreement, failures."""
    mb = 1e6
    rows = [
        [
            f"{run['n']:,}",
            run["dtype"],
            run["segments"],
            f"{run['segment_bytes'] / mb:,.0f}",
            run["gets"],
            f"{run['load_s']:.1f}",
            ms(run["scan_p50_ms"]),
            ms(run["masked_scan_ms"]),
            f"{run['matrices_bytes'] / mb:,.0f}",
            f"{run['rss_growth'] / mb:,.0f}",
            f"{run['peak_rss'] / mb:,.0f}",
        ]
        for run in c.get("runs", [])
    ]
    out = []
    if rows:
        out.append(
            table(
                [
                    "N",
                    "stored as",
                    "segments",
                    "segment MB",
                    "GETs at cold load",
                    "cold load s",
                    "scan p50 ms",
                    "masked scan ms",
                    "matrices MB",
                    "RSS growth MB",
                    "peak RSS MB",
                ],
                rows,
                right=[True, False, *[True] * 9],
            )
        )
    agree = c.get("agreement", [])
    if agree:
        out.append(
            "float16 vs float32 segments, same queries (noisy copies of stored rows): "
            + "; ".join(
                f"N = {a['n']:,}: top {a['k']} by cosine {100 * a['cosine_topk']:.2f} % the same ids, whole "
                f"shortlist {100 * a['candidates']:.2f} % ({a['queries']} queries)"
                for a in agree
            )
            + "."
        )
    runs = c.get("runs", [])
    if runs:
        queries = sorted({len(run["scan_ms"]) for run in runs})
        out.append(
            f"Each row a fresh process loading {c.get('segment_rows', 20_000):,}-row segments (embedding 2048-d and "
            "gist 256-d per row) from local files (dropped from the page cache first) through SegmentedView + "
            "EmbeddingIndex.refresh (the search's code); GETs include ranged GETs. Scan: EmbeddingIndex.candidates "
            f"(top {c.get('k', 50)} by centred cosine ∪ top {c.get('k', 50)} by gist over 8 turns), p50 of "
            f"{'/'.join(map(str, queries))} queries after a first one; masked: the same under "
            f"{c.get('mask_prefix', 'images/7/')} (1 % of the rows). RSS growth: after the load and a gc.collect(), "
            "over before; peak RSS: the process's high-water mark (VmHWM; imports included)."
        )
    digests = sorted({run["pictrace_digest"] for run in runs if "pictrace_digest" in run})
    if len(digests) > 1:
        out.append(
            f"Note: the pictrace modules changed between these rows ({len(digests)} versions: "
            + ", ".join(f"{run['n']:,} {run['dtype']} {run.get('pictrace_digest', '?')}" for run in runs)
            + ")."
        )
    for f in c.get("failures", []):
        out.append(f"**Failed**: N = {f['n']:,} {f['dtype']}: {' '.join(str(f['error']).split())}")
    return "\n\n".join(out)


def _and(items: list[str]) -> str:
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 2 else items)


def _status(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT MET")


def _qrow(label: str, s: dict[str, float]) -> list[Any]:
    return [
        label,
        int(s["queries"]),
        s["recall@1"],
        s["recall@5"],
        s["recall@10"],
        s["mAP"],
        s["shortlist@1"],
        s["shortlist@10"],
        s["shortlist@50"],
    ]


def _recall_cells(s: dict[str, float]) -> list[Any]:
    return [int(s["queries"]), s["recall@1"], s["recall@5"], s["recall@10"], s["mAP"]]


# --- plots ---------------------------------------------------------------------------------------------------------


def plots(r: dict[str, Any], out_dir: Path) -> list[str]:
    """recall_by_family.png and latency_by_stage.png; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    q = r.get("quality", {}).get("families", {})
    if q:
        fams = list(q)
        x = list(range(len(fams)))
        fig, ax = plt.subplots(figsize=(13, 4.8))
        series = [
            ("final recall@1", [q[f]["recall@1"] for f in fams]),
            ("final recall@10", [q[f]["recall@10"] for f in fams]),
            ("shortlisted (survives the scan)", [q[f]["shortlist@50"] for f in fams]),
        ]
        seed_fam = r.get("seed", {}).get("recall_by_family", {})
        if seed_fam:
            series.append(
                ("seed's method recall@1 (sample)", [seed_fam.get(f, {}).get("recall@1", math.nan) for f in fams])
            )
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series):
            ax.bar([xi + (i - (len(series) - 1) / 2) * width for xi in x], values, width, label=label)
        ax.axhline(0.97, color="black", linestyle="--", linewidth=0.8, label="goal 0.97")
        ax.set_xticks(x, fams, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("recall")
        ax.set_title(f"Recall per transform family (N = {r['data'].get('indexed')}, {r['queries']['count']} queries)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = out_dir / "recall_by_family.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    lat = r.get("latency", {})
    if lat:
        names = list(lat)
        fig, ax = plt.subplots(figsize=(11, 4.5))
        left = [0.0] * len(names)
        for stage in STAGES:
            values = [lat[n].get(stage, {}).get("p50", 0.0) for n in names]
            ax.barh(names, values, left=left, label=stage)
            left = [a + b for a, b in zip(left, values, strict=True)]
        for i, n in enumerate(names):
            ax.text(left[i] + 3, i, f"total p50 {lat[n]['total']['p50']:.0f} ms", va="center", fontsize=8)
        ax.axvline(300, color="black", linestyle="--", linewidth=0.8, label="goal 300 ms")
        ax.set_xlabel("ms (p50 of each stage)")
        ax.set_title("Search latency by stage")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_xlim(0, max([*left, 300]) * 1.3)
        ax.invert_yaxis()
        fig.tight_layout()
        path = out_dir / "latency_by_stage.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


# --- docs ----------------------------------------------------------------------------------------------------------


def markdown(r: dict[str, Any], text: str) -> str:
    """docs/benchmarks.md: how to rerun, what is measured, the machine, the latest tables."""
    m = r["machine"]
    d = r.get("data", {})
    ds = d.get("distractors", {})
    p = r["profile"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    sample = r.get("seed", {}).get("recall", {}).get("queries", "a few")
    phases = "\n".join(f"- {v:.0f} s: {k}" for k, v in r.get("phases_s", {}).items())
    load = r.get("load", {})
    others = ""
    if load.get("others_core_s") is not None:
        others = f" Other processes on the machine used {load['others_core_s']:.0f} core-seconds during the run " + (
            f"({100 * load['others_share']:.0f} % of its {m['cores']} cores): the timings carry that contention."
            if load["others_share"] >= 0.02
            else "(the machine was otherwise idle)."
        )
    cap = r.get("capacity") or {}
    capacity = ""
    if cap.get("runs") or cap.get("failures"):
        ns = sorted({x["n"] for x in [*cap.get("runs", []), *cap.get("failures", [])]})
        capacity = f"""
**Capacity** (issue 7; `bench/capacity.py`, also `make capacity`). The load-and-scan path of the segmented index
at N = {_and([f"{n:,}" for n in ns])} synthetic images (random unit vectors: a 2048-d embedding and a 256-d
gist per row, one key in one of 100 folders): {cap.get("segment_rows", 20_000):,}-row segments written with
`Segment.to_bytes` as float32 and again as float16 from the same vectors, with a manifest as the compactor writes
it, to local files (the work directory is removed afterwards). Each (N, dtype) runs in a fresh process: the cold
load is `EmbeddingIndex.refresh(force=True)` over `SegmentedView` (the search's code; the GETs it sent are
counted), then `EmbeddingIndex.candidates` on a few queries and once with a folder mask, and the process's RSS
before and after the load and its peak. The store is local files, not S3: they are dropped from the page cache
before each process, so the load time is the reads from the local disk plus the parse, fold and build. float16
against float32: both processes get the same queries (noisy copies of
stored rows, rounded through float16 first) and the share of the same ids in their results is reported.
"""
    return f"""# Benchmarks

`make bench` measures PicTrace's retrieval quality and speed on real images, with the seed's method as the
baseline, in one run (issue 4). This page holds the tables of the latest full run; `make bench` rewrites it.

## Rerun

```bash
make bench         # full run: {r.get("wall_s", 0) / 60:.0f} min on the machine below (limit 15 min)
make bench-quick   # N = 200, 126 queries, 1.5-3 min; does not touch this page
```

Both do their own set-up (virtualenv, model artifact `random:0`, sample images, the bench-only packages of
`bench/requirements.txt`: faiss-cpu, matplotlib, psutil; the full run's capacity phase also needs ~11 GB of free
memory and ~14 GB of disk for N = 1,000,000, and records a failure for what does not fit) and write
`bench/results.json` (every number, and every
query's rank, scores and stage timings), `bench/recall_by_family.png` and `bench/latency_by_stage.png` (not
committed). `python -m bench.run --help` lists the options; the code is `bench/` (`run.py` the phases,
`transforms.py` the queries, `seed.py` the baseline, `metrics.py` the metrics, `report.py` these tables).

## What is measured

**Data** (`make samples` runs `infra/fetch_samples.sh`). *Originals*: {d.get("originals")} real, distinct images,
nothing cropped, tiled or generated: `data/samples/photos` (scikit-image's bundled photos, the photographs of
Debian's mate-backgrounds) and `data/samples/wallpapers` (mate-backgrounds' other raster wallpapers and
gnome-backgrounds' .webp wallpapers, one file per design: colour variants of a design are kept once, transparent
wallpapers are flattened over the gradient the MATE desktop draws under them). *Distractors*: figures and sample
images of Debian's opencv-doc, a seeded random choice of {ds.get("chosen")} of its {ds.get("available")} images.
Its {ds.get("diagrams_available")} Doxygen class/struct diagrams (file names matching
`html_d?_d*_(class|struct)`) are left out — near-identical box drawings that make the index bigger without
making the task harder — except to top the index up to {p["index_size"]:,} when the other
{ds.get("non_diagrams_available")} run out ({ds.get("diagrams_used")} used in this run).

**Quality.** {len(r.get("queries", {}).get("variants", []))} query variants of every original (families and
parameters as issue 4 lists them; `bench/transforms.py`): crop 10/30/50 % of the area (random window, same
aspect); rotation 5° and 15° (same canvas, black corners) and 90°; horizontal flip; downscale ½ and ¼; JPEG
quality 50/20/10; brightness/contrast ×1.3+30 and ×0.6−20; grayscale; Gaussian blur (σ = 0.5 % of the long
side); a text band and a logo; width stretched ×1.5; a 12 % white border; two combined edits (crop 20 % + half
size + JPEG 40; rotate 5° + brighter + text and logo + JPEG 70). Every query is a JPEG file (quality 95 unless
the variant sets one) sent through `SearchService.search` — the code the API runs — against the index that the
real ingest handler built from S3 events (S3 put → SQS → `functions/ingest/app.py`; moto's server stands in for
S3 and SQS, in a process of its own). Metrics: recall@1/5/10 and mAP of the final ranking (the reranked
shortlist; an original outside it counts as not found, AP 0); the embedding cosine's own recall@1/10; and whether
the original reached the rerank at all (the search's shortlist of 50 is the top 25 by embedding cosine and the top
25 by gist correlation), which tells whether it was lost before the rerank or by it.

**Speed.** Search latency per stage (the timings the service returns) at N = {p["index_size"]:,} real entries with
the feature cache cold (emptied before each query: every shortlisted entry is fetched from S3, as in a container
that has not seen those entries), and at N = {p["scan_n"]:,}, cold and then warm (the same query again at once, its
shortlist's entries cached), where synthetic rows (random unit vectors for each vector a row holds: embedding and
gist) stand in for the missing images *in the scan only*: they rarely reach a shortlist (random vectors have a
cosine of ≈ 0 with real ones; the run counts the searches where one did: such a row is skipped at fetch, as it has
no S3 object), and the refresh lists only the real S3 objects, so the cost of listing a real {p["scan_n"]:,}-object
bucket is not in these numbers. Ingest throughput on ≥ 12 MP JPEGs (`data/samples/large`: mate-backgrounds'
5640×3172 Elephants as shipped, gnome-backgrounds' 4096×4096 wallpapers re-encoded as JPEG quality 90; no
upscaling) through the real `Ingestor`, next to the model alone on the same decoded images, and each ingest stage
timed apart. Cold start of the search Lambda's handler in a fresh process (import, model load, first `POST /search`
through Mangum), twice: on the index as ingest writes it (the first refresh reads every entry object), and after
one compaction (`pictrace.segments.compact`, what the scheduled compact function runs: the first refresh reads a
manifest and a few segments); the goal is judged on the second, the deployed steady state. The search's scan
(`EmbeddingIndex.candidates`: top 25 by centred embedding cosine and top 25 by gist correlation over the query's 8
D4 turns) against faiss `IndexFlatIP` doing the same work (one flat index per vector, 1 + 8 queries, k = 25) at N =
{p["faiss_n"]:,}, one query at a time; and the plain cosine top 50 against faiss on the embeddings alone. Resident
memory: RSS growth of a fresh process over the index's first refresh, against the bytes of the vectors it holds (N
× (2048 + 256) × 4: embedding and gist; the ratio to the embeddings alone is shown too).
{capacity}
**Baselines.** The seed's method (`bench/seed.py`): for every indexed image, fetch it from S3, decode it at full
resolution, make both images 256×256 grayscale, scikit-image SSIM and OpenCV ORB (500 features) with
cross-checked Hamming matching (matches / query keypoints), final = (orb + ssim) / 2, no shortlist. Its latency
as-is on a few queries (tens of seconds each) and with every image's features precomputed; its recall on a
stratified sample of the same queries (precomputed features give the same scores; for the sample the SSIMs are
computed in one batch with scikit-image's formula and filter, which a unit test checks against
`structural_similarity`). TensorFlow (Keras) against LiteRT on the same originals: ms per image, and the cosine
between the two backends' embeddings.

**Goals** are shown met or not met, never asserted by a test; for each goal not met the table names the stage
that costs most.

**Caveats.** moto's server on 127.0.0.1 is not S3: the fetch stage (50 presigned GETs, 16 at a time) and the
refresh's listing are the stand-in's speed, not S3's. The machine is shared: the header of the tables gives the
CPU time other processes took during the run, and timings move with it (by tens of ms at the search's p50 between
runs here): compare runs by that line too. The memory probe loads the
index the entries way (one object per image, as before any compaction); after a compaction the refresh reads
segments instead (see docs/scaling.md for that path). The seed's recall comes from a sample ({sample} queries):
read it as a direction, not to the second decimal.

## Machine of the latest run

{m["cpu"]}, {m["cores"]} cores, {m["memory_gb"]} GiB, no GPU; {m["os"]}; Python {m["python"]}; {versions};
commit {m["commit"]}. Wall time {r.get("wall_s", 0):.0f} s (set-up not included).{others} Phases:

{phases}

## Latest results

{text}
"""
