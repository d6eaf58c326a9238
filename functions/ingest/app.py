"""Ingest Lambda: SQS messages carrying S3 notifications -> pictrace.ingest. Failures are reported per message.
The batch is parsed once and its images are read, decoded and embedded ahead of their turn (IngestBatch).

Metrics (Powertools, namespace POWERTOOLS_METRICS_NAMESPACE): one count per outcome, e.g. IngestCreated, IngestFailed.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pictrace.ingest import Outcome, get_ingestor, ingest_batch
from pictrace.snapstart import register

logger = Logger()
metrics = Metrics()
register(get_ingestor)  # SnapStart: the model loaded before the snapshot, clients renewed after a restore


def report(outcome: Outcome) -> None:
    """Log and count what ingesting one key did."""
    logger.info("ingest", extra=vars(outcome))  # key, action, id, reason
    metrics.add_metric(name=f"Ingest{outcome.action.capitalize()}", unit="Count", value=1)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with ingest_batch(event, on_outcome=report) as batch:  # a processor per batch: it holds the batch's handler
        processor = BatchProcessor(event_type=EventType.SQS)
        return dict(process_partial_response(event, batch.handle_record, processor, context))
