"""The stack's SQS queues of image ids (the copy check's, the details'): messages sent ten at a time (those sent
while a queue is held, together when it is let go: an ingest batch's ids in one request), and which ingest outcomes
queue an id for the work that follows indexing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pictrace.errors import UpstreamError
from pictrace.storage import ProcessClients, aws_region, new_client

#: ingest outcomes after which an entry's follow-up work is queued (again): a new entry, or bytes indexed again as
#: they were (a redelivery queues what a failed send may have lost; the work finds it done)
QUEUED_AFTER = ("created", "unchanged")
_SQS_BATCH = 10  # SendMessageBatch's most entries


def _make_sqs_client(region: str | None) -> Any:
    return new_client("sqs", region_name=aws_region(region))


#: the process's SQS client (honours AWS_ENDPOINT_URL_SQS), shared by its queues; renewed after a SnapStart restore
sqs_client = ProcessClients(_make_sqs_client)


class SqsQueue:
    """An SQS queue messages are sent to. client: the SQS client to send with; else the process's (sqs_client, made
    on first use). name: what errors call it."""

    def __init__(self, url: str, client: Any | None = None, name: str = "the queue") -> None:
        self.url = url
        self.name = name
        self._client = client
        self._held: list[str] | None = None  # while held: the bodies sent so far

    @property
    def client(self) -> Any:
        """The SQS client."""
        return self._client if self._client is not None else sqs_client()

    def send(self, bodies: Sequence[str]) -> int:
        """Send one message per body, ten at a time (while held: when let go); how many were sent (or held).
        UpstreamError if SQS refuses any."""
        if self._held is not None:
            self._held.extend(bodies)
            return len(bodies)
        for start in range(0, len(bodies), _SQS_BATCH):
            chunk = bodies[start : start + _SQS_BATCH]
            entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(chunk)]
            answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            if answer.get("Failed"):
                raise UpstreamError(f"{self.name} refused {len(answer['Failed'])} messages: {answer['Failed'][0]}")
        return len(bodies)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Inside, what is sent is kept, and sent together when the block ends without an error (an error drops it:
        the redelivered batch sends it again). Inside a held block, another is part of it."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
            bodies = self._held
        finally:
            self._held = None
        self.send(bodies)
