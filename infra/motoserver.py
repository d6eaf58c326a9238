"""moto's server as the local stack and the bench run it: moto's ThreadedMotoServer, with two of moto's own costs
taken out first, costs that AWS's services bear on their own machines and that here would land on the stack's CPU:

- SQS: every receive, send and attribute read asks each message in the queue whether it is visible and delayed,
  and each asking reads the clock through two datetime conversions. With a few hundred messages waiting (a copy
  check's backlog), one ReceiveMessage cost moto 80–100 ms of CPU. The clock is read with time.time() instead: the
  same epoch seconds, in a fraction of the time. A queue's messages are still scanned, as moto does.
- EventBridge: delivering an event to a rule's target compiles the default input paths (eight JSONPath
  expressions, a yacc parser each) again for every event, 7 ms per event. The compiled expressions are kept.

Neither changes what moto answers. Both are applied once per process, before the server starts.
"""

from __future__ import annotations

import functools
import time
from typing import Any

__all__ = ["moto_server"]


def moto_server(host: str, port: int) -> Any:
    """moto's ThreadedMotoServer on host:port (not started), with moto's per-message clock reads and per-event
    JSONPath compilation made cheap (see the module's docstring)."""
    from moto.server import ThreadedMotoServer

    _quicken()
    return ThreadedMotoServer(ip_address=host, port=port, verbose=False)


@functools.cache
def _quicken() -> None:
    """Patch moto's SQS clock reads and EventBridge's JSONPath compilation, once."""
    import jsonpath_ng.ext
    import moto.sqs.models as sqs_models

    exact_ms = sqs_models.unix_time_millis
    exact_s = sqs_models.unix_time

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(exact_ms(dt))

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(exact_s(dt))

    sqs_models.unix_time_millis = unix_time_millis
    sqs_models.unix_time = unix_time
    # moto imports parse inside the delivering function, so the module's attribute is what it calls
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)
