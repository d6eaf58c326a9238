"""`pictrace details-backfill`: every indexed image queued for its details (an index built before the details
stage), which the stack's DetailsFunction makes in parallel."""

from __future__ import annotations

import argparse

from pictrace.cli.common import EXIT_OK, Target
from pictrace.cli.queueing import queue_every_image, stack_queue
from pictrace.cli.render import Output


def cmd_details_backfill(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Queue every indexed image for its details; images that have them already are left as they are."""
    from pictrace.detailstage import DetailsQueue

    sqs = stack_queue(target, args.queue, "PICTRACE_DETAILS_QUEUE_URL", "details", "DetailsQueueUrl")
    queued = queue_every_image(target, out, DetailsQueue(sqs).enqueue)
    if out.json:
        out.document({"queued": queued, "queue": sqs.url})
    else:
        out.out.print(
            f"{queued} indexed images queued for their details on {sqs.url}: the stack makes them in parallel "
            "(those that have them already are left as they are)",
            markup=False,
        )
    return EXIT_OK
