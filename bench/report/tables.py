"""The tables of a run's results as Markdown pipe tables (tabulate) and how their cells are written; the sections
around them are templates/tables.md.j2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

STAGES = ("decode", "embed", "refresh", "scan", "fetch", "rerank", "regions")


def _none(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def cell(v: Any) -> str:
    """A table cell: floats with 3 decimals below 10, else 1; None and NaN as –; booleans as yes/no."""
    if _none(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return (f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}") if isinstance(v, float) else str(v)


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
