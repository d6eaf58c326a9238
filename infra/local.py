"""The local stack: moto's S3+SQS+EventBridge server over real HTTP, the real ingest, details and copies handlers
fed from SQS, the real search app. Copy Found events go to the stack's bus, whose rule delivers them to a queue
(events_url).

`python -m infra.local run` (what `make run` does): start it all, index the sample photos, serve on 127.0.0.1:8000.
Tests use the same pieces (LocalStack, SqsWorker, load_handler) so local runs and tests share one code path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from infra.motoserver import moto_server

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("pictrace.local")
ACCOUNT = "123456789012"  # moto's account
EVENTS_RULE, QUEUE_TARGET = "copies", "queue"  # the bus's rule for PicTrace's events, and its target the events queue


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_handler(
    path: str | Path, name: str = "lambda_handler", fresh: bool = False
) -> Callable[[dict[str, Any], Any], Any]:
    """Import a Lambda handler module from its file (each under its own module name) and return the function.

    fresh=True imports it anew, as a new Lambda container would (module-level state rebuilt from the environment).
    """
    path = Path(path).resolve()
    module_name = "lambda_" + path.parent.name + "_" + path.stem
    module = None if fresh else sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, name)
    return handler


def load_module(path: str | Path) -> ModuleType:
    """The module a handler file defines (imported once)."""
    load_handler(path)
    p = Path(path).resolve()
    return sys.modules["lambda_" + p.parent.name + "_" + p.stem]


@dataclass
class LambdaContext:
    """Enough of Lambda's context object for Powertools and the handlers."""

    function_name: str = "local"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:local"
    timeout_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


class LocalStack:
    """moto's server on 127.0.0.1 with the bucket, the queue, its DLQ and the S3 -> SQS notification; the copies and
    details queues (each with its DLQ) ingest sends new ids to, and the event bus with a rule sending every PicTrace
    event to a queue (events_url), as a user's rule would route them."""

    def __init__(
        self,
        bucket: str = "pictrace-local",
        port: int | None = None,
        max_receive_count: int = 3,
        images_prefix: str = "images/",
        visibility_timeout: int = 30,
    ) -> None:
        self.bucket = bucket
        self.port = port or free_port()
        self.max_receive_count = max_receive_count
        self.images_prefix = images_prefix
        self.visibility_timeout = visibility_timeout
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self.queue_url = ""
        self.dlq_url = ""
        self.copies_url = ""
        self.copies_dlq_url = ""
        self.details_url = ""
        self.details_dlq_url = ""
        self.events_url = ""
        self.bus = f"{bucket}-bus"

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and PicTrace) at this stack."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.endpoint,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "PICTRACE_BUCKET": self.bucket,
            "PICTRACE_IMAGES_PREFIX": self.images_prefix,
            **(
                {"PICTRACE_COPIES_QUEUE_URL": self.copies_url, "PICTRACE_EVENT_BUS": self.bus}
                if self.copies_url
                else {}
            ),
            **({"PICTRACE_DETAILS_QUEUE_URL": self.details_url} if self.details_url else {}),
        }

    def start(self) -> LocalStack:
        """Start the server and create the resources; sets this process's environment to use them."""
        self._server = moto_server("127.0.0.1", self.port)
        self._server.start()
        os.environ.update(self.env())
        s3, sqs = self.client("s3"), self.client("sqs")
        s3.create_bucket(Bucket=self.bucket)
        self.dlq_url = sqs.create_queue(QueueName=f"{self.bucket}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName=f"{self.bucket}-events",
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.images_prefix}]}},
                    }
                ]
            },
        )
        self._copies(sqs)
        os.environ.update(self.env())
        return self

    def _queue_with_dlq(self, sqs: Any, name: str) -> tuple[str, str]:
        """A queue of the stack's and its DLQ (the queue's redrive policy): their URLs."""
        dlq_url = sqs.create_queue(QueueName=f"{self.bucket}-{name}-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": self.arn(dlq_url), "maxReceiveCount": self.max_receive_count}
        attributes = {"VisibilityTimeout": str(self.visibility_timeout), "RedrivePolicy": json.dumps(redrive)}
        return sqs.create_queue(QueueName=f"{self.bucket}-{name}", Attributes=attributes)["QueueUrl"], dlq_url

    def _copies(self, sqs: Any) -> None:
        """The copies and details queues and their DLQs, the bus, and its rule delivering PicTrace's events to the
        events queue."""
        self.copies_url, self.copies_dlq_url = self._queue_with_dlq(sqs, "copies")
        self.details_url, self.details_dlq_url = self._queue_with_dlq(sqs, "details")
        self.events_url = sqs.create_queue(QueueName=f"{self.bucket}-copy-events")["QueueUrl"]
        events = self.client("events")
        events.create_event_bus(Name=self.bus)
        events.put_rule(Name=EVENTS_RULE, EventBusName=self.bus, EventPattern=json.dumps({"source": ["pictrace"]}))
        target = {"Id": QUEUE_TARGET, "Arn": self.arn(self.events_url)}
        events.put_targets(Rule=EVENTS_RULE, EventBusName=self.bus, Targets=[target])

    def log_events(self) -> None:
        """Deliver the bus's events to a CloudWatch Logs group of the stack's instead of the events queue, to be read
        once with logged_events (nothing polls while they arrive)."""
        self.client("logs").create_log_group(logGroupName=self.events_log)
        events = self.client("events")
        events.remove_targets(Rule=EVENTS_RULE, EventBusName=self.bus, Ids=[QUEUE_TARGET])
        target = {"Id": "log", "Arn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{self.events_log}"}
        events.put_targets(Rule=EVENTS_RULE, EventBusName=self.bus, Targets=[target])

    def logged_events(self) -> list[tuple[float, dict[str, Any]]]:
        """The events delivered to the stack's log group (log_events): each one's delivery time (epoch seconds) and
        detail."""
        pages = self.client("logs").get_paginator("filter_log_events").paginate(logGroupName=self.events_log)
        return [(e["timestamp"] / 1000, json.loads(e["message"])["detail"]) for p in pages for e in p["events"]]

    @property
    def events_log(self) -> str:
        """The log group log_events delivers to."""
        return f"{self.bucket}-copy-events"

    def refs(self) -> dict[str, str]:
        """What this stack has for the template's queues and bus: logical id -> its Ref."""
        return {"CopiesQueue": self.copies_url, "DetailsQueue": self.details_url, "CopyEventBus": self.bus}

    def arn(self, queue_url: str) -> str:
        """A queue's ARN."""
        sqs = self.client("sqs")
        return str(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    def client(self, service: str) -> Any:
        """A boto3 client for this stack."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class SqsWorker:
    """Plays Lambda's SQS event source mapping: receive a batch, call the handler, delete what succeeded. queue_url:
    the queue it polls (default: the stack's image events, for the ingest handler)."""

    def __init__(
        self,
        stack: LocalStack,
        handler: Callable[[dict[str, Any], Any], Any],
        batch_size: int = 10,
        wait_seconds: int = 1,
        queue_url: str | None = None,
        function_name: str = "IngestFunction",
    ) -> None:
        self.stack = stack
        self.handler = handler
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.queue_url = queue_url or stack.queue_url
        self.function_name = function_name
        self.sqs = stack.client("sqs")
        self.arn = stack.arn(self.queue_url)
        self.processed = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """Receive one batch and hand it to the handler; returns how many messages were received."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [self._record(m) for m in messages]}
        try:
            result = self.handler(event, LambdaContext(function_name=self.function_name))
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        except Exception:  # the whole batch failed (Powertools raises when every record failed)
            logger.exception("%s batch of %d failed", self.function_name, len(messages))
            failed = {m["MessageId"] for m in messages}
        for m in messages:
            if m["MessageId"] in failed:
                self.failed += 1
                # make it visible again now rather than after the visibility timeout (what a retry would see)
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        done = [
            {"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]}
            for m in messages
            if m["MessageId"] not in failed
        ]
        if done:  # in one call, as Lambda's poller deletes a batch (a receive gives at most 10)
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)
        self.processed += len(done)
        return len(messages)

    def _record(self, m: dict[str, Any]) -> dict[str, Any]:
        return lambda_record(m, self.arn)

    def drain(self, timeout: float = 120.0) -> None:
        """Process messages until the queue stays empty (or timeout)."""
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 2:
            idle = idle + 1 if self.poll_once() == 0 else 0

    def start(self) -> SqsWorker:
        """Poll in a background thread until stop()."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                except Exception:  # keep the worker alive, like Lambda's poller would
                    logger.exception("SQS poll failed")
                    time.sleep(1)

        self._thread = threading.Thread(target=loop, name="sqs-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


def lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A received SQS message as Lambda's event source mapping hands it to a handler (one of the event's Records)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def copies_worker(stack: LocalStack, batch_size: int = 10) -> SqsWorker:
    """A worker running the copies handler on the stack's copies queue."""
    handler = load_handler(ROOT / "functions/copies/app.py")
    return SqsWorker(stack, handler, batch_size, queue_url=stack.copies_url, function_name="CopiesFunction")


def details_worker(stack: LocalStack, batch_size: int = 10) -> SqsWorker:
    """A worker running the details handler on the stack's details queue."""
    handler = load_handler(ROOT / "functions/details/app.py")
    return SqsWorker(stack, handler, batch_size, queue_url=stack.details_url, function_name="DetailsFunction")


def upload_folder(stack: LocalStack, folder: Path, prefix: str, limit: int | None = None) -> int:
    """Put the images of a folder under the prefix (skipping keys that exist with the same size)."""
    s3 = stack.client("s3")
    existing = {
        o["Key"]: o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    )
    count = 0
    for path in files[:limit]:
        key = prefix + path.name
        if existing.get(key) == path.stat().st_size:
            continue
        s3.put_object(Bucket=stack.bucket, Key=key, Body=path.read_bytes())
        count += 1
    return count


def run(args: argparse.Namespace) -> int:
    """Start everything, index the samples, serve the API until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("PICTRACE_MODEL_DIR", str(ROOT / "layers/model/model"))
    os.environ.setdefault("PICTRACE_URL_ALLOW_PRIVATE", "true")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "pictrace")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PicTraceLocal")  # the ingest handler's metrics need one
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    stack = LocalStack(bucket=args.bucket, port=args.s3_port).start()
    ingest = load_handler(ROOT / "functions/ingest/app.py")
    worker = SqsWorker(stack, ingest).start()
    copies = copies_worker(stack).start()  # each new image's copy check, as the stack's CopiesFunction
    details = details_worker(stack).start()  # each new image's details, as the stack's DetailsFunction
    photos = Path(args.samples)
    uploaded = upload_folder(stack, photos, os.environ.get("PICTRACE_IMAGES_PREFIX", "images/"), args.limit)
    print(f"local S3 (moto) at {stack.endpoint}, bucket {stack.bucket}; uploaded {uploaded} photos from {photos}")
    search_module = load_module(ROOT / "functions/search/app.py")
    service = search_module.app  # the same FastAPI app the Lambda handler wraps with Mangum
    started = time.monotonic()
    while time.monotonic() - started < args.index_timeout:
        done = worker.processed + worker.failed
        if done >= uploaded:
            break
        print(f"  indexing: {worker.processed} events processed, {worker.failed} failed", end="\r", flush=True)
        time.sleep(1)
    print(f"indexed {worker.processed} events ({worker.failed} failed) in {time.monotonic() - started:.1f} s")
    base = f"http://127.0.0.1:{args.port}"
    sample = next(iter(sorted(photos.glob("*.jpg"))), None)
    print(
        "\nPicTrace is serving:\n"
        f"  web page   {base}/\n"
        f"  API docs   {base}/docs\n"
        f"  health     curl -s {base}/health\n"
        f"  search     curl -s -F file=@{sample or 'photo.jpg'} '{base}/search?top_k=5'\n"
        f"  CLI        .venv/bin/pictrace search {sample or 'photo.jpg'}   (also ingest, delete, stats, duplicates)\n"
        f"  copies     {base}/duplicates; Copy Found events: aws sqs receive-message --endpoint-url {stack.endpoint} "
        f"--queue-url {stack.events_url}\n"
        f"  any S3 client: AWS_ENDPOINT_URL_S3={stack.endpoint} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing aws s3 cp photo.jpg s3://{stack.bucket}/images/\n"
        "Ctrl-C stops it.\n",
        flush=True,
    )
    try:
        uvicorn.run(service, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        worker.stop()
        copies.stop()
        details.stop()
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start the local stack, index the samples and serve the API")
    p.add_argument("--samples", default=str(ROOT / "data/samples/photos"))
    p.add_argument("--bucket", default="pictrace-local")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--s3-port", type=int, default=5055)
    p.add_argument("--limit", type=int, default=None, help="index at most this many sample photos")
    p.add_argument("--index-timeout", type=float, default=600)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
