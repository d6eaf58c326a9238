"""One image decode bounded in time and CPU: it runs in a child process that is ended once the budget is spent.

An unknown trick that makes the decoder slow therefore costs the caller at most the budget and leaves nothing running
behind it: the child has a CPU limit of its own (RLIMIT_CPU), is killed when the wall-clock budget is spent, and is
always reaped. The pixels come back through an anonymous shared mapping made before the fork (no /dev/shm needed,
as on Lambda), sized from the header already validated, so a decode that yields more than the header allowed cannot
deliver it.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import resource
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

logger = logging.getLogger(__name__)

#: status, height, width, channels, dtype itemsize, dtype kind: what the child says about its result
_HEADER = struct.Struct("<qqqqqq")
_OK, _FAILED, _TOO_BIG = 0, 1, 2
#: the status written before the fork: a child that dies before answering leaves it
_NO_ANSWER = -1
#: a child out of wall-clock time that used less CPU than this share of it was stuck, not decoding slowly (a lock
#: another thread of the parent held at the fork, or the machine's CPU given to others): it is tried again
STUCK_CPU_SHARE = 0.25


@dataclass(frozen=True)
class Outcome:
    """What a bounded decode came to: pixels; or None with the decoded shape when it did not fit what the header
    allowed (shape None: the decoder failed); or timed_out when the budget ran out first."""

    pixels: np.ndarray | None
    shape: tuple[int, ...] | None = None
    timed_out: bool = False


def decode_bounded(
    decode: Callable[[], np.ndarray | None],
    capacity: int,
    seconds: float,
    cpu_seconds: int | None = None,
    tries: int = 2,
) -> Outcome:
    """Run decode() in a child process and return its array if it fits in capacity bytes, within seconds of wall
    clock and cpu_seconds of CPU (by default seconds, rounded up); the child is reaped whatever happens. A child
    that was stuck (STUCK_CPU_SHARE) is tried again, up to `tries` children in all."""
    for _ in range(tries - 1):
        outcome, cpu = _decode_once(decode, capacity, seconds, cpu_seconds)
        if not (outcome.timed_out and cpu < STUCK_CPU_SHARE * seconds):
            return outcome
        logger.warning("a decode was stuck (%.2f s of CPU in %g s): trying it again", cpu, seconds)
    return _decode_once(decode, capacity, seconds, cpu_seconds)[0]


def _decode_once(
    decode: Callable[[], np.ndarray | None], capacity: int, seconds: float, cpu_seconds: int | None
) -> tuple[Outcome, float]:
    """One child's decode (decode_bounded's), and the CPU seconds the child used."""
    shared = mmap.mmap(-1, _HEADER.size + max(capacity, 1))
    _HEADER.pack_into(shared, 0, _NO_ANSWER, 0, 0, 0, 0, 0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: coverage does not follow it
        _child(decode, shared, capacity, cpu_seconds or max(1, math.ceil(seconds)))
    finished = False
    try:
        finished = _wait(pid, seconds)
    finally:
        ended, cpu = _reap(pid)
    status, height, width, channels, itemsize, kind = _HEADER.unpack_from(shared, 0)
    if not finished or (status == _NO_ANSWER and _out_of_cpu(ended)):
        shared.close()
        return Outcome(None, timed_out=True), cpu
    if status == _NO_ANSWER:  # the decoder crashed (a signal of its own): a file it could not read
        logger.warning("the decoder ended without an answer (wait status %d)", ended)
        shared.close()
        return Outcome(None), cpu
    if status == _FAILED:
        shared.close()
        return Outcome(None), cpu
    shape = (height, width) if channels == 0 else (height, width, channels)
    if status == _TOO_BIG:
        shared.close()
        return Outcome(None, shape=shape), cpu
    dtype = np.dtype(f"{chr(kind)}{itemsize}")
    count = height * width * max(channels, 1)
    # a view of the mapping, which it keeps alive: no copy of the pixels
    pixels = np.frombuffer(shared, dtype=dtype, count=count, offset=_HEADER.size).reshape(shape)
    return Outcome(pixels, shape=shape), cpu


def _child(decode: Callable[[], np.ndarray | None], shared: mmap.mmap, capacity: int, cpu: int) -> NoReturn:
    """Decode and write the result into the shared mapping, then exit without running any of the parent's cleanup."""
    code = 1  # an exception on the way (its traceback is not shown): no answer written, a failed decode
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
        array = decode()
        if array is None or array.size == 0:
            _HEADER.pack_into(shared, 0, _FAILED, 0, 0, 0, 0, 0)
        else:
            height, width = array.shape[:2]
            channels = array.shape[2] if array.ndim == 3 else 0
            status = _OK if array.nbytes <= capacity and array.ndim in (2, 3) else _TOO_BIG
            if status == _OK:
                target = np.frombuffer(shared, dtype=array.dtype, count=array.size, offset=_HEADER.size)
                target[:] = array.reshape(-1)
            _HEADER.pack_into(shared, 0, status, height, width, channels, array.dtype.itemsize, ord(array.dtype.kind))
        code = 0
    finally:
        os._exit(code)


def _wait(pid: int, seconds: float) -> bool:
    """True when the child ended within seconds, False when it still runs after them (then _reap ends it)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # no pidfds here: poll the child
        return _wait_polling(pid, seconds)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    finally:
        os.close(pidfd)


def _wait_polling(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:  # ended, not yet reaped
            return True
        time.sleep(0.005)
    return False


def _reap(pid: int) -> tuple[int, float]:
    """Kill the child if it still runs and collect it (no decode outlives its call, no zombie stays): its wait
    status and the CPU seconds it used."""
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if not done:
        os.kill(pid, signal.SIGKILL)
        done, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _out_of_cpu(status: int) -> bool:
    """Whether a wait status is the end RLIMIT_CPU gives (SIGXCPU at the soft limit, SIGKILL at the hard one)."""
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL)
