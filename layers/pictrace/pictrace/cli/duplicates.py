"""`pictrace duplicates`: the copy groups through GET /duplicates (a table per group, --json, or --csv with one row
per link), a pair marked not a copy (--dismiss), or every indexed image queued for its copy check (--rebuild)."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from typing import Any

from pictrace.cli.common import (
    EXIT_OK,
    NothingFound,
    Target,
    UsageError,
    api_call,
)
from pictrace.cli.queueing import queue_every_image, report_queued, stack_queue
from pictrace.cli.render import Output
from pictrace.limits import is_entry_id

logger = logging.getLogger(__name__)

PAGE = 500  # groups per GET /duplicates
CSV_COLUMNS = ("group", "a", "a_keys", "b", "b_keys", "similarity", "region", "found", "weak")


def cmd_duplicates(args: argparse.Namespace, target: Target, out: Output) -> int:
    """List the groups, dismiss a pair, or queue every indexed image for its check."""
    if args.dismiss:
        return dismiss(target, out, *args.dismiss)
    if args.rebuild:
        return rebuild(target, out, args.queue, announce=not args.no_events)
    params: dict[str, Any] = {"limit": PAGE, **({"prefix": args.prefix} if args.prefix else {})}
    groups: list[dict[str, Any]] = []
    while True:
        body = api_call(target, "GET", "/duplicates", params=params)
        groups.extend(body["groups"])
        if not body.get("next"):
            break
        params["cursor"] = body["next"]
    if args.csv:
        write_csv(groups)
    elif out.json:
        out.document({"groups": groups, "total": len(groups), "images": sum(len(g["images"]) for g in groups)})
    else:
        print_groups(out, groups)
    if not groups:
        where = f" under {args.prefix}" if args.prefix else ""
        raise NothingFound(f"no copies found{where} (an index built before the check: `pictrace duplicates --rebuild`)")
    return EXIT_OK


def dismiss(target: Target, out: Output, a: str, b: str) -> int:
    """Mark two images (ids) as not copies of each other."""
    if not (is_entry_id(a) and is_entry_id(b)):
        raise UsageError("--dismiss takes two image ids (64 hex characters each)")
    body = api_call(target, "POST", "/duplicates/dismiss", json={"a": a, "b": b})
    if out.json:
        out.document(body)
    else:
        said = "marked" if body.get("dismissed") else "already marked"
        out.out.print(f"{a[:12]} and {b[:12]} {said} not a copy: the pair stays out of the groups", markup=False)
    return EXIT_OK


def rebuild(target: Target, out: Output, queue: str | None, announce: bool = True) -> int:
    """Queue every indexed image for its copy check on the stack's copies queue (the stack checks them in
    parallel; pairs already linked are not announced again, and none is with announce False)."""
    from pictrace.copies import SqsCheckQueue

    sqs = stack_queue(target, queue, "PICTRACE_COPIES_QUEUE_URL", "copies", "CopiesQueueUrl")
    sender = SqsCheckQueue(sqs.url, sqs.client)
    queued = queue_every_image(target, out, lambda ids: sender.enqueue(ids, announce))
    said = "the stack checks them in parallel; `pictrace duplicates` shows the groups as they are found"
    report_queued(out, queued, sqs.url, f"for their copy check on {sqs.url}: {said}")
    return EXIT_OK


def write_csv(groups: list[dict[str, Any]]) -> None:
    """One row per link: its group's number, the two images (ids and keys), the similarity, region, when, and
    whether it is weak (true/false)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for n, group in enumerate(groups, start=1):
        keys = {m["id"]: " ".join(m["keys"]) for m in group["images"]}
        for link in group["links"]:
            region = " ".join(f"{v:g}" for v in link["region"]) if link.get("region") else ""
            a, b, weak = link["a"], link["b"], str(bool(link.get("weak"))).lower()
            writer.writerow((n, a, keys[a], b, keys[b], link["similarity"], region, link["found"], weak))
    sys.stdout.flush()


def print_groups(out: Output, groups: list[dict[str, Any]]) -> None:
    """A table per group: its images oldest first, then its links, most similar first."""
    from rich.table import Table

    for n, group in enumerate(groups, start=1):
        table = Table(title=f"group {n}: {len(group['images'])} images", title_justify="left", show_edge=False)
        table.add_column("id", no_wrap=True)
        table.add_column("indexed", no_wrap=True)
        table.add_column("keys", overflow="fold")
        table.add_column("copy of (similarity)", overflow="fold")
        linked: dict[str, list[str]] = {}
        for link in group["links"]:
            for x, y in ((link["a"], link["b"]), (link["b"], link["a"])):
                weak = ", weak" if link.get("weak") else ""
                linked.setdefault(x, []).append(f"{y[:12]} ({link['similarity']:.1f}%{weak})")
        for m in group["images"]:
            table.add_row(m["id"][:12], m["created"], ", ".join(m["keys"]), ", ".join(linked.get(m["id"], [])))
        out.out.print(table)
    total = sum(len(g["images"]) for g in groups)
    out.out.print(f"{len(groups)} groups, {total} images", style="dim")
