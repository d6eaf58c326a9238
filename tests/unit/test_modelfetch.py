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
    """Lambda's GetLayerVersionByArn over HTTP (as botocore calls it), the archive it links to served after a delay
    (a download under way); counts the lookups and the downloads."""
    files = {"model/site/pkg/m.onnx": b"\x03" * 6000, "model/model.json": INFO}
    data = layer_zip(tmp_path / "layer.zip", files).read_bytes()
    state: dict[str, Any] = {"lookups": 0, "downloads": 0}

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
                time.sleep(1.0)
                body = data
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
    assert has_model(target) and (target / "site" / "pkg" / "m.onnx").read_bytes() == b"\x03" * 6000
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


#: the runtime's stand-in that also says whether its prefetch child is gone once it ended (no zombie left)
FIRST_REQUEST_THEN_REAP = (
    FIRST_REQUEST
    + """
import os
pid = int(os.environ["PICTRACE_PREFETCH_PID"])
deadline = time.monotonic() + 10
def state():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
while state() != "gone" and time.monotonic() < deadline:
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


def test_the_runtime_reaps_its_prefetch(lambda_api: dict[str, Any], tmp_path: Path) -> None:
    """The runtime never waits for the wrapper's prefetch: the first acquisition reaps it, so no zombie stays."""
    env = wrapper_env(lambda_api, tmp_path / "tmp" / "pictrace-model")
    runtime = [sys.executable, "-c", FIRST_REQUEST_THEN_REAP, lambda_api["url"]]
    done = subprocess.run([str(WRAPPER), *runtime], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "gone", done.stdout  # "Z" without the reaper


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_stopped_fetch_leaves_no_scratch_archive_behind(lambda_api: dict[str, Any], tmp_path: Path, how: str) -> None:
    """A prefetch stopped mid-download: SIGTERM removes its scratch directory on the way out; after a SIGKILL the
    next fetch (which holds the turn) removes it before its own."""
    import signal

    from pictrace.modelfetch import SCRATCH_PREFIX

    target = tmp_path / "tmp" / "pictrace-model"
    env = wrapper_env(lambda_api, target)
    proc = subprocess.Popen([sys.executable, "-m", "pictrace.modelfetch"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not list(target.glob(SCRATCH_PREFIX + "*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the download is under way (the server holds it back 1 s)
    assert list(target.glob(SCRATCH_PREFIX + "*")), "the fetch never started"
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=10)
    if how == "SIGTERM":
        assert not list(target.glob(SCRATCH_PREFIX + "*"))
    else:
        assert list(target.glob(SCRATCH_PREFIX + "*"))  # nothing runs on a kill: the next fetch cleans up
        done = subprocess.run([sys.executable, "-m", "pictrace.modelfetch"], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0 and has_model(target)
        assert not list(target.glob(SCRATCH_PREFIX + "*"))


def test_a_fetch_held_up_by_a_stuck_process_gives_up_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pictrace.modelfetch as modelfetch

    target = tmp_path / "pictrace-model"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{target}.lock"], stdout=subprocess.PIPE, text=True
    )  # a stuck fetch: holds the turn and never lets go
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(modelfetch, "LOCK_WAIT_S", 0.5)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"for over 0\.5 s"):
            modelfetch.acquire_model(settings(target), FakeLambda("http://unused", layer_zip(tmp_path / "z.zip", {})))
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


HOLD_LOCK = """
import fcntl, sys, time
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""
