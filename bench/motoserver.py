"""`python -m bench.motoserver HOST PORT`: moto's threaded S3+SQS server, alone in this process, until terminated
or until the process that started it is gone."""

from __future__ import annotations

import logging
import os
import sys
import time


def main(argv: list[str]) -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import ThreadedMotoServer

    parent = os.getppid()
    server = ThreadedMotoServer(ip_address=argv[0], port=int(argv[1]), verbose=False)
    server.start()
    while os.getppid() == parent:  # the bench died without stopping us: do not outlive it
        time.sleep(1)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
