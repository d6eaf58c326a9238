"""Every indexed image's id sent to one of the stack's queues (`duplicates --rebuild`, `details-backfill`): the queue
named, from the environment, or the local stack's own, with an SQS client that reaches it."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from pictrace.cli.common import Target, UsageError, settings_for
from pictrace.cli.render import Output
from pictrace.queues import SqsQueue

MOTO_ACCOUNT = "123456789012"  # the account moto's queues live in (the local stack's)


def stack_queue(target: Target, url: str | None, env: str, name: str, output: str) -> SqsQueue:
    """The queue to send to: url, else the environment's (env), else the local stack's <bucket>-<name> when the
    target's S3 endpoint is on this machine; UsageError naming the stack's output (output) when there is none."""
    url = url or os.environ.get(env) or local_queue(target, name)
    if not url:
        raise UsageError(f"which {name} queue? --queue URL or {env} (the stack's {output} output)")
    from pictrace.storage import aws_region, new_client

    host = urlsplit(url).hostname or ""
    if loopback(host):  # the local stack: moto serves SQS beside S3, and takes any credentials
        creds = {} if os.environ.get("AWS_ACCESS_KEY_ID") else {"aws_access_key_id": "t", "aws_secret_access_key": "t"}
        client = new_client("sqs", region_name=aws_region(), endpoint_url=url.rsplit("/", 2)[0], **creds)
    else:  # https://sqs.<region>.amazonaws.com/<account>/<name>
        region = host.split(".")[1] if host.startswith("sqs.") else None
        client = new_client("sqs", region_name=aws_region(region))
    return SqsQueue(url, client, f"the {name} queue")


def queue_every_image(target: Target, out: Output, send: Callable[[list[str]], int]) -> int:
    """Every indexed image's id through send, a hundred at a time (with a progress bar); how many were sent."""
    from pictrace.index.store import IndexStore

    ids = sorted(IndexStore(target.store(), settings_for(target).index_prefix).entry_ids())
    with out.progress() as bar:
        task = bar.add_task("queueing", total=len(ids), info="")
        for start in range(0, len(ids), 100):
            bar.advance(task, send(ids[start : start + 100]))
    return len(ids)


def report_queued(out: Output, queued: int, url: str, said: str) -> None:
    """What was queued: {"queued", "queue"} with --json, else "<queued> indexed images queued <said>"."""
    if out.json:
        out.document({"queued": queued, "queue": url})
    else:
        out.out.print(f"{queued} indexed images queued {said}", markup=False)


def local_queue(target: Target, name: str) -> str:
    """The local stack's queue <bucket>-<name> (`make run`: moto beside S3), when the target is one; else ''."""
    endpoint = target.s3_endpoint or ""
    if not loopback(urlsplit(endpoint).hostname or ""):
        return ""
    return f"{endpoint.rstrip('/')}/{MOTO_ACCOUNT}/{target.bucket}-{name}"


def loopback(host: str) -> bool:
    """Whether the host is this machine."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
