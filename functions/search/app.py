"""Search Lambda: API Gateway HTTP API -> Mangum -> the pictrace FastAPI app."""

from typing import Any

from aws_lambda_powertools import Logger
from mangum import Mangum
from pictrace.api import create_app
from pictrace.snapstart import register

logger = Logger()
app = create_app()
asgi = Mangum(app, lifespan="off")
register(app.state.service)  # SnapStart: model and index loaded before the snapshot, clients renewed after a restore


@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    return asgi(event, context)
