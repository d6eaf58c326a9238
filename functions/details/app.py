"""Details Lambda: SQS messages naming new images' ids (sent by ingest) -> pictrace.detailstage: each image's details
(its windows embedded) written beside its entry, for the search of partial copies. Failures are reported per message.

Metrics (Powertools, namespace POWERTOOLS_METRICS_NAMESPACE): one count per action, e.g. DetailsDetailed, DetailsNone.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pictrace.detailstage import Detailed, details_batch

logger = Logger()
metrics = Metrics()


def report(detailed: Detailed) -> None:
    """Log and count what the stage did for one image."""
    logger.info("details", extra=vars(detailed))  # id, action, ms
    metrics.add_metric(name=f"Details{detailed.action.capitalize()}", unit="Count", value=1)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with details_batch(on_detailed=report) as batch:
        processor = BatchProcessor(event_type=EventType.SQS)
        return dict(process_partial_response(event, batch.handle_record, processor, context))
