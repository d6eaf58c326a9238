"""The run's plots (matplotlib): recall per transform family and search latency by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report.tables import STAGES
from bench.results import Results


def plots(r: Results, out_dir: Path) -> list[str]:
    """recall_by_family.png and latency_by_stage.png (where the run has their figures); the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if (q := r.quality) and r.data and r.queries:
        fams, width = list(q.families), 0.8 / 3
        series = {"final recall@1": "recall@1", "final recall@10": "recall@10"}
        series["shortlisted (survives the scan)"] = "shortlist@50"
        fig, ax = plt.subplots(figsize=(13, 4.8))
        for i, (label, key) in enumerate(series.items()):
            values = [q.families[f][key] for f in fams]
            ax.bar([x + (i - 1) * width for x in range(len(fams))], values, width, label=label)
        ax.axhline(0.97, color="black", linestyle="--", linewidth=0.8, label="goal 0.97")
        ax.set_xticks(range(len(fams)), fams, rotation=30, ha="right")
        ax.set(ylim=(0, 1.05), ylabel="recall")
        ax.set_title(f"Recall per transform family (N = {r.data.get('indexed')}, {r.queries.count} queries)")
        written.append(_save(fig, ax, out_dir / "recall_by_family.png"))
    if lat := r.latency:
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
        ax.set_xlim(0, max([*left, 300]) * 1.3)
        ax.invert_yaxis()
        written.append(_save(fig, ax, out_dir / "latency_by_stage.png"))
    return written


def _save(fig: Any, ax: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
