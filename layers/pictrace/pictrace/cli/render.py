"""How results are shown: rich tables and lines on stdout, messages and progress on stderr, or one JSON
document with --json."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pictrace.cli.common import EXIT_OK, NothingFound

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


logger = logging.getLogger(__name__)

_MATCH: dict[bool | None, str] = {True: "[bold green]copy[/]", False: "[dim]not a copy[/]", None: "[dim]–[/]"}


@dataclass
class Output:
    """Where results (stdout) and messages (stderr) go; --json writes one JSON document to stdout instead."""

    json: bool = False
    quiet: bool = False
    out: Console = field(init=False)
    err: Console = field(init=False)

    def __post_init__(self) -> None:
        from rich.console import Console

        # piped into a file or another program: wide enough that tables keep one line per row
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
        self.out = Console(highlight=False, soft_wrap=False, width=width)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

    def document(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.err, disable=self.quiet or self.json, transient=False) as bar:
            yield bar


def print_results(out: Output, body: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("copy?", no_wrap=True)
    table.add_column("similar", justify="right", no_wrap=True)
    for name in ("cosine", "ssim", "orb", "final"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("id", no_wrap=True)
    for rank, hit in enumerate(body.get("results", []), start=1):
        s = hit["scores"]
        keys = hit["keys"]
        key = keys[0] + (f" (+{len(keys) - 1})" if len(keys) > 1 else "") if keys else "?"
        table.add_row(
            str(rank),
            _MATCH.get(hit.get("match"), "?"),
            f"[bold]{hit['similarity']:.1f}%[/bold]",
            f"{s['cosine']:.3f}",
            f"{s['ssim']:.3f}",
            f"{s['orb']:.3f} ({s['orb_matches']})",
            f"{s['final']:.3f}",
            key,
            hit["id"][:12],
        )
    if body.get("results"):
        out.out.print(table)
    q = body.get("query", {})
    if "format" in q:
        described = f"{str(q['format']).upper()} {q.get('width')}×{q.get('height')}, {q.get('bytes')} bytes"
    else:
        described = f"indexed image {str(q.get('id', ''))[:12]}"
    timings = body.get("timings_ms", {})
    stages = " ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "total")
    out.out.print(
        f"query {described} · {body.get('indexed')} indexed · weights {body.get('weights')} ({body.get('backend')})"
        f" · {timings.get('total', 0):.0f} ms ({stages})",
        style="dim",
    )


def print_comparison(out: Output, body: dict[str, Any]) -> None:
    from rich.table import Table

    match = body.get("match")
    verdict = "copy" if match is True else "not a copy" if match is False else "no verdict"
    s = body["scores"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("indexed", f"{', '.join(body['keys'])} ({body['id'][:12]})")
    table.add_row("verdict", f"{verdict} · similarity {body['similarity']:.1f}% · {body.get('explain', '')}")
    table.add_row(
        "scores",
        f"cosine {s['cosine']:.3f} · gist {s['gist']:.3f} · ssim {s['ssim']:.3f} · geometry {s['geometry']:.3f}"
        f" · final {s['final']:.3f}",
    )
    table.add_row("matches", f"{body['inliers']} of {body['matches']} ORB matches agree on one affine transform")
    t = body.get("transform")
    if t:
        table.add_row(
            "transform",
            f"query turned {t['rotation_degrees']:g}° counter-clockwise, scale {t['scale']:.3f}"
            + (", mirrored" if t["mirrored"] else ""),
        )
    inside = body.get("original_region_box") if body.get("inset") else None
    if inside:
        query = body.get("query", {})
        table.add_row(
            "original in the query",
            f"x {inside[0]:.0f}–{inside[2]:.0f}, y {inside[1]:.0f}–{inside[3]:.0f} of {query.get('width')}×"
            f"{query.get('height')}",
        )
    box = body.get("region_box")
    if box:
        indexed = body.get("indexed", {})
        table.add_row(
            "region",
            f"x {box[0]:.0f}–{box[2]:.0f}, y {box[1]:.0f}–{box[3]:.0f} of {indexed.get('width')}×"
            f"{indexed.get('height')}" + ("" if body.get("exact", True) else " (assumes no trimmed border)"),
        )
    else:
        table.add_row("region", "none: the keypoints agree on no transform")
    out.out.print(table)


def finish(out: Output, summary: dict[str, Any], line: str, hint: str = "") -> int:
    failed = summary["failed"]
    if out.json:
        out.document(summary)
    else:
        out.out.print(line, markup=False)
    for f in failed:
        when = " (in an earlier run)" if f.get("earlier") else ""
        sys.stderr.write(f"pictrace: not indexed{when}: {f['key']}: {f['reason']}\n")
    if failed:
        raise NothingFound(f"{len(failed)} image(s) could not be indexed{hint}")
    return EXIT_OK


def print_stats(out: Output, s: dict[str, Any], pending: list[str]) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("bucket", f"s3://{s['bucket']} at {s['s3_endpoint'] or 'AWS'}")
    table.add_row("images", f"{s['objects']} objects under {s['images_prefix']}")
    table.add_row("indexed", f"{s['indexed_images']} distinct images ({s['indexed_keys']} keys)")
    table.add_row("failures", str(len(s["failures"])))
    if s["pending"]:
        table.add_row("pending", f"{s['pending']} not indexed yet (`pictrace ingest s3://{s['bucket']}/` backfills)")
    if s["weights"]:
        table.add_row("weights", f"{s['weights']} ({s['backend']}, model {str(s['model_sha256'])[:12]})")
        table.add_row("api", f"{s['api']} {s['api_status']}, version {s['version']}")
    else:
        table.add_row("weights", f"unknown: the API at {s['api']} is unreachable")
    out.out.print(table)
    for f in s["failures"]:
        out.out.print(f"  [red]failed[/red] {f['key']}: {f['reason']}", highlight=False)
    for key in pending[:10]:
        out.out.print(f"  [yellow]pending[/yellow] {key}", highlight=False)
    if len(pending) > 10:
        out.out.print(f"  … and {len(pending) - 10} more pending")
