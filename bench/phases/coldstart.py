"""Phase "cold start": fresh processes (bench.container) running the search and ingest handlers as a new container
would ("new", each init step timed), as Lambda runs them ("lambda") and as SnapStart restores them ("restore"); the
model attached or fetched through LayerApi at THROUGHPUT_MB_S, imports from .pyc or compiled from "source"."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench import metrics
from bench.common import ROOT
from bench.profile import Profile

THROUGHPUT_MB_S = 50.0  # MB/s from S3 in a new container: measured from Lambda at 400-700 Mbit/s; the lower end
LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:pictrace-model:1"
ARCHIVE_PATH = "/layer-archives/pictrace-model-1.zip"
PREFETCH_WRAPPER = ROOT / "layers" / "pictrace" / "bin" / "pictrace-prefetch-model"  # AWS_LAMBDA_EXEC_WRAPPER
PATHS = (
    "new attached pyc|lambda attached pyc|new fetched pyc|lambda fetched pyc|new attached source|restore attached pyc"
)
Variant = tuple[str, str, str, str]  # function, path, model, imports
VARIANTS: tuple[Variant, ...] = tuple(  # in the order the tables show them
    (f, p, m, i) for f in ("search", "ingest") for p, m, i in map(str.split, PATHS.split("|"))
)


@dataclass(frozen=True)
class ColdStarts:  # results.json's "coldstart" and "coldstart_compacted"
    runs: list[dict[str, Any]]
    variants: dict[str, dict[str, Any]]
    throughput_mb_s: float
    compaction: dict[str, Any] | None = None


def layer_archive(model_dir: Path) -> bytes:
    """The model layer's archive as `sam build` packages it: the model directory as model/ (deflate)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            zf.write(path, f"model/{path.relative_to(model_dir)}")
    return buffer.getvalue()


class LayerApi:  # Lambda's GetLayerVersionByArn as pictrace.modelfetch calls it; the archive sent at throughput_mb_s
    def __init__(self, archive: bytes, throughput_mb_s: float = THROUGHPUT_MB_S) -> None:
        sha = base64.b64encode(hashlib.sha256(archive).digest()).decode()
        self.archive_bytes, self.downloads, api = len(archive), 0, self  # downloads: the archive's

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == ARCHIVE_PATH:
                    api.downloads += 1
                    self._send(200, "application/zip", archive, paced=True)
                    return
                found = url.path == "/2018-10-31/layers" and parse_qs(url.query).get("Arn") == [LAYER_ARN]
                content = {"Location": api.endpoint + ARCHIVE_PATH, "CodeSha256": sha, "CodeSize": len(archive)}
                answer = {"LayerVersionArn": LAYER_ARN, "Version": 1, "Content": content}
                body = json.dumps(answer if found else {"Type": "User", "message": "not found"}).encode()
                self._send(200 if found else 404, "application/json", body)

            def _send(self, status: int, kind: str, body: bytes, paced: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                started, step = time.perf_counter(), 1 << 18
                for sent in range(0, len(body), step):
                    chunk = body[sent : sent + step]
                    if paced:  # each chunk sent once the throughput would have delivered it
                        due = started + (sent + len(chunk)) / (throughput_mb_s * 1e6)
                        time.sleep(max(0.0, due - time.perf_counter()))
                    self.wfile.write(chunk)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LayerApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_images(query: Path, n: int, salt: str) -> list[bytes]:
    """n distinct new JPEGs (quality 95) of the query for ingest's first requests: a 16x16 block painted per image."""
    import cv2
    import numpy as np

    image = cv2.imread(str(query), cv2.IMREAD_COLOR)
    blocks = max(1, image.shape[1] // 16)
    out = []
    for i in range(n):
        changed = image.copy()
        x = 16 * (i % blocks)
        changed[:16, x : x + 16] = (np.uint8(i * 37 % 256), np.uint8(len(salt) % 256), np.uint8(i % 251))
        ok, jpeg = cv2.imencode(".jpg", changed, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        out.append(jpeg.tobytes())
    return out


def stdlib_only(pyc: Path, out: Path) -> Path:
    """A .pyc prefix holding only the standard library's files of pyc (Lambda's runtime ships those)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    source = pyc / stdlib.relative_to(stdlib.anchor)
    if source.is_dir():
        shutil.copytree(source, out / stdlib.relative_to(stdlib.anchor))
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_child(function: str, path: str, arg: str, env: dict[str, str], wrapped: bool = False) -> dict[str, Any]:
    """One bench.container process's JSON (wrapped: started through the model-fetching function's exec wrapper)."""
    command = [sys.executable, "-m", "bench.container", function, path, repr(time.time()), arg]
    command = [str(PREFETCH_WRAPPER), *command] if wrapped else command
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.container {function} {path} failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def derive(run: dict[str, Any], throughput_mb_s: float) -> dict[str, Any]:
    """The run with the figures the goals read: the download at the assumed throughput in place of the loopback's."""
    fetch = run.get("fetch")
    modelled = fetch["archive_bytes"] / (throughput_mb_s * 1e6) * 1000 if fetch else 0.0
    measured = fetch["download_ms"] if fetch else 0.0
    out = dict(run)
    if fetch:
        out["download_modelled_ms"] = round(modelled, 1)
        # "lambda": the acquisition happened in the first request, which reports the fetch's steps only
        acquired = run["acquire_ms"] if "acquire_ms" in run else fetch["lookup_ms"] + measured + fetch["extract_ms"]
        out["acquire_modelled_ms"] = round(acquired - measured + modelled, 1)
    if run["path"] != "restore":  # new containers: "lambda" has only the import before its first request
        out["init_ms"] = round(sum(run.get(k, 0.0) for k in ("import_ms", "acquire_ms", "model_ms", "index_ms")), 1)
        out["to_first_response_ms"] = round(run["total_ms"] - measured + modelled, 1)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: the run whose headline figure (to the first response, or the restore path) is the median."""
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == label]
        key = "restore_path_ms" if mine[0]["path"] == "restore" else "to_first_response_ms"
        median = sorted(mine, key=lambda r: r[key])[len(mine) // 2]
        out[label] = {**median, "runs": len(mine), "p50": metrics.percentile([r[key] for r in mine], 50)}
    return out


def cold_starts(
    profile: Profile, query: Path, variants: tuple[Variant, ...] = VARIANTS, throughput_mb_s: float = THROUGHPUT_MB_S
) -> ColdStarts:
    """profile.coldstarts runs of each variant on the bench's stack (this environment), searching with the query."""
    from pictrace.storage import s3_client

    model_dir = Path(os.environ["PICTRACE_MODEL_DIR"])
    bucket = os.environ["PICTRACE_BUCKET"]
    prefix = os.environ.get("PICTRACE_IMAGES_PREFIX", "images/")
    ingests = sum(1 for v in variants if v[0] == "ingest") * profile.coldstarts + 1
    images = iter(new_images(query, ingests, salt=str(time.time())))
    runs: list[dict[str, Any]] = []
    archive = layer_archive(model_dir)
    with tempfile.TemporaryDirectory(prefix="pictrace-coldstart-") as tmp, LayerApi(archive, throughput_mb_s) as api:
        work = Path(tmp)
        paths = [ROOT / "bench/lambda_site", ROOT / "layers/pictrace", ROOT]
        base = {
            **os.environ,
            # lambda_site: every Python these processes start hides what the layers do not ship (the prefetch too)
            "PYTHONPATH": os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")]),
            "PICTRACE_MODEL_LAYER": LAYER_ARN,
            "AWS_ENDPOINT_URL_LAMBDA": api.endpoint,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        base.pop("PICTRACE_REFRESH_SECONDS", None)  # the product's default

        def arg_for(function: str) -> str:
            if function == "search":
                return str(query)
            key = f"{prefix}coldstart/{time.time_ns()}.jpg"
            s3_client().put_object(Bucket=bucket, Key=key, Body=next(images))
            return key

        pyc = work / "pyc"
        priming = {**base, "PYTHONPYCACHEPREFIX": str(pyc), "PICTRACE_MODEL_DIR": str(model_dir)}
        priming.pop("PYTHONDONTWRITEBYTECODE")
        for function in dict.fromkeys(v[0] for v in variants):  # writes the .pyc of every module the path imports
            run_child(function, "new", arg_for(function), priming)
        for i in range(profile.coldstarts):
            for function, path, model, imports in variants:
                model_at = model_dir if model == "attached" else work / f"model-{len(runs)}"
                compiled = pyc if imports == "pyc" else stdlib_only(pyc, work / f"src-{len(runs)}")
                env = {**base, "PICTRACE_MODEL_DIR": str(model_at), "PYTHONPYCACHEPREFIX": str(compiled)}
                # as Lambda runs a function that fetches the model: through template.yaml's AWS_LAMBDA_EXEC_WRAPPER
                run = run_child(function, path, arg_for(function), env, path == "lambda" and model == "fetched")
                run.update(variant=f"{function} {path} {model} {imports}", model=model, imports=imports, n=i)
                runs.append(derive(run, throughput_mb_s))
    return ColdStarts(runs, summarise(runs), throughput_mb_s)


def compacted_cold_starts(profile: Profile, settings: Any, query: Path) -> ColdStarts:
    """One compaction of the index (pictrace.wiring.compact), then search's cold starts again."""
    from pictrace.wiring import compact, wire

    started = time.perf_counter()
    outcome = compact(wire(settings))
    seconds = time.perf_counter() - started
    after = cold_starts(profile, query, tuple(v for v in VARIANTS if v[0] == "search" and v[3] == "pyc"))
    compaction = {"seconds": seconds, **{k: v for k, v in vars(outcome).items() if k != "written"}}
    return ColdStarts(after.runs, after.variants, after.throughput_mb_s, compaction)
