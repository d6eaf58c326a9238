"""moto's server as the local stack and the bench run it: moto's backends (the WSGI application moto's own server runs)
served by cheroot over HTTP/1.1 connections that are kept open, with two of moto's own costs taken out first. Each
is a cost that AWS's services bear on their own machines and that here would land on the stack's CPU:

- Connections: moto's ThreadedMotoServer (werkzeug's development server) closes the connection after every
  response, so each request of a boto3 or aiohttp client opened a TCP connection and the server started a thread
  for it (a copy check's worker opened 5,716 connections for the bench's 410 images). AWS's endpoints keep
  connections open; cheroot keeps them open too (idle ones for KEEP_ALIVE_S), answering on a fixed pool of threads.
  For 4,400 S3 and SQS requests from 16 client threads, that took a third to a half off the CPU of either side.
  Header names with an underscore arrive with a dash (moto's own server keeps them: S3 user metadata; PicTrace
  writes none).
- SQS: every receive, send and attribute read asks each message in the queue whether it is visible and delayed,
  and each asking reads the clock through two datetime conversions. With a few hundred messages waiting (a copy
  check's backlog), one ReceiveMessage cost moto 80–100 ms of CPU. The clock is read with time.time() instead: the
  same epoch seconds, in a fraction of the time. A queue's messages are still scanned, as moto does.
- EventBridge: delivering an event to a rule's target compiles the default input paths (eight JSONPath
  expressions, a yacc parser each) again for every event, 7 ms per event. The compiled expressions are kept.

None changes what moto answers. The two patches are applied once per process, before the server starts.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

__all__ = ["MotoServer", "moto_server"]

#: how long an idle connection is kept open: longer than clients keep theirs (aiohttp: 15 s), so that a client
#: closes an idle connection before the server does rather than reusing one the server is closing
KEEP_ALIVE_S = 120
#: the threads answering requests (moto's backends hold the GIL, so more would mostly wait; a long-polling receive
#: holds one while it waits), and how many idle connections are kept open
THREADS, IDLE_CONNECTIONS = 16, 1024
#: how often the server looks for idle connections to close, and the longest stop() waits for it to notice
EXPIRY_CHECK_S = 0.05


class MotoServer:
    """moto's backends served on host:port (see the module's docstring); start and stop it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on host:port and answer in a thread of its own (OSError if the port is taken)."""
        from cheroot import wsgi
        from moto.server import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        server = wsgi.Server((self.host, self.port), app, numthreads=THREADS, timeout=KEEP_ALIVE_S)
        server.keep_alive_conn_limit = IDLE_CONNECTIONS
        server.expiration_interval = EXPIRY_CHECK_S
        server.prepare()  # binds, so that a client may connect once this returns
        self._server = server
        self._thread = threading.Thread(target=server.serve, name=f"moto:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close every connection."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def moto_server(host: str, port: int) -> MotoServer:
    """moto's server on host:port (not started), keeping connections open, with moto's per-message clock reads and
    per-event JSONPath compilation made cheap (see the module's docstring)."""
    _quicken()
    return MotoServer(host, port)


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
