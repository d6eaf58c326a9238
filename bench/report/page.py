"""What bench.run prints and docs/benchmarks.md, from the jinja2 templates in templates/: tables.md.j2 (the run's
sections), benchmarks.md.j2 (the page around them), choice.md.j2 (which model to pick)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from bench.common import ROOT
from bench.report import tables
from bench.report.goals import goals, goals_table
from bench.results import Load, Results

FUSION = ROOT / "bench" / "fusion.json"  # the latest `make fit-fusion` report


def _kv(pairs: dict[str, Any], sep: str = ", ", between: str = " ") -> str:
    return sep.join(f"{k}{between}{v}" for k, v in pairs.items())


def _and(items: list[str]) -> str:
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 2 else items)


def steal_sentence(load: Load) -> str:
    """The sentence on the CPU time the hypervisor gave to other guests (with a leading space)."""
    return (
        f" The hypervisor gave {load['steal_core_s']:.0f} core-seconds of this virtual machine's cores to other guests "
        "(steal), which no process here used."
    )


_TEMPLATES = jinja2.FileSystemLoader(Path(__file__).parent / "templates")
ENV = jinja2.Environment(loader=_TEMPLATES, trim_blocks=True, lstrip_blocks=True, autoescape=False)  # Markdown
ENV.filters.update(fmt=format, ms=tables.ms, f3=tables.f3, kv=_kv, squash=lambda s: " ".join(str(s).split()))
ENV.filters["para"] = lambda s: " ".join(str(s).split()) + "\n"  # a block of lines as one paragraph
ENV.filters.update(tick=lambda s: f"`{s}`", andjoin=_and, cell=tables.cell)
ENV.filters["rows"] = lambda s, head, align: tables.table(head, [x.split(" ¦ ") for x in s.splitlines()], align) + "\n"
ENV.tests.update(endswith=str.endswith, startswith=str.startswith)
ENV.globals.update(steal=steal_sentence, goals_table=goals_table, t=tables)


def fusion_report(path: Path = FUSION) -> dict[str, Any]:
    """The latest `make fit-fusion` report ({} when there is none)."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return data if "models" in data else {}


def render_tables(r: Results, fusion: dict[str, Any] | None = None) -> str:
    """Every section the run has: tables (valid Markdown, aligned for a terminal), their notes, and the goals."""
    fusion = fusion or {}
    return ENV.get_template("tables.md.j2").render(r=r, fusion=fusion, goals=goals(r, fusion)).strip() + "\n"


def render_page(r: Results, text: str, fusion: dict[str, Any] | None = None) -> str:
    """docs/benchmarks.md: how to rerun, what is measured, the machine, the run's tables (text)."""
    return ENV.get_template("benchmarks.md.j2").render(r=r, tables=text, fusion=fusion or {})
