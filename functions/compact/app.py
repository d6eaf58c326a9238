"""Compact Lambda: on a schedule, folds the entries changed since the last run into a segment of the index and merges
small segments (pictrace.index.compaction); the manifest is replaced by a conditional write, so runs may overlap.

Metrics (Powertools, namespace POWERTOOLS_METRICS_NAMESPACE): CompactionFolded, CompactionSegments.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pictrace.wiring import compact

logger = Logger()
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = compact()
    logger.info("compaction", extra=vars(result))  # folded, deleted, segments, merged, written, attempts
    metrics.add_metric(name="CompactionFolded", unit=MetricUnit.Count, value=result.folded)
    metrics.add_metric(name="CompactionSegments", unit=MetricUnit.Count, value=result.segments)
    return {"folded": result.folded, "segments": result.segments, "merged": result.merged}
