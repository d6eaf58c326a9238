"""The model fetched from the model layer's archive at cold start (pictrace.modelfetch), served locally."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pictrace.errors import ConfigError, UpstreamError
from pictrace.modelfetch import ensure_model, has_model
from pictrace.settings import Settings

ARN = "arn:aws:lambda:us-east-1:123456789012:layer:pictrace-model:7"
INFO = b'{"weights": "w", "file": "site/pkg/m.onnx"}'


class FakeLambda:
    """get_layer_version_by_arn as Lambda answers it: a link to the archive and the archive's SHA-256 (base64)."""

    def __init__(self, url: str, archive: Path, sha: str | None = None, error: Exception | None = None) -> None:
        self.url, self.archive, self.error, self.calls = url, archive, error, 0
        digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
        self.sha = sha or digest

    def get_layer_version_by_arn(self, Arn: str) -> dict[str, Any]:
        self.calls += 1
        assert Arn == ARN
        if self.error:
            raise self.error
        return {"Content": {"Location": self.url, "CodeSha256": self.sha, "CodeSize": self.archive.stat().st_size}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, that directory)."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def layer_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_a_layer_whose_record_names_a_missing_file_or_an_unsafe_path_is_refused(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, www = served
    archive = layer_zip(www / "a.zip", {"model/model.json": INFO})
    with pytest.raises(ConfigError, match="lacks the file"):
        ensure_model(settings(tmp_path / "m"), FakeLambda(f"{url}/a.zip", archive))
    archive = layer_zip(www / "b.zip", {"model/../escape.onnx": b"x", "model/model.json": INFO})
    with pytest.raises(ConfigError, match="unsafe path"):
        ensure_model(settings(tmp_path / "n"), FakeLambda(f"{url}/b.zip", archive))
    assert not (tmp_path / "escape.onnx").exists()


def settings(model_dir: Path) -> Settings:
    return Settings(bucket="b", model_dir=str(model_dir), model_layer=ARN)


def test_fetches_once_then_finds_it(served: tuple[str, Path], tmp_path: Path) -> None:
    url, www = served
    files = {"model/site/pkg/m.onnx": b"\x01" * 5000, "model/model.json": INFO, "python/other.py": b""}
    client = FakeLambda(f"{url}/layer.zip", layer_zip(www / "layer.zip", files))
    target = tmp_path / "tmp" / "pictrace-model"
    assert ensure_model(settings(target), client) == str(target)
    assert (target / "site" / "pkg" / "m.onnx").read_bytes() == b"\x01" * 5000
    assert (target / "model.json").read_bytes() == INFO
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert found == ["model.json", "site/pkg/m.onnx"]  # no leftovers, nothing from outside model/
    ensure_model(settings(target), client)  # a warm container: already there
    assert client.calls == 1


def test_nothing_is_fetched_without_a_layer_or_when_the_dir_holds_the_model(tmp_path: Path) -> None:
    client = FakeLambda("http://127.0.0.1:9/none", layer_zip(tmp_path / "x.zip", {}))
    ensure_model(Settings(bucket="b", model_dir=str(tmp_path / "empty")), client)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "site" / "pkg").mkdir(parents=True)
    (tmp_path / "m" / "site" / "pkg" / "m.onnx").write_bytes(b"x")
    (tmp_path / "m" / "model.json").write_bytes(INFO)
    ensure_model(settings(tmp_path / "m"), client)
    assert client.calls == 0


def test_checksum_mismatch_is_refused(served: tuple[str, Path], tmp_path: Path) -> None:
    url, www = served
    archive = layer_zip(www / "layer.zip", {"model/site/pkg/m.onnx": b"a", "model/model.json": INFO})
    client = FakeLambda(f"{url}/layer.zip", archive, sha=base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(UpstreamError, match="SHA-256"):
        ensure_model(settings(tmp_path / "m"), client)
    assert not has_model(tmp_path / "m")


def test_layer_without_model_and_lambda_errors_are_explained(served: tuple[str, Path], tmp_path: Path) -> None:
    url, www = served
    archive = layer_zip(www / "layer.zip", {"python/other.py": b""})
    with pytest.raises(ConfigError, match="make model"):
        ensure_model(settings(tmp_path / "m"), FakeLambda(f"{url}/layer.zip", archive))
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetLayerVersionByArn")
    with pytest.raises(UpstreamError, match="AccessDenied"):
        ensure_model(settings(tmp_path / "m"), FakeLambda(f"{url}/layer.zip", archive, error=denied))
    with pytest.raises(UpstreamError, match="download"):
        ensure_model(settings(tmp_path / "m"), FakeLambda(f"{url}/missing.zip", archive))


def test_the_real_model_layer_loads_after_the_fetch(served: tuple[str, Path], tmp_path: Path, model_dir: str) -> None:
    """The model layer's archive as sam packages it (model/ at the root), fetched and run by ONNX Runtime."""
    from pictrace.embedding import OnnxEmbedder, load_model_info

    url, www = served
    root = Path(model_dir)
    files = {f"model/{p.relative_to(root)}": p.read_bytes() for p in root.rglob("*") if p.is_file()}
    archive = layer_zip(www / "layer.zip", files)
    target = tmp_path / "pictrace-model"
    ensure_model(settings(target), FakeLambda(f"{url}/layer.zip", archive))
    assert load_model_info(target)["weights"] == load_model_info(model_dir)["weights"]
    assert OnnxEmbedder(target).weights == load_model_info(model_dir)["weights"]


def test_an_attached_model_layer_is_used_where_it_is_and_nothing_is_fetched(tmp_path: Path) -> None:
    """With the layer attached (Lambda extracts it under /opt: model/ at /opt/model), the model is read there."""
    from pictrace.modelfetch import acquire_model

    attached = tmp_path / "opt" / "model"
    (attached / "site" / "pkg").mkdir(parents=True)
    (attached / "site" / "pkg" / "m.onnx").write_bytes(b"x")
    (attached / "model.json").write_bytes(INFO)
    client = FakeLambda("http://127.0.0.1:9/none", layer_zip(tmp_path / "x.zip", {}))
    got = acquire_model(settings(tmp_path / "tmp-model"), client, attached=str(attached))
    assert (got.path, got.source, got.fetched) == (str(attached), "attached", None)
    assert client.calls == 0 and not (tmp_path / "tmp-model").exists()
    # the model directory, where it holds the model, comes first; without a layer named, /opt is not looked at
    assert acquire_model(settings(attached), client, attached=str(tmp_path / "none")).source == "dir"
    plain = Settings(bucket="b", model_dir=str(tmp_path / "empty"))
    assert acquire_model(plain, client, attached=str(attached)).path == str(tmp_path / "empty")


def test_a_fetch_reports_what_it_took(served: tuple[str, Path], tmp_path: Path) -> None:
    from pictrace.modelfetch import acquire_model

    url, www = served
    files = {"model/site/pkg/m.onnx": b"\x02" * 4000, "model/model.json": INFO}
    archive = layer_zip(www / "layer.zip", files)
    got = acquire_model(settings(tmp_path / "m"), FakeLambda(f"{url}/layer.zip", archive), str(tmp_path / "no"))
    assert got.source == "fetched" and got.fetched is not None
    assert got.fetched.archive_bytes == archive.stat().st_size
    assert min(got.fetched.lookup_s, got.fetched.download_s, got.fetched.extract_s) >= 0
    again = acquire_model(settings(tmp_path / "m"), FakeLambda(f"{url}/layer.zip", archive), str(tmp_path / "no"))
    assert (again.source, again.fetched) == ("dir", None)


WRAPPER = Path(__file__).resolve().parents[2] / "layers" / "pictrace" / "bin" / "pictrace-prefetch-model"
#: the runtime's stand-in: once the prefetch has looked the layer up (so it holds the fetch's turn), acquire the
#: model as the first request would, and print how it came
FIRST_REQUEST = """
import sys, time, urllib.request
while urllib.request.urlopen(sys.argv[1] + "/seen").read() != b"1":
    time.sleep(0.02)
from pictrace.modelfetch import acquire_model
from pictrace.settings import get_settings
got = acquire_model(get_settings())
print(got.source, got.waited_s, got.fetched is None)
"""


@pytest.fixture
def lambda_api(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Lambda's GetLayerVersionByArn over HTTP (as botocore calls it), and the archive it links to: its first MiB and
    a bit sent at once, the rest after state["stall"] seconds (a download under way, with data on disk), or after
    the first of state["stalls"] (taken by that download); counts the lookups and the downloads. state["onnx"]: the
    model file the archive holds."""
    onnx = os.urandom(1_200_000)
    files = {"model/site/pkg/m.onnx": onnx, "model/model.json": INFO}
    data = layer_zip(tmp_path / "layer.zip", files).read_bytes()
    state: dict[str, Any] = {"lookups": 0, "downloads": 0, "stall": 1.0, "stalls": [], "onnx": onnx}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/2018-10-31/layers"):
                state["lookups"] += 1
                sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
                content = {"Location": f"{state['url']}/layer.zip", "CodeSha256": sha, "CodeSize": len(data)}
                body = json.dumps({"LayerVersionArn": ARN, "Version": 7, "Content": content}).encode()
            elif self.path == "/seen":
                body = b"1" if state["lookups"] else b"0"
            else:
                state["downloads"] += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                head = (1 << 20) + 1000  # more than the fetch's first read
                self.wfile.write(data[:head])
                self.wfile.flush()
                time.sleep(state["stalls"].pop(0) if state["stalls"] else state["stall"])
                self.wfile.write(data[head:])
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_the_exec_wrapper_fetches_beside_the_runtime_whose_first_request_waits_for_it(
    lambda_api: dict[str, Any], tmp_path: Path
) -> None:
    """Lambda runs the wrapper with the runtime's command: the model's fetch starts in a process of its own, the
    runtime runs, and its first request waits for that fetch rather than fetching again."""
    target = tmp_path / "tmp" / "pictrace-model"
    env = wrapper_env(lambda_api, target)
    runtime = [sys.executable, "-c", FIRST_REQUEST, lambda_api["url"]]
    done = subprocess.run([str(WRAPPER), *runtime], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    source, waited, no_fetch = done.stdout.split()
    assert (source, no_fetch) == ("awaited", "True") and float(waited) > 0.5  # the download took 1 s
    assert has_model(target) and (target / "site" / "pkg" / "m.onnx").read_bytes() == lambda_api["onnx"]
    assert (lambda_api["lookups"], lambda_api["downloads"]) == (1, 1)


def test_the_prefetch_says_why_it_failed(tmp_path: Path) -> None:
    """`python -m pictrace.modelfetch` without what it needs exits 1 with the reason (the first request then
    reports the same error as its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICTRACE_")}
    env["PICTRACE_MODEL_DIR"] = str(tmp_path / "m")
    done = subprocess.run(
        [sys.executable, "-m", "pictrace.modelfetch"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1 and "PICTRACE_BUCKET" in done.stderr, done.stderr


#: what becomes of the prefetch, as the runtime sees it: its state ("gone": ended and reaped; "Z": ended, a zombie)
PREFETCH_STATE = """
import os, sys, time
pid = int(os.environ["PICTRACE_PREFETCH_PID"])
def state():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or between it and the read
        return "gone"
def parent():
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
"""

#: the runtime's stand-in: says whether the prefetch is its child, then, after its first request, whether the
#: prefetch is gone once it ended
FIRST_REQUEST_THEN_REAP = (
    PREFETCH_STATE
    + "print('child' if parent() == os.getpid() else 'not-child')\n"
    + FIRST_REQUEST
    + """
deadline = time.monotonic() + 10
while state() != "gone" and time.monotonic() < deadline:
    time.sleep(0.05)
print(state())
"""
)

#: the runtime's stand-in that only imports the handler (pictrace.modelfetch with it) and never needs the model: once
#: the prefetch has ended (gone, or a zombie that stays a zombie), its state
IMPORT_ONLY_THEN_REAP = (
    PREFETCH_STATE
    + """
import pictrace.modelfetch
deadline = time.monotonic() + 30
while state() not in ("Z", "gone") and time.monotonic() < deadline:
    time.sleep(0.05)  # the prefetch fetches the model
settled = time.monotonic() + 2
while state() == "Z" and time.monotonic() < settled:
    time.sleep(0.05)
print(state())
"""
)


def wrapper_env(lambda_api: dict[str, Any], target: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PICTRACE_BUCKET": "b",
        "PICTRACE_MODEL_DIR": str(target),
        "PICTRACE_MODEL_LAYER": ARN,
        "AWS_ENDPOINT_URL_LAMBDA": lambda_api["url"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_the_prefetch_is_the_runtimes_child_and_the_runtime_reaps_it(
    lambda_api: dict[str, Any], tmp_path: Path
) -> None:
    """The wrapper execs the runtime, so the prefetch is the runtime's child (not init's), and the runtime never
    waits for its children: it reaps the prefetch itself, so no zombie stays once the prefetch ended."""
    env = wrapper_env(lambda_api, tmp_path / "tmp" / "pictrace-model")
    runtime = [sys.executable, "-c", FIRST_REQUEST_THEN_REAP, lambda_api["url"]]
    done = subprocess.run([str(WRAPPER), *runtime], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "child" and lines[-1] == "gone", done.stdout  # "Z" without the reaper


def test_the_runtime_reaps_its_prefetch_without_a_request_for_the_model(
    lambda_api: dict[str, Any], tmp_path: Path
) -> None:
    """A container whose requests never need the model (the page, /auth/config) reaps the prefetch too: the reaper
    starts when the handler's import brings pictrace.modelfetch in, not with the first acquisition."""
    target = tmp_path / "tmp" / "pictrace-model"
    runtime = [sys.executable, "-c", IMPORT_ONLY_THEN_REAP]
    done = subprocess.run(
        [str(WRAPPER), *runtime], env=wrapper_env(lambda_api, target), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gone"], done.stdout  # "Z": ended, never reaped
    assert has_model(target)  # the prefetch did its work


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or between it and the read
        return "gone"


def test_only_the_process_the_wrapper_became_reaps_the_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processes the runtime starts inherit PICTRACE_PREFETCH_PID; in them it may be the pid of a child of their
    own, whose exit status their own wait must still find."""
    import pictrace.modelfetch as modelfetch

    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    deadline = time.monotonic() + 20
    while _proc_state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _proc_state(child.pid) == "Z"
    monkeypatch.setattr(modelfetch, "_reaping", [])
    monkeypatch.setenv(modelfetch.PREFETCH_PID, str(child.pid))
    monkeypatch.setenv(modelfetch.PREFETCH_PARENT, str(os.getppid()))  # the runtime: another process
    modelfetch.reap_prefetch()
    waited = time.monotonic() + 1
    while _proc_state(child.pid) == "Z" and time.monotonic() < waited:
        time.sleep(0.01)
    assert child.wait(timeout=5) == 3  # 0 if a reaper took its status (subprocess's answer to ECHILD)
    # where this process is the one named, it reaps
    again = subprocess.Popen([sys.executable, "-c", "pass"])
    monkeypatch.setattr(modelfetch, "_reaping", [])
    monkeypatch.setenv(modelfetch.PREFETCH_PID, str(again.pid))
    monkeypatch.setenv(modelfetch.PREFETCH_PARENT, str(os.getpid()))
    reaper = modelfetch.reap_prefetch()
    assert reaper is not None
    reaper.join(timeout=20)
    assert _proc_state(again.pid) == "gone"
    again.wait(timeout=5)


def _files_open_under(pid: int, directory: Path) -> dict[str, int]:
    """The files a process has open under directory (by the name the system gives them) and their sizes."""
    found: dict[str, int] = {}
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.exists() else []:
        try:
            name = os.readlink(fd)
            size = os.stat(fd).st_size
        except OSError:  # closed meanwhile
            continue
        if name.startswith(f"{directory}/"):
            found[name] = size
    return found


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_fetch_stopped_mid_download_leaves_nothing_in_tmp(
    lambda_api: dict[str, Any], tmp_path: Path, how: str
) -> None:
    """A prefetch stopped while the archive downloads (a MiB of it on disk) leaves no file behind, whether it could
    clean up (SIGTERM) or not (SIGKILL): the archive never had a name. The next fetch then gets the model."""
    import signal

    target = tmp_path / "tmp" / "pictrace-model"
    env = wrapper_env(lambda_api, target)
    lambda_api["stall"] = 30.0
    proc = subprocess.Popen([sys.executable, "-m", "pictrace.modelfetch"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not any(size >= 1 << 20 for size in _files_open_under(proc.pid, target).values()):
            assert time.monotonic() < deadline and proc.poll() is None, "the download never got under way"
            time.sleep(0.01)
        proc.send_signal(getattr(signal, how))
        assert proc.wait(timeout=10) != 0
    finally:
        proc.kill()
        proc.wait()
    left = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "tmp").rglob("*"))
    assert left == ["tmp/pictrace-model", "tmp/pictrace-model.lock"]  # the lock file stays, empty: it is the turn
    lambda_api["stall"] = 0.0
    done = subprocess.run([sys.executable, "-m", "pictrace.modelfetch"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0 and has_model(target)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "model.json",
        "site/pkg/m.onnx",
    ]


def test_the_next_fetch_removes_what_a_killed_one_left(served: tuple[str, Path], tmp_path: Path) -> None:
    """A fetch killed while it extracts leaves a scratch file; an older version left a scratch directory with the
    archive: the next fetch (which holds the turn) removes both before it downloads."""
    from pictrace.modelfetch import SCRATCH_PREFIX

    url, www = served
    target = tmp_path / "m"
    (target / "site" / "pkg").mkdir(parents=True)
    (target / "site" / "pkg" / f"{SCRATCH_PREFIX}m.onnx").write_bytes(b"half of it")
    (target / f"{SCRATCH_PREFIX}abc").mkdir()
    (target / f"{SCRATCH_PREFIX}abc" / "layer.zip").write_bytes(b"PK")
    files = {"model/site/pkg/m.onnx": b"\x05" * 3000, "model/model.json": INFO}
    ensure_model(settings(target), FakeLambda(f"{url}/layer.zip", layer_zip(www / "layer.zip", files)))
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "model.json",
        "site",
        "site/pkg",
        "site/pkg/m.onnx",
    ]


def test_a_prefetch_that_overruns_its_deadline_ends_and_frees_the_turn(
    lambda_api: dict[str, Any], tmp_path: Path
) -> None:
    """A prefetch stuck on its download is ended by the system once PREFETCH_DEADLINE_S has passed: the turn is free
    for the requests, and nothing is left behind."""
    import fcntl
    import signal

    target = tmp_path / "tmp" / "pictrace-model"
    lambda_api["stall"] = 60.0
    deadline_3s = "import sys, pictrace.modelfetch as m; m.PREFETCH_DEADLINE_S = 3; sys.exit(m.main())"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", deadline_3s], env=wrapper_env(lambda_api, target), capture_output=True, timeout=30
    )
    assert done.returncode == -signal.SIGALRM and time.monotonic() - started < 20, done.stderr
    assert lambda_api["downloads"] == 1  # it was stuck downloading
    with open(f"{target}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: BlockingIOError otherwise
    assert not [p for p in target.rglob("*")]


#: the runtime's stand-in whose first request, LOCK_WAIT_S = 1, finds its prefetch stuck (holding the turn); says
#: how it got the model, and what became of the prefetch
FIRST_REQUEST_AFTER_A_STUCK_PREFETCH = (
    PREFETCH_STATE
    + """
import urllib.request
import pictrace.modelfetch as modelfetch
from pictrace.settings import get_settings
while urllib.request.urlopen(sys.argv[1] + "/seen").read() != b"1":
    time.sleep(0.02)
modelfetch.LOCK_WAIT_S = 1.0
got = modelfetch.acquire_model(get_settings())
deadline = time.monotonic() + 10
while state() != "gone" and time.monotonic() < deadline:
    time.sleep(0.05)
print(got.source, got.waited_s, state())
"""
)


def test_the_runtime_ends_a_stuck_prefetch_and_fetches_the_model_itself(
    lambda_api: dict[str, Any], tmp_path: Path
) -> None:
    """A prefetch that holds the turn past LOCK_WAIT_S (its download stalled) is ended by the runtime, which takes the
    turn and fetches the model itself: the first request gets the model rather than a 503, and the prefetch leaves
    neither a zombie nor a file."""
    target = tmp_path / "tmp" / "pictrace-model"
    lambda_api["stalls"] = [60.0]  # the prefetch's download; the runtime's own is not held back
    runtime = [sys.executable, "-c", FIRST_REQUEST_AFTER_A_STUCK_PREFETCH, lambda_api["url"]]
    done = subprocess.run(
        [str(WRAPPER), *runtime], env=wrapper_env(lambda_api, target), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    source, waited, prefetch = done.stdout.split()
    assert (source, prefetch) == ("fetched", "gone") and 1.0 < float(waited) < 10
    assert "ended it; fetching the model here" in done.stderr
    assert lambda_api["downloads"] == 2
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "model.json",
        "site/pkg/m.onnx",
    ]
    assert (target / "site" / "pkg" / "m.onnx").read_bytes() == lambda_api["onnx"]


def test_a_fetch_held_up_by_a_stuck_process_gives_up_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process holding the turn and never letting go (stuck, and not this process's prefetch) makes a waiting
    fetch give up after LOCK_WAIT_S with a 503 (UpstreamError) that says why, rather than wait as long as the
    holder."""
    import pictrace.modelfetch as modelfetch

    target = tmp_path / "pictrace-model"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{target}.lock"], stdout=subprocess.PIPE, text=True
    )  # a stuck fetch: holds the turn and never lets go
    outcome: list[BaseException | str] = []

    def first_request() -> None:
        try:
            modelfetch.acquire_model(settings(target), FakeLambda("http://unused", layer_zip(tmp_path / "z.zip", {})))
            outcome.append("acquired")
        except Exception as exc:  # noqa: BLE001 - what it raised is the outcome checked below
            outcome.append(exc)

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(modelfetch, "LOCK_WAIT_S", 0.5)
        started = time.monotonic()
        waiter = threading.Thread(target=first_request, daemon=True)
        waiter.start()
        waiter.join(timeout=10)  # the holder sleeps 60 s: a wait without a bound is still waiting
        assert not waiter.is_alive(), "still waiting for the stuck holder after 10 s"
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert len(outcome) == 1 and isinstance(outcome[0], UpstreamError), outcome
    assert "for over 0.5 s" in str(outcome[0])


def test_the_lock_wait_ends_within_the_search_functions_timeout() -> None:
    """LOCK_WAIT_S leaves the first search request time to fetch the model itself, load it and answer within its
    function's timeout, rather than time out without a word."""
    from pictrace.modelfetch import LOCK_WAIT_S

    from tests.template.test_template import function_properties, load_template

    timeout = function_properties(load_template(), "SearchFunction")["Timeout"]
    assert LOCK_WAIT_S + 10 <= timeout


HOLD_LOCK = """
import fcntl, sys, time
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""
