"""Phase "duplicates" (issue 28): originals and their edits in one bucket of a local stack of its own, linked by the
stack's copy check, scored against the truth (same source = copies) as groups and as links, per variant; ingest
throughput with and without the check, Copy Found latency, and a rebuild priced per 100,000 images."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from itertools import combinations
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast
from unittest import mock

import cv2
import numpy as np
from pictrace.copies import CopyLinks, Pair, SqsCheckQueue, pair_of
from pictrace.duplicates import copy_groups
from pictrace.index.layout import Layout
from pictrace.storage import ProcessClients, Store

from bench.phases.data import entry_id
from bench.stack import IndexBuild, start_stack, start_workers, stop_workers, upload_and_index, wait_until_empty
from bench.transforms import VARIANTS, make_query
from infra.local import LocalStack

#: the edits uploaded beside the originals: a spread over the families a collection's copies show
VARIANT_NAMES = tuple(
    "crop/30%|downscale/1/4|jpeg/q20|flip/horizontal|grayscale/luma|overlay/text+logo|border/white 12%|"
    "combined/crop20+half+q40|screenshot/1280x800 window|colour/hue+90 sat x1.5".split("|")
)
LAMBDA_GB_S_USD = 0.0000166667  # Lambda x86 (us-east-1), per GB-second
LAMBDA_REQUEST_USD = 0.20 / 1e6  # per invocation (one per batch of 10 images)
SQS_USD_PER_IMAGE = 0.3 * 0.40 / 1e6  # SendMessageBatch, Lambda's ReceiveMessage, DeleteMessageBatch: 10 images each


CopiesSize = tuple[int, int, tuple[str, ...]]  # indexed originals, held-out ones (edits only), the edits of each
SIZES: dict[str, CopiesSize] = {"full": (30, 8, VARIANT_NAMES), "quick": (10, 3, VARIANT_NAMES[::2])}
Upload = tuple[dict[str, Path], dict[str, str], dict[str, str]]  # each key's file, source and variant


class DuplicatesResult(TypedDict):  # results.json's "duplicates"
    sources: int
    negatives: int
    groups: dict[str, float]  # score(): truth, found, recorded (pairs), recall, precision
    links: dict[str, float]
    recall_by_variant: dict[str, dict[str, float]]  # each variant uploaded, and "original" -> {"groups", "links"}
    wrong_links: list[list[str]]  # the keys of each link between two sources (50 at most)
    missed_pairs: list[list[str]]  # the keys of each truth pair no group holds (50 at most)
    without_check: IndexBuild
    with_check: IndexBuild
    throughput_ratio: float  # ingest's images/s with the check beside it (till its queue empties) over without
    throughput_rounds: NotRequired[list[float]]  # that per round (ABBA: runs 1 and 4, 2 and 3); the ratio: summed
    checked_ratio: float  # images/s until the copies queue was empty too, over ingest's without the check
    latency: dict[str, float]  # Copy Found events: events, pairs, p50_s, p95_s (from the later upload to the arrival)
    checks_dead_lettered: int
    rebuild: dict[str, float]  # rebuild_cost(): `pictrace duplicates --rebuild` at the CopiesFunction's sizing


def group_pairs(groups: Iterable[Iterable[str]]) -> set[Pair]:
    """Every pair of two images (ids) in one group."""
    return {pair_of(a, b) for g in groups for a, b in combinations(sorted(set(g)), 2)}


def truth_pairs(source_of: Mapping[str, str]) -> set[Pair]:
    """Every pair of two images (ids) of the same source."""
    return {pair_of(a, b) for a, b in combinations(sorted(source_of), 2) if source_of[a] == source_of[b]}


def score(found: set[Pair], truth: set[Pair]) -> dict[str, float]:
    """Recall and precision of a relation (precision 1.0 when it holds no pair)."""
    hit, n = len(found & truth), len(found)
    recall, precision = hit / len(truth) if truth else 1.0, hit / n if n else 1.0
    return {"truth": len(truth), "found": hit, "recorded": n, "recall": recall, "precision": precision}


def recall_by_variant(found: set[Pair], truth: set[Pair], variant_of: Mapping[str, str]) -> dict[str, float]:
    """Per variant: of the truth pairs with an image of that variant, the share found."""
    seen: dict[str, list[int]] = {}
    for p in truth:
        for v in {variant_of[p[0]], variant_of[p[1]]}:
            seen.setdefault(v, [0, 0])[p in found] += 1
    return {v: hit / (miss + hit) for v, (miss, hit) in sorted(seen.items())}


def event_latency(events: list[tuple[float, dict[str, Any]]], put_at: Mapping[str, float]) -> dict[str, float]:
    """events: (arrival time, the event's detail); put_at: each id's upload time. A pair's first event counts."""
    first: dict[str, float] = {}
    for arrived, detail in sorted(events, key=lambda e: e[0]):
        first.setdefault(detail["pair"], arrived - max(put_at[detail["id"]], put_at[detail["copy_of"]]))
    p50, p95 = (float(x) for x in np.percentile(list(first.values()) or [float("nan")], [50, 95]))
    return {"events": len(events), "pairs": len(first), "p50_s": p50, "p95_s": p95}


def rebuild_cost(images: int, handler_s: float, memory_mb: int, concurrency: int) -> dict[str, float]:
    """The rebuild of 100,000 images: its price (Lambda, SQS) from its handler time per image, hours at concurrency."""
    per_image = handler_s / max(1, images)
    usd_lambda = 100_000 * (per_image * memory_mb / 1024 * LAMBDA_GB_S_USD + LAMBDA_REQUEST_USD / 10)
    usd, hours = round(usd_lambda + 100_000 * SQS_USD_PER_IMAGE, 4), round(100_000 * per_image / concurrency / 3600, 3)
    out = dict(images=images, handler_ms_per_image=round(per_image * 1000, 2), memory_mb=memory_mb)
    return out | dict(concurrency=concurrency, hours_per_100k=hours, usd_per_100k=usd)


def copies_function_sizing() -> tuple[int, int]:
    """The CopiesFunction's memory (MB) and most concurrent invocations, as template.yaml defaults them."""
    from infra.invoke import load_template

    props = (t := load_template())["Resources"]["CopiesFunction"]["Properties"]
    raw = (props["MemorySize"], props["Events"]["CopyChecks"]["Properties"]["ScalingConfig"]["MaximumConcurrency"])
    memory_mb, most = (int(t["Parameters"][v["Ref"]]["Default"] if isinstance(v, dict) else v) for v in raw)
    return memory_mb, most


def _edits(args: tuple[str, str, tuple[str, ...]]) -> list[tuple[str, Path]]:
    """Worker: the chosen edits of one original as JPEG files; (variant, file) each."""
    path, out_dir, names = args
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    out = []
    for v in (v for v in VARIANTS if v.name in names):
        target = Path(out_dir) / f"{Path(path).stem}-{re.sub(r'[^A-Za-z0-9]+', '_', v.name)}.jpg"
        target.write_bytes(make_query(img, Path(path).name, v))
        out.append((v.name, target))
    return out


def make_upload(originals: list[Path], held_out: set[str], size: CopiesSize, out_dir: Path) -> Upload:
    """The indexed originals and the edits of them and of held-out ones: each key's file, source and variant."""

    spread = lambda items, n: items[:: max(1, len(items) // max(1, n))][:n]  # noqa: E731  # every n-th
    n_originals, n_negatives, variants = size
    indexed = spread([p for p in originals if p.name not in held_out], n_originals)
    sources = sorted([*indexed, *spread([p for p in originals if p.name in held_out], n_negatives)])
    paths = {f"images/originals/{p.name}": p for p in indexed}
    source, variant = {k: p.name for k, p in paths.items()}, dict.fromkeys(paths, "original")
    out_dir.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=2) as pool:
        made = pool.map(_edits, [(str(p), str(out_dir), variants) for p in sources])
        for p, edits in zip(sources, made, strict=True):
            for name, file in edits:
                key = f"images/edits/{file.name}"
                paths[key], source[key], variant[key] = file, p.name, name
    return paths, source, variant


@contextlib.contextmanager
def own_stack(bucket: str, check: bool) -> Iterator[LocalStack]:
    """A local stack of its own, the environment pointing at it meanwhile; without the check, ingest queues nothing."""
    with mock.patch.dict(os.environ):
        stack = start_stack(bucket=bucket)
        ProcessClients.clear_all()
        try:
            if not check:
                os.environ.pop("PICTRACE_COPIES_QUEUE_URL")
            yield stack
        finally:
            stack.stop()


def duplicates(originals: list[Path], held_out: set[str], work: Path, size: CopiesSize) -> DuplicatesResult:
    """The phase, on stacks of its own one after the other: ingest without the check, with it (the run scored), with
    it and without it again (the throughput's order ABBA: a machine slowing down over the phase weighs on both)."""
    paths, source, variant = make_upload(originals, held_out, size, work / "copies")
    files = {k: p.read_bytes() for k, p in paths.items()}
    ids = {k: entry_id(body) for k, body in files.items()}
    put_at: dict[str, float] = {}
    with own_stack("pictrace-copies-off", check=False) as stack:
        without = upload_and_index(stack, files, workers=2)
    with own_stack("pictrace-copies", check=True) as stack:
        stack.log_events()  # read once at the end: no consumer polls moto while the stack works
        with_check = upload_and_index(stack, files, workers=2, copies_workers=1, put_at=put_at)
        sqs, events = stack.client("sqs"), stack.logged_events()
        dlq = sqs.get_queue_attributes(QueueUrl=stack.copies_dlq_url, AttributeNames=["All"])
        layout = Layout(os.environ.get("PICTRACE_INDEX_PREFIX", "index/"))
        links = CopyLinks(Store(stack.bucket, stack.client("s3")), layout).all()
        SqsCheckQueue(stack.copies_url, sqs).enqueue(sorted(set(ids.values())), announce=False)  # the rebuild
        procs = start_workers("copies", stack.copies_url, 1)
        try:
            wait_until_empty(stack, [stack.copies_url], procs, 1200.0)
        finally:
            report = stop_workers(procs)[0]
        rebuild = rebuild_cost(report["processed"], report["handler_s"], *copies_function_sizing())
    with own_stack("pictrace-copies-on-2", check=True) as stack:
        again = upload_and_index(stack, files, workers=2, copies_workers=1)
    with own_stack("pictrace-copies-off-2", check=False) as stack:
        rounds = [(without, with_check), (upload_and_index(stack, files, workers=2), again)]
    ProcessClients.clear_all()
    source_of, variant_of = {ids[k]: s for k, s in source.items()}, {ids[k]: v for k, v in variant.items()}
    truth, linked = truth_pairs(source_of), {pair_of(link.a, link.b) for link in links}
    key_of = {i: k for k, i in ids.items()}
    groups = copy_groups(links, set(), {i: (k,) for i, k in key_of.items()})
    grouped = group_pairs([m.id for m in g.members] for g in groups)
    by_group, by_link = recall_by_variant(grouped, truth, variant_of), recall_by_variant(linked, truth, variant_of)
    out: dict[str, Any] = dict(
        sources=len(set(source_of.values())), negatives=len({s for s in source_of.values() if s in held_out})
    )
    out |= dict(groups=score(grouped, truth), links=score(linked, truth))
    out |= dict(recall_by_variant={v: {"groups": by_group[v], "links": by_link[v]} for v in by_group})
    out |= dict(wrong_links=[sorted((key_of[a], key_of[b])) for a, b in sorted(linked - truth)][:50])
    out |= dict(missed_pairs=[sorted((key_of[a], key_of[b])) for a, b in sorted(truth - grouped)][:50])
    out |= dict(without_check=without, with_check=with_check)
    out |= dict(throughput_rounds=[off["total_s"] / on["total_s"] for off, on in rounds])
    out |= dict(throughput_ratio=sum(off["total_s"] for off, _ in rounds) / sum(on["total_s"] for _, on in rounds))
    out |= dict(checked_ratio=without["total_s"] / with_check.get("checked_s", float("nan")))
    out |= dict(latency=event_latency(events, {ids[k]: t for k, t in put_at.items()}))
    out |= dict(checks_dead_lettered=int(dlq["Attributes"]["ApproximateNumberOfMessages"]), rebuild=rebuild)
    return cast(DuplicatesResult, out)
