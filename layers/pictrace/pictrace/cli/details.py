"""`pictrace details-backfill`: every indexed image queued for its details (an index built before the details
stage), which the stack's DetailsFunction makes in parallel."""

from __future__ import annotations

import argparse

from pictrace.cli.common import EXIT_OK, Target
from pictrace.cli.queueing import queue_every_image, report_queued, stack_queue
from pictrace.cli.render import Output


def cmd_details_backfill(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Queue every indexed image for its details; images that have them already are left as they are."""
    from pictrace.detailstage import DetailsQueue

    sqs = stack_queue(target, args.queue, "PICTRACE_DETAILS_QUEUE_URL", "details", "DetailsQueueUrl")
    queued = queue_every_image(target, out, DetailsQueue(sqs).enqueue)
    said = "the stack makes them in parallel (those that have them already are left as they are)"
    report_queued(out, queued, sqs.url, f"for their details on {sqs.url}: {said}")
    return EXIT_OK
