"""Ingest Lambda: SQS messages carrying S3 notifications -> pictrace.ingest. Failures are reported per message.
The batch's images are read, decoded and embedded ahead of their turn (pictrace.ingest.read_ahead).

Metrics (Powertools, namespace POWERTOOLS_METRICS_NAMESPACE): one count per outcome, e.g. IngestCreated, IngestFailed.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pictrace.ingest import get_ingestor, handle_s3_notification, read_ahead
from pictrace.snapstart import register

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
register(get_ingestor)  # SnapStart: the model loaded before the snapshot, clients renewed after a restore


def record_handler(record: SQSRecord) -> None:
    """Index (or un-index) every key the S3 notification in this message names."""
    for outcome in handle_s3_notification(record.json_body):
        logger.info("ingest", extra=vars(outcome))  # key, action, id, reason
        metrics.add_metric(name=f"Ingest{outcome.action.capitalize()}", unit="Count", value=1)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with read_ahead(event):
        return dict(process_partial_response(event, record_handler, processor, context))
