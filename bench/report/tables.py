"""The tables of a run's results as Markdown pipe tables (tabulate) and how their cells are written; the sections
around them are templates/tables.md.j2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from bench.metrics import Quality
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
