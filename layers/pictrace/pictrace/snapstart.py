"""Lambda SnapStart: what a function does before its snapshot is taken and after a copy is restored from it.

With SnapStart (template parameter SnapStart=Enabled) Lambda runs a function's initialisation once, when a version
is published, and starts new containers from a snapshot of its memory and /tmp. Before the snapshot the function's
service warms itself (``warm``): settings, the model (fetched from the model layer into /tmp, loaded and run once),
and for search the index's model check and, with the segments backend, the whole index in memory.

After a restore, what must not be shared between copies of one snapshot is renewed: the AWS clients (their
connections and the credentials they were created with: the next call creates new ones), Python's random state,
and whatever the service holds (``renew``: search makes its next request look at S3 for what changed since the
snapshot). Unique values PicTrace makes (upload keys, marker nonces) come from uuid4, i.e. the OS, so they stay
unique across restored copies.

The hooks are registered with ``snapshot_restore_py`` (part of Lambda's Python runtimes); where it is missing
(a plain interpreter) registration does nothing. ``restore_locally`` runs the registered hooks the way the runtime
does, for tests and the benchmark.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from pictrace.storage import ProcessClients

logger = logging.getLogger(__name__)

#: what a warm-up embeds: any image will do; this one is small and not uniform (trim_border keeps it)
WARM_UP = np.tile(np.arange(96, dtype=np.uint8)[:, None, None], (1, 128, 3))


class Service(Protocol):
    """What a function's service does around a snapshot."""

    def warm(self) -> dict[str, float]: ...

    def renew(self) -> None: ...


def renew_clients() -> None:
    """New AWS clients on next use (new connections, the restored container's credentials); new random state."""
    ProcessClients.clear_all()  # S3, S3 Vectors, SQS
    random.seed()


def register(service: Callable[[], Service]) -> None:
    """Register the hooks of the service the function runs (given as its getter, called when a hook runs)."""

    def before() -> None:
        timings = service().warm()
        logger.info("warmed for a snapshot in %s", {k: round(v, 3) for k, v in timings.items()})

    def after() -> None:
        renew_clients()
        service().renew()

    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not Lambda's runtime: there is no snapshot to prepare
        logger.debug("snapshot_restore_py is not installed: SnapStart hooks not registered")
        return
    register_before_snapshot(before)
    register_after_restore(after)


def restore_locally() -> float:
    """Run the registered hooks as Lambda's runtime does (before-snapshot ones in reverse order of registration,
    then after-restore ones in order); seconds the after-restore hooks took."""
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    for func, args, kwargs in reversed(get_before_snapshot()):
        func(*args, **kwargs)
    started = time.perf_counter()
    for func, args, kwargs in get_after_restore():
        func(*args, **kwargs)
    return time.perf_counter() - started
