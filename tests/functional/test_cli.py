"""The `pictrace` command as a script runs it: the installed entry point in a subprocess, against a local stack and
the real app served over HTTP; output, stderr and exit codes (0 ok, 1 nothing found, 2 usage, 3 service error)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local import SqsWorker, free_port
from tests.conftest import PHOTOS, ROOT, read
from tests.functional.live import index_photos, serve

EXE = Path(sys.executable).parent / "pictrace"


def sha(name: str) -> str:
    return hashlib.sha256(read(name)).hexdigest()


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Env:
    stack: Any
    api: str
    worker: SqsWorker | None = None

    def run(self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Run:
        """The CLI with the environment pointing at the stack (as the stack fixture exports it) and the API."""
        full = {**os.environ, "PICTRACE_API_URL": self.api, "COLUMNS": "200", **(env or {})}
        done = subprocess.run(
            [str(EXE), *args], env=full, input=stdin, capture_output=True, timeout=300, cwd=ROOT, check=False
        )
        return Run(done.returncode, done.stdout.decode(), done.stderr.decode())

    def keys(self, prefix: str = "") -> set[str]:
        pages = (
            self.stack.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.stack.bucket, Prefix=prefix)
        )
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def put(self, key: str, name: str) -> None:
        self.stack.client("s3").put_object(Bucket=self.stack.bucket, Key=key, Body=read(name))


@pytest.fixture(scope="session", autouse=True)
def installed() -> None:
    if not EXE.is_file():
        pytest.fail(f"{EXE} is missing: `make setup` installs the pictrace command (pip install -e layers/pictrace)")


@pytest.fixture
def live(stack: Any) -> Iterator[Env]:
    """The stack with the test photos indexed, its ingest worker running (as the stack's would), the app served."""
    from pictrace.api import create_app

    worker = index_photos(stack).start()
    with serve(create_app()) as api:
        try:
            yield Env(stack, api, worker)
        finally:
            worker.stop()


@pytest.fixture
def bare(stack: Any) -> Iterator[Env]:
    """A stack whose ingest worker is not running, as a bucket whose objects predate the stack; the app served."""
    from pictrace.api import create_app

    with serve(create_app()) as api:
        yield Env(stack, api)


def test_search_prints_a_table_and_json(live: Env) -> None:
    table = live.run("search", str(ROOT / "tests/data/astronaut.jpg"))
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    first_row = next(line for line in lines if line.lstrip().startswith("1 "))
    assert "images/astronaut.jpg" in first_row and sha("astronaut.jpg")[:12] in first_row
    assert "100.0%" in first_row
    for column in ("similar", "cosine", "ssim", "orb", "final", "key"):
        assert column in lines[0]
    assert f"{len(PHOTOS)} indexed" in table.out and "weights sscd" in table.out and "embed" in table.out

    body = live.run("search", str(ROOT / "tests/data/coffee.png"), "--json", "-k", "2").json()
    assert body["results"][0]["id"] == sha("coffee.png") and len(body["results"]) == 2

    by_id = live.run("search", sha("chelsea.webp"), "--json").json()
    assert by_id["results"][0]["id"] == sha("chelsea.webp")

    from_stdin = live.run("search", "-", "--json", stdin=read("rocket.bmp")).json()
    assert from_stdin["results"][0]["id"] == sha("rocket.bmp")


def test_search_exit_codes_and_errors_on_stderr(live: Env, tmp_path: Path) -> None:
    not_image = live.run("search", str(ROOT / "tests/data/not_an_image.txt"))
    assert not_image.code == 2 and not_image.out == ""
    assert not_image.err.startswith("pictrace: error:") and "not a supported image" in not_image.err

    unknown = live.run("search", "0" * 64)
    assert unknown.code == 1 and "no indexed image" in unknown.err

    missing = live.run("search", str(tmp_path / "nope.jpg"))
    assert missing.code == 2 and "no such file" in missing.err

    loopback = live.run("search", "http://127.0.0.1:1/a.jpg")  # the service refuses private addresses
    assert loopback.code == 2 and "loopback" in loopback.err

    down = live.run("search", str(ROOT / "tests/data/astronaut.jpg"), "--api", f"http://127.0.0.1:{free_port()}")
    assert down.code == 3 and "cannot reach the PicTrace API" in down.err

    assert live.run().code == 2  # no command: argparse's usage error
    assert live.run("search").code == 2
    assert live.run("search", "x.jpg", "--top-k", "many").code == 2
    help_ = live.run("--help")
    assert help_.code == 0 and "exit codes" in help_.out


def test_search_with_no_results_exits_1(bare: Env) -> None:
    empty = bare.run("search", str(ROOT / "tests/data/astronaut.jpg"))
    assert empty.code == 1 and "no results" in empty.err and "0 images" in empty.err


def test_ingest_a_folder_uploads_waits_and_resumes(live: Env, tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    (folder / "day2").mkdir(parents=True)
    shutil.copy(ROOT / "tests/data/rgba.png", folder / "rgba.png")
    shutil.copy(ROOT / "tests/data/astronaut.jpg", folder / "day2" / "astronaut-again.jpg")  # bytes already indexed
    shutil.copy(ROOT / "tests/data/not_an_image.txt", folder / "notes.txt")  # not an image name: not uploaded

    first = live.run("ingest", str(folder), "--key-prefix", "images/holiday/")
    assert first.code == 0, first.err
    assert "2 images" in first.out and "2 uploaded" in first.out and "indexed now: 2" in first.out
    assert {"images/holiday/rgba.png", "images/holiday/day2/astronaut-again.jpg"} <= live.keys("images/holiday/")
    assert "images/holiday/notes.txt" not in live.keys()
    found = live.run("search", str(ROOT / "tests/data/rgba.png"), "--json").json()
    assert found["results"][0]["keys"] == ["images/holiday/rgba.png"]

    again = live.run("ingest", str(folder), "--key-prefix", "images/holiday/", "--json")
    assert again.code == 0, again.err
    summary = again.json()
    assert summary["counts"] == {"already indexed": 2} and summary["states"] == {"indexed": 2}

    # a corrupt image is uploaded, the stack records why it failed, and the CLI says so (exit 1), now and later
    shutil.copy(ROOT / "tests/data/corrupt.jpg", folder / "broken.jpg")
    broken = live.run("ingest", str(folder), "--key-prefix", "images/holiday/")
    assert broken.code == 1
    assert "1 uploaded" in broken.out and "2 already indexed" in broken.out
    assert "images/holiday/broken.jpg" in broken.err and "corrupt" in broken.err
    later = live.run("ingest", str(folder), "--key-prefix", "images/holiday/")
    assert later.code == 1 and "1 failed before" in later.out and "in an earlier run" in later.err


def test_ingest_usage_errors(live: Env, tmp_path: Path) -> None:
    assert live.run("ingest", str(tmp_path / "nothing-here")).code == 2
    empty = live.run("ingest", str(tmp_path))
    assert empty.code == 1 and "no images" in empty.err
    outside = live.run("ingest", str(ROOT / "tests/data/rgba.png"), "--key-prefix", "elsewhere/")
    assert outside.code == 2 and "not under the images prefix" in outside.err
    wrong = live.run("ingest", f"s3://{live.stack.bucket}/queries/")
    assert wrong.code == 2 and "images prefix" in wrong.err


def test_ingest_backfills_objects_that_predate_the_stack(bare: Env) -> None:
    """Objects already in the bucket with nobody indexing them: the CLI runs the ingest code on them, resumably."""
    for name in ("astronaut.jpg", "coffee.png", "corrupt.jpg"):
        bare.put(f"images/old/{name}", name)
    bare.put("images/old/copy-of-astronaut.jpg", "astronaut.jpg")
    before = bare.run("stats", "--json")
    assert before.code == 0 and before.json()["indexed_images"] == 0 and before.json()["pending"] == 4

    first = bare.run("ingest", f"s3://{bare.stack.bucket}/images/old/")
    assert first.code == 1  # one of them cannot be indexed
    assert "4 objects" in first.out and "2 created" in first.out and "1 added" in first.out and "1 failed" in first.out
    assert "images/old/corrupt.jpg" in first.err

    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    index = IndexStore(Store(bare.stack.bucket, bare.stack.client("s3")), "index/")
    assert index.pointer("images/old/copy-of-astronaut.jpg") == sha("astronaut.jpg")
    assert index.get_entry(sha("astronaut.jpg"))[0].keys == (
        "images/old/astronaut.jpg",
        "images/old/copy-of-astronaut.jpg",
    )
    found = bare.run("search", str(ROOT / "tests/data/coffee.png"), "--json").json()
    assert found["results"][0]["id"] == sha("coffee.png")

    # resumed: what is indexed is skipped; the corrupt one is not tried again unless asked
    bare.put("images/old/chelsea.webp", "chelsea.webp")
    again = bare.run("ingest", f"s3://{bare.stack.bucket}/", "--json")  # the bucket's root: its images prefix
    assert again.code == 1
    summary = again.json()
    assert summary["counts"] == {"already indexed": 3, "failed before": 1, "created": 1}
    assert summary["outcomes"] == [{"key": "images/old/chelsea.webp", "action": "created", "id": sha("chelsea.webp")}]
    retried = bare.run("ingest", f"s3://{bare.stack.bucket}/images/old/", "--retry-failed", "--json")
    assert retried.json()["counts"] == {"already indexed": 4, "failed": 1}

    stats = bare.run("stats")
    assert stats.code == 0
    assert "3 distinct images (4 keys)" in stats.out and "sscd" in stats.out
    assert "failed images/old/corrupt.jpg: corrupt" in stats.out


def test_ingest_refuses_other_weights_than_the_index(bare: Env, tmp_path: Path) -> None:
    """Embeddings of other weights do not mix with the index's: refused before anything is written."""
    import numpy as np
    from pictrace.index.layout import Entry
    from pictrace.index.store import IndexStore
    from pictrace.rerank import compute_features
    from pictrace.storage import Store

    index = IndexStore(Store(bare.stack.bucket, bare.stack.client("s3")), "index/")
    features = compute_features(np.zeros((64, 64, 3), np.uint8))
    entry = Entry("f" * 64, ("images/x.jpg",), np.ones(2048, np.float32), features, {"weights": "imagenet"})
    index.create_or_add_key(entry, "images/x.jpg")
    bare.put("images/new.jpg", "astronaut.jpg")
    refused = bare.run("ingest", f"s3://{bare.stack.bucket}/images/", "--api", f"http://127.0.0.1:{free_port()}")
    assert refused.code == 2 and "'imagenet'" in refused.err and "sscd" in refused.err
    assert index.pointer("images/new.jpg") is None


def test_delete_by_key_and_by_id(live: Env) -> None:
    from pictrace.errors import NotFound
    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    index = IndexStore(Store(live.stack.bucket, live.stack.client("s3")), "index/")
    live.put("images/dup/astronaut.jpg", "astronaut.jpg")  # a second key for the same bytes
    assert live.worker is not None
    live.worker.drain()

    one = live.run("delete", "images/dup/astronaut.jpg")
    assert one.code == 0 and "deleted s3://" in one.out and "stays indexed under images/astronaut.jpg" in one.out
    assert "images/dup/astronaut.jpg" not in live.keys()
    kept = live.run("search", sha("astronaut.jpg"), "--json").json()
    assert kept["results"][0]["keys"] == ["images/astronaut.jpg"]

    by_name = live.run("delete", "coffee.png")  # a name under the images prefix
    assert by_name.code == 0 and "images/coffee.png" in by_name.out and "left the index" in by_name.out
    with pytest.raises(NotFound):
        index.get_entry(sha("coffee.png"))
    gone = live.run("search", str(ROOT / "tests/data/coffee.png"), "--json").json()
    assert sha("coffee.png") not in [r["id"] for r in gone["results"]]

    by_id = live.run("delete", sha("rocket.bmp"), "--json")
    assert by_id.code == 0 and by_id.json()["deleted"] == [
        {"key": "images/rocket.bmp", "id": sha("rocket.bmp"), "entry": "deleted", "other_keys": []}
    ]
    assert "images/rocket.bmp" not in live.keys()

    assert live.run("delete", "images/never-there.jpg").code == 1
    assert live.run("delete", "0" * 64).code == 1
    after = live.run("stats", "--json").json()
    assert after["indexed_images"] == len(PHOTOS) - 2


def test_stats_flags_and_a_dead_endpoint(live: Env) -> None:
    stats = live.run("stats", "--json")
    assert stats.code == 0, stats.err
    body = stats.json()
    assert body["indexed_images"] == len(PHOTOS) and body["failures"] == [] and body["weights"] == "sscd"
    assert body["bucket"] == live.stack.bucket and body["s3_endpoint"] == live.stack.endpoint

    # everything by flag, nothing from the environment
    flags = live.run(
        "stats",
        "--json",
        "--api",
        live.api,
        "--s3-endpoint",
        live.stack.endpoint,
        "--bucket",
        live.stack.bucket,
        env={"PICTRACE_API_URL": "", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1", "PICTRACE_BUCKET": "nope"},
    )
    assert flags.code == 0 and flags.json()["indexed_images"] == len(PHOTOS), flags.err

    no_api = live.run("stats", "--api", f"http://127.0.0.1:{free_port()}")
    assert no_api.code == 3 and f"{len(PHOTOS)} distinct images" in no_api.out and "cannot reach" in no_api.err
    no_s3 = live.run("stats", "--s3-endpoint", f"http://127.0.0.1:{free_port()}", env={"AWS_MAX_ATTEMPTS": "1"})
    assert no_s3.code == 3 and no_s3.err.startswith("pictrace: error:")
    no_bucket = live.run("stats", "--bucket", "no-such-bucket")
    assert no_bucket.code == 3 and "NoSuchBucket" in no_bucket.err


def test_ingest_refuses_a_preprocessing_the_api_does_not_serve(bare: Env, tmp_path: Path) -> None:
    """The same weights from another input size: their embeddings do not mix with what the API serves either."""
    from pictrace.embedding import SSCD_PREPROCESSINGS

    served = ROOT / "layers/model/model"
    info = json.loads((served / "model.json").read_text())
    other = next(p for p in SSCD_PREPROCESSINGS if p != info["preprocess"])
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({**info, "preprocess": other}))
    (model / "site").symlink_to(served / "site")  # the installed package itself, not a copy
    bare.put("images/new.jpg", "astronaut.jpg")
    refused = bare.run("ingest", f"s3://{bare.stack.bucket}/images/", "--model-dir", str(model))
    assert refused.code == 2 and f"({other} preprocessing)" in refused.err
    assert f"PREPROCESS={info['preprocess']}" in refused.err
    assert bare.keys("index/") == set()  # nothing written, not even the model record
