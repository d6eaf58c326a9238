"""The model at cold start: from the model directory, the attached model layer, or the layer's archive fetched.

The stack builds and versions the model as a layer (ModelLayer). A function attaches it where its size budget
allows (template.yaml: Lambda counts a function and its layers, extracted, against 250 MB); Lambda then extracts it
under /opt before the function starts, and the model is read from /opt/model. Where it is not attached (both functions
on x86_64), each new container asks Lambda for the layer version's archive (GetLayerVersionByArn: a link valid 10
minutes), checks its SHA-256, and extracts model/ into PICTRACE_MODEL_DIR (under /tmp); warm invocations find it
there. Where the directory already holds the model (local runs, tests, `make invoke`), nothing else is looked at.

Where the model is fetched, template.yaml also sets AWS_LAMBDA_EXEC_WRAPPER to the PictraceLayer's
/opt/bin/pictrace-prefetch-model: Lambda starts the runtime through it, and it starts `python -m pictrace.modelfetch`
beside the runtime, so the archive downloads while the runtime imports the handler. The processes of a container
take turns through a file lock beside the model directory: the first request finds the model there, or waits for
the fetch under way ("awaited") rather than starting its own.

What a fetch leaves behind, whatever ends it:
    the prefetch process   the runtime's child (the wrapper execs the runtime): the runtime reaps it, from the
                           moment it imports this module (reap_prefetch), so it never stays a zombie
    the archive            downloaded into an anonymous file (no name in /tmp; the system frees it when the
                           fetcher's last descriptor closes, a SIGKILL included)
    extracted files        written under scratch names, renamed into place once complete; a scratch file left by
                           a killed extraction is removed by the next fetch, which holds the turn
    the turn               a lock the system releases when its holder dies; a process waits for it at most
                           LOCK_WAIT_S: then the runtime ends its prefetch, if that is the one still holding it,
                           and fetches the model itself; any other wait ends in UpstreamError (503; the next request
                           tries again). The prefetch also ends itself after PREFETCH_DEADLINE_S.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pictrace.errors import ConfigError, PicTraceError, UpstreamError
from pictrace.modelfiles import INFO_FILE, has_model
from pictrace.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: where the model sits inside the layer archive
ARCHIVE_DIR = "model/"
#: where Lambda puts it when the function attaches the model layer (layers are extracted under /opt)
ATTACHED_DIR = "/opt/model"
#: the longest a process waits for another's fetch: then the runtime ends its own prefetch (the holder, stuck) and
#: fetches the model itself, and any other wait ends in UpstreamError (the request answers 503). Within the search
#: function's 29 s timeout with room for a fetch and the model's load; a fetch normally takes a few seconds (a 30 MB
#: archive from Lambda in the same region). A module constant rather than a setting.
LOCK_WAIT_S = 15.0
#: how much longer the runtime waits for the turn once it has ended its prefetch (the system frees it at its end)
PREFETCH_END_WAIT_S = 5.0
#: the longest the exec wrapper's prefetch runs: past it the system ends it (SIGALRM), which frees the turn for the
#: requests (a prefetch stuck on the network would otherwise make every request wait LOCK_WAIT_S, then fail)
PREFETCH_DEADLINE_S = 60
#: the exec wrapper names its prefetch here, for the runtime to reap (reap_prefetch)
PREFETCH_PID = "PICTRACE_PREFETCH_PID"
#: ... and the process that may reap it: the wrapper's own, which becomes the runtime's (exec keeps the pid)
PREFETCH_PARENT = "PICTRACE_PREFETCH_PARENT"
#: what a fetch's scratch files are named (extracted files not yet complete, and the archive where the system has
#: no anonymous files) inside the model directory; left by a killed fetch, removed by the next one
SCRATCH_PREFIX = ".fetch-"
_lock = threading.Lock()
_acquired: list[Acquired] = []  # this process's acquisitions that fetched or waited (acquired_here)
_reaping: list[_Prefetch] = []  # the prefetch this process reaps (reap_prefetch)


@dataclass(frozen=True)
class Fetched:
    """What fetching the layer's archive took: its size, and seconds per step."""

    archive_bytes: int
    lookup_s: float  # GetLayerVersionByArn (the client created on the way)
    download_s: float  # the archive through the link, its SHA-256 computed as it arrives
    extract_s: float  # model/ written into the model directory


@dataclass(frozen=True)
class Acquired:
    """Where the model is and how it got there: "dir" (already in the model directory), "attached" (the model
    layer attached to the function), "fetched" (the layer's archive downloaded; fetched says what that took) or
    "awaited" (another process of the container was fetching it: waited_s is how long this one waited)."""

    path: str
    source: str
    fetched: Fetched | None = None
    waited_s: float = 0.0


def ensure_model(settings: Settings, client: Any | None = None) -> str:
    """The directory holding the model (acquire_model)."""
    return acquire_model(settings, client).path


def acquire_model(settings: Settings, client: Any | None = None, attached: str = ATTACHED_DIR) -> Acquired:
    """The model directory: settings.model_dir if it holds the model; else, when settings.model_layer names the
    model layer, the layer's files at `attached` if the function attaches it, or else its archive fetched into
    settings.model_dir."""
    if has_model(settings.model_dir) or not settings.model_layer:
        return Acquired(settings.model_dir, "dir")
    if has_model(attached):
        return Acquired(attached, "attached")
    with _lock, _fetch_turn(settings.model_dir) as waited_s:
        if has_model(settings.model_dir):
            if not waited_s:
                return Acquired(settings.model_dir, "dir")
            acquired = Acquired(settings.model_dir, "awaited", waited_s=waited_s)
        else:
            fetched = fetch_layer_model(settings.model_layer, settings.model_dir, client)
            acquired = Acquired(settings.model_dir, "fetched", fetched, waited_s)
        _acquired.append(acquired)
    return acquired


def acquired_here() -> Acquired | None:
    """How this process last got the model when it had to fetch it or wait for another process's fetch (a container
    does so once, on its first request or before its snapshot); None if it never had to."""
    return _acquired[-1] if _acquired else None


@dataclass(frozen=True)
class _Prefetch:
    """The exec wrapper's prefetch, as the runtime holds it: its pid, a pidfd (None where the system has none) and
    the thread that reaps it (alive until it has ended)."""

    pid: int
    pidfd: int | None
    reaper: threading.Thread


def reap_prefetch() -> threading.Thread | None:
    """Where this process is the one the exec wrapper became (PICTRACE_PREFETCH_PARENT) and started a prefetch
    (PICTRACE_PREFETCH_PID), wait for that prefetch on a daemon thread, so that it leaves no zombie when it ends
    (the runtime never waits for its children). Once per process; the thread, or None where there is nothing this
    process may reap (a process the runtime started inherits the variables, and a pid of its own children may
    equal the prefetch's)."""
    pid, parent = os.environ.get(PREFETCH_PID, ""), os.environ.get(PREFETCH_PARENT, "")
    if _reaping or not pid.isdigit() or parent != str(os.getpid()):
        return None
    try:
        pidfd: int | None = os.pidfd_open(int(pid))  # before the reaper can reap it: the pid is still its own
    except OSError:  # ended and reaped already (ProcessLookupError), or no pidfds here
        pidfd = None

    def reap() -> None:
        try:
            os.waitpid(int(pid), 0)
        except ChildProcessError:  # reaped already (by a wait for any child)
            pass

    thread = threading.Thread(target=reap, name="pictrace-prefetch-reaper", daemon=True)
    _reaping.append(_Prefetch(int(pid), pidfd, thread))
    thread.start()
    return thread


@contextmanager
def _fetch_turn(model_dir: str, wait_s: float | None = None) -> Iterator[float]:
    """The container's turn to fetch into model_dir (an exclusive lock on a file beside it, which the system
    releases if its holder dies); yields the seconds spent waiting for another process's turn (0.0: none).

    After wait_s (LOCK_WAIT_S) of waiting, the runtime ends its own prefetch if that is still running (the only
    other process of a container that fetches: the holder, stuck) and takes the turn; any other wait ends in
    UpstreamError (503)."""
    limit = LOCK_WAIT_S if wait_s is None else wait_s
    lock_path = Path(f"{model_dir.rstrip('/')}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        started = time.perf_counter()
        waited = 0.0
        if not _take(lock):
            deadline = started + limit
            taken = _take(lock, deadline) or (_end_prefetch(limit) and _take(lock, deadline + PREFETCH_END_WAIT_S))
            if not taken:
                raise UpstreamError(
                    f"another process has been fetching the model into {model_dir} for over {limit:g} s: "
                    "giving up on it (the next request tries again)"
                )
            waited = max(time.perf_counter() - started, 1e-6)
        try:
            yield waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _take(lock: IO[str], deadline: float | None = None) -> bool:
    """Take the lock: at once or not at all (no deadline), else polling until the deadline (time.perf_counter)."""
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is None or time.perf_counter() > deadline:
                return False
            time.sleep(0.01)


def _end_prefetch(waited_s: float) -> bool:
    """End this process's prefetch (reap_prefetch) if it is still running; whether it was."""
    prefetch = _reaping[0] if _reaping else None
    if prefetch is None or prefetch.pidfd is None or not prefetch.reaper.is_alive():
        return False
    try:  # through its pidfd: never another process that was given its pid
        signal.pidfd_send_signal(prefetch.pidfd, signal.SIGKILL)
    except ProcessLookupError:  # it has just ended
        return True
    logger.warning(
        "the model's prefetch (pid %d) held the turn for over %g s: ended it; fetching the model here",
        prefetch.pid,
        waited_s,
    )
    return True


def fetch_layer_model(layer_arn: str, model_dir: str, client: Any | None = None, timeout: float = 60.0) -> Fetched:
    """Download the layer version's archive, check its SHA-256 and extract the model files into model_dir."""
    # imported here rather than at the top: the exec wrapper's prefetch imports this module, takes the fetch's turn
    # and only then pays for the SDK, so that it holds the turn before the runtime's first request asks for it
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from pictrace.storage import new_client

    started = time.perf_counter()
    client = client or new_client("lambda", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    try:
        content = client.get_layer_version_by_arn(Arn=layer_arn)["Content"]
    except (ClientError, BotoCoreError) as exc:
        raise UpstreamError(f"cannot look up the model layer {layer_arn}: {exc}") from exc
    looked_up = time.perf_counter()
    location, expected = content["Location"], content["CodeSha256"]
    if not location.startswith(("https://", "http://")):
        raise UpstreamError(f"the model layer {layer_arn} has no downloadable archive ({location!r})")
    target = Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    remove_scratch(target)  # a killed fetch's (whoever fetches holds the turn)
    # the archive has no name: nothing of it is left in /tmp however the fetch ends (SIGKILL included)
    with tempfile.TemporaryFile(dir=target, prefix=SCRATCH_PREFIX) as archive:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(location, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    archive.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"cannot download the model layer {layer_arn}: {exc}") from exc
        downloaded = time.perf_counter()
        if base64.b64encode(digest.digest()).decode() != expected:
            raise UpstreamError(f"the model layer {layer_arn} archive does not match its SHA-256 {expected}")
        size = archive.tell()
        archive.seek(0)
        _extract(archive, target, layer_arn)
    done = time.perf_counter()
    logger.info("fetched the model from layer %s into %s in %.2f s", layer_arn, target, done - started)
    return Fetched(size, looked_up - started, downloaded - looked_up, done - downloaded)


def remove_scratch(model_dir: str | os.PathLike[str]) -> int:
    """Remove the scratch files and directories a fetch left in model_dir (only the turn's holder may); how many."""
    stale = [p for p in Path(model_dir).rglob(SCRATCH_PREFIX + "*") if p.name.startswith(SCRATCH_PREFIX)]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d scratch file(s) an earlier fetch left in %s", len(stale), model_dir)
    return len(stale)


def _extract(archive: IO[bytes], target: Path, layer_arn: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(ARCHIVE_DIR) and not m.is_dir()]
        names = {m.filename[len(ARCHIVE_DIR) :] for m in members}
        if INFO_FILE not in names:
            raise ConfigError(
                f"the model layer {layer_arn} has no {ARCHIVE_DIR}{INFO_FILE}: build it with `make model`"
            )
        # model.json last: has_model() is true only once every file it names is complete
        for member in sorted(members, key=lambda m: m.filename == ARCHIVE_DIR + INFO_FILE):
            relative = Path(member.filename[len(ARCHIVE_DIR) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise ConfigError(f"the model layer {layer_arn} holds an unsafe path {member.filename!r}")
            final = target / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(SCRATCH_PREFIX + final.name)
            try:
                with zf.open(member) as src, partial.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)  # on the way out of a failure or a SIGTERM (replaced: gone already)
    if not has_model(target):
        raise ConfigError(f"the model layer {layer_arn} lacks the file its {INFO_FILE} names: rebuild it")


def main() -> int:
    """`python -m pictrace.modelfetch`: the model acquired for this container, as its first request would (the
    exec wrapper's prefetch); 1 if that failed, which the first request then reports as its own error."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminated)  # a stopped prefetch removes its scratch files on the way out
    signal.alarm(PREFETCH_DEADLINE_S)  # past it, the system ends this process (SIGALRM's default) and its turn
    try:
        acquired = acquire_model(get_settings())
    except PicTraceError as exc:
        logger.error("prefetching the model failed; the first request fetches it: %s", exc)
        return 1
    logger.info("model %s (%s) after %.2f s of waiting", acquired.path, acquired.source, acquired.waited_s)
    return 0


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


reap_prefetch()  # in the runtime, from its import of the handler on (a no-op in any other process)

if __name__ == "__main__":
    sys.exit(main())
