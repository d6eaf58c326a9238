"""Copies Lambda: SQS messages naming new images' ids (sent by ingest) -> pictrace.copycheck: each image searched
against the index, its copies recorded and announced on EventBridge. Failures are reported per message.

Metrics (Powertools, namespace POWERTOOLS_METRICS_NAMESPACE): CopiesChecked, CopiesFound, CopiesAnnounced.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pictrace.copycheck import Checked, copy_batch

logger = Logger()
metrics = Metrics()


def report(checked: Checked) -> None:
    """Log and count what checking one image did."""
    logger.info("copies", extra=vars(checked))  # id, action, copies, announced, ms
    metrics.add_metric(name="CopiesChecked", unit="Count", value=1)
    metrics.add_metric(name="CopiesFound", unit="Count", value=len(checked.copies))
    metrics.add_metric(name="CopiesAnnounced", unit="Count", value=len(checked.announced))


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with copy_batch(on_checked=report) as batch:  # settled once its checks are done
        processor = BatchProcessor(event_type=EventType.SQS)
        return dict(process_partial_response(event, batch.handle_record, processor, context))
