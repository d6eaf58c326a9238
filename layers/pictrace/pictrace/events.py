"""Copies found, announced: one EventBridge event per copy (source "pictrace", detail-type "Copy Found") on the
stack's bus, for whatever its rules route them to (SNS, an API destination, Step Functions), or none where no bus
is configured (open_events chooses). An event is put before its link is recorded, so a check that fails in between
announces it again when retried: events are at least once, and `detail.pair` names the pair for deduplication."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pictrace.errors import UpstreamError
from pictrace.settings import Settings
from pictrace.storage import ProcessClients, aws_region, new_client

logger = logging.getLogger(__name__)

SOURCE = "pictrace"
DETAIL_TYPE = "Copy Found"
_PUT_BATCH = 10  # PutEvents' most entries


@dataclass(frozen=True)
class CopyFound:
    """A copy found by an image's check: the image (id, keys) copies another indexed one (copy_of, its keys) with
    this similarity (percent); region: where the image sits in the other's pixels (x0, y0, x1, y1), where known
    (not where the other sits inside the image instead); weak: the model alone called it, against the geometric
    check (pictrace.copycheck.is_weak)."""

    id: str
    keys: tuple[str, ...]
    copy_of: str
    copy_of_keys: tuple[str, ...]
    similarity: float
    bucket: str
    region: tuple[float, float, float, float] | None = None
    weak: bool = False

    def detail(self) -> dict[str, Any]:
        """The event's detail."""
        lo, hi = sorted((self.id, self.copy_of))
        return {
            "id": self.id,
            "keys": list(self.keys),
            "copy_of": self.copy_of,
            "copy_of_keys": list(self.copy_of_keys),
            "similarity": self.similarity,
            "region": list(self.region) if self.region else None,
            "bucket": self.bucket,
            "pair": f"{lo}-{hi}",
            "weak": self.weak,
        }


class CopyEvents(Protocol):
    """Where copies found are announced."""

    def announce(self, found: Sequence[CopyFound]) -> int:
        """One event per copy; how many were put."""
        ...


class NoEvents:
    """Events turned off (no bus configured): nothing is put."""

    def announce(self, found: Sequence[CopyFound]) -> int:
        """See CopyEvents."""
        return 0


def _make_events_client(region: str | None) -> Any:
    return new_client("events", region_name=aws_region(region))


class EventBridgeEvents:
    """Events on an EventBridge bus (its name or ARN). client: the EventBridge client to put with; else one made on
    first use (honours AWS_ENDPOINT_URL_EVENTBRIDGE), kept as long as this (a container's copy checker)."""

    def __init__(self, bus: str, client: Any | None = None) -> None:
        self.bus = bus
        self._client = client
        self._made = ProcessClients(_make_events_client)

    @property
    def client(self) -> Any:
        """The EventBridge client."""
        return self._client if self._client is not None else self._made()

    def announce(self, found: Sequence[CopyFound]) -> int:
        """See CopyEvents; UpstreamError if EventBridge refuses any (the check is then retried)."""
        for start in range(0, len(found), _PUT_BATCH):
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(f.detail()),
                    "EventBusName": self.bus,
                }
                for f in found[start : start + _PUT_BATCH]
            ]
            answer = self.client.put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                failed: dict[str, Any] = next((e for e in answer.get("Entries", []) if e.get("ErrorCode")), {})
                raise UpstreamError(f"EventBridge refused {answer['FailedEntryCount']} events: {failed}")
        logger.info("announced %d copies found on %s", len(found), self.bus)
        return len(found)


def open_events(settings: Settings) -> CopyEvents:
    """The events the settings ask for (event_bus), or none: the one place that chooses."""
    return EventBridgeEvents(settings.event_bus) if settings.event_bus else NoEvents()
