"""Copies within the collection, against the local stack: the real ingest handler on S3 events delivered through
SQS, the real copies handler on the ids ingest sent to the copies queue, the events the stack's bus routed to a queue,
and GET /duplicates and POST /duplicates/dismiss through the real search handler on API Gateway events."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pictrace import copycheck
from pictrace.copies import CopyLinks, Link, SqsCheckQueue
from pictrace.copycheck import CopyChecker, get_checker
from pictrace.index.layout import Layout

from bench.transforms import colour_shift
from infra.local import LambdaContext, SqsWorker, copies_worker, load_handler
from tests.conftest import ROOT, forget_container, read
from tests.drawn import photo, screenshot, watermarked
from tests.functional.helpers import load_event, sqs_s3_event
from tests.functional.live import serve

PHOTO = "astronaut.jpg"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crop(name: str = PHOTO, share: float = 0.5) -> bytes:
    """A JPEG of `share` of the photo's area, off-centre (CROP_BOX of the astronaut): a copy."""
    bgr = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    cw, ch = round(w * math.sqrt(share)), round(h * math.sqrt(share))
    x0, y0 = round(w * 0.25), round(h * 0.1)
    return bytes(cv2.imencode(".jpg", bgr[y0 : y0 + ch, x0 : x0 + cw], [cv2.IMWRITE_JPEG_QUALITY, 80])[1])


CROP_BOX = (80, 32, 306, 258)  # where crop() of the astronaut (320 x 320) lies in it


def recompressed(name: str = PHOTO) -> bytes:
    """The photo re-encoded, smaller and at a low JPEG quality: a copy."""
    bgr = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    small = cv2.resize(bgr, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    return bytes(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 40])[1])


class Stack:
    """The local stack with its ingest and copies handlers, and the API through the search handler."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.s3 = stack.client("s3")
        self.ingest = load_handler(ROOT / "functions/ingest/app.py")
        self.copies = copies_worker(stack)
        self.search = load_handler(ROOT / "functions/search/app.py", fresh=True)  # an app on this stack

    def put(self, files: dict[str, bytes]) -> None:
        """Upload the files and ingest them in one SQS batch, as the queue would deliver it."""
        for key, body in files.items():
            self.s3.put_object(Bucket=self.stack.bucket, Key=key, Body=body)
        result = self.ingest(sqs_s3_event(self.stack.bucket, list(files)), LambdaContext())
        assert result == {"batchItemFailures": []}

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.s3.delete_object(Bucket=self.stack.bucket, Key=key)
        result = self.ingest(sqs_s3_event(self.stack.bucket, list(keys), removed=True), LambdaContext())
        assert result == {"batchItemFailures": []}

    def check(self) -> None:
        """Run the copies handler until the copies queue is empty."""
        self.copies.drain(timeout=120)
        assert self.copies.failed == 0

    def events(self) -> list[dict[str, Any]]:
        """The Copy Found events the bus delivered since the last call (their detail, with the envelope's fields)."""
        sqs, found = self.stack.client("sqs"), []
        while True:
            got = sqs.receive_message(QueueUrl=self.stack.events_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return found
            for m in messages:
                event = json.loads(m["Body"])
                found.append({**event["detail"], "source": event["source"], "detail-type": event["detail-type"]})
                sqs.delete_message(QueueUrl=self.stack.events_url, ReceiptHandle=m["ReceiptHandle"])

    def api(self, method: str, path: str, query: str = "", body: Any = None) -> tuple[int, Any]:
        event = load_event("apigw_health.json")
        event["routeKey"] = f"{method} {path}"
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["rawQueryString"] = query
        if query:
            event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
        if body is not None:
            event["headers"]["content-type"] = "application/json"
            event["body"] = json.dumps(body)
        response = self.search(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    def groups(self, query: str = "") -> list[list[str]]:
        """GET /duplicates: each group's ids, oldest first."""
        status, body = self.api("GET", "/duplicates", query)
        assert status == 200, body
        return [[m["id"] for m in g["images"]] for g in body["groups"]]

    def links(self) -> set[tuple[str, str]]:
        """Every copy link stored in the index (each direction)."""
        layout = Layout("index/")
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.bucket, Prefix="index/")
        pairs = [layout.copy_pair(o["Key"]) for page in pages for o in page.get("Contents", [])]
        return {p for p in pairs if p is not None}


@pytest.fixture
def local(stack: Any) -> Iterator[Stack]:
    get_checker.cache_clear()  # the copies handler's checker belongs to this stack's container
    yield Stack(stack)
    get_checker.cache_clear()


def test_a_copy_is_announced_once_and_an_unrelated_image_is_not(local: Stack) -> None:
    original, copy = read(PHOTO), crop()
    local.put({"images/astronaut.jpg": original, "images/coffee.png": read("coffee.png")})
    local.check()
    assert local.events() == [] and local.groups() == []
    local.put({"images/edits/astronaut-crop.jpg": copy, "images/chelsea.webp": read("chelsea.webp")})
    local.check()
    (event,) = local.events()
    assert event["source"] == "pictrace" and event["detail-type"] == "Copy Found"
    assert (event["id"], event["keys"]) == (sha(copy), ["images/edits/astronaut-crop.jpg"])
    assert (event["copy_of"], event["copy_of_keys"]) == (sha(original), ["images/astronaut.jpg"])
    assert event["similarity"] > 90 and event["bucket"] == local.stack.bucket
    assert all(abs(a - b) < 12 for a, b in zip(event["region"], CROP_BOX, strict=True)), event["region"]
    # the oldest image first, with each link's similarity; a check run again (a redelivery) announces nothing new
    status, body = local.api("GET", "/duplicates")
    assert status == 200 and body["total"] == 1 and body["images"] == 2 and body["next"] is None
    (group,) = body["groups"]
    assert [m["keys"] for m in group["images"]] == [["images/astronaut.jpg"], ["images/edits/astronaut-crop.jpg"]]
    assert [(k["a"], k["b"]) for k in group["links"]] == [(sha(copy), sha(original))]
    assert group["links"][0]["similarity"] == event["similarity"]
    local.put({"images/edits/astronaut-crop.jpg": copy})  # the same bytes again: checked again
    local.check()
    assert local.events() == [] and local.groups() == [[sha(original), sha(copy)]]
    assert local.groups("prefix=images/edits/") == []  # the original is not under it
    assert local.groups("prefix=images/") == [[sha(original), sha(copy)]]


def test_the_bus_delivers_to_a_log_group_when_asked(local: Stack) -> None:
    """Where the bench reads Copy Found events from (LocalStack.log_events): each event's detail with the time it was
    delivered, and nothing in the events queue."""
    local.stack.log_events()
    local.put({"images/astronaut.jpg": read(PHOTO)})
    local.check()
    before = time.time()
    local.put({"images/edits/astronaut-crop.jpg": crop()})
    local.check()
    ((at, detail),) = local.stack.logged_events()
    assert (detail["id"], detail["copy_of"]) == (sha(crop()), sha(read(PHOTO)))
    assert before - 1 <= at <= time.time() + 1 and local.events() == []


def meme(name: str = PHOTO) -> bytes:
    """The photo between two caption bands, each a quarter of its height: a copy that holds its original."""
    bgr = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    band = np.full((h // 4, w, 3), 255, np.uint8)
    top, bottom = band.copy(), band.copy()
    cv2.putText(top, "WHEN THE COPY", (10, h // 6), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bottom, "HOLDS THE ORIGINAL", (10, h // 6), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 3, cv2.LINE_AA)
    return bytes(cv2.imencode(".jpg", np.vstack([top, bgr, bottom]), [cv2.IMWRITE_JPEG_QUALITY, 85])[1])


def test_a_copy_that_holds_its_original_names_no_region_in_it(local: Stack) -> None:
    """A meme checked after its original: announced, but with no region (the original sits inside the meme, not the
    meme inside the original: a box of the meme mapped into the original would lie outside it)."""
    original, copy = read(PHOTO), meme()
    local.put({"images/astronaut.jpg": original})
    local.check()
    local.put({"images/edits/astronaut-meme.jpg": copy})
    local.check()
    (event,) = local.events()
    assert (event["id"], event["copy_of"]) == (sha(copy), sha(original)) and event["region"] is None


def test_screenshots_of_one_app_are_copies_only_of_the_photos_they_show(local: Stack) -> None:
    """Screenshots of different photos in the same viewer share most of their pixels; their embeddings are close
    enough to be called copies of each other (two of these pairs are, without pictrace.frames). Each is a copy of
    the photo it shows, and of nothing else."""
    original = read(PHOTO)
    shots = {name: screenshot(name) for name in (PHOTO, "camera.tiff", "chelsea.webp")}
    local.put({"images/astronaut.jpg": original})
    local.check()
    local.put({f"images/shots/{name}.png": data for name, data in shots.items()})
    local.check()
    assert local.groups() == [[sha(original), sha(shots[PHOTO])]]
    (event,) = local.events()
    assert {event["id"], event["copy_of"]} == {sha(original), sha(shots[PHOTO])}


def under_watermark(name: str, quality: int = 90) -> bytes:
    """A JPEG of the test photo under the big watermark tests.drawn draws."""
    return bytes(cv2.imencode(".jpg", watermarked(photo(name)), [cv2.IMWRITE_JPEG_QUALITY, quality])[1])


def test_two_pictures_under_one_watermark_are_not_copies_of_each_other(local: Stack) -> None:
    """Two textures under the same big watermark: the model sees the watermark and little else (their cosine is far
    over the verdict's threshold) and the watermark's keypoints agree at the same place, but most of what they show
    differs (pictrace.templates): neither linked nor announced, and search does not call one a copy of the other.
    Each is still a copy of itself re-encoded under it."""
    grass, gravel = under_watermark("grass.jpg"), under_watermark("gravel.jpg")
    local.put({"images/grass.jpg": grass, "images/gravel.jpg": gravel})
    local.check()
    assert local.events() == [] and local.groups() == []
    again = under_watermark("grass.jpg", quality=50)
    local.put({"images/edits/grass-q50.jpg": again})
    local.check()
    (event,) = local.events()
    assert {event["id"], event["copy_of"]} == {sha(grass), sha(again)}
    assert local.groups() == [[sha(grass), sha(again)]]
    status, body = local.api("POST", "/search", body={"image_base64": base64.b64encode(grass).decode(), "top_k": 3})
    assert status == 200, body
    found = {r["id"]: r for r in body["results"]}
    other = found[sha(gravel)]
    assert other["scores"]["cosine"] > 0.5 and other["scores"]["inliers"] >= 50  # both signals would call it
    assert other["match"] is False and other["scores"]["template"]
    assert found[sha(again)]["match"] is True and not found[sha(again)]["scores"]["template"]


def test_a_screenshot_of_a_texture_is_a_copy_of_it_by_the_photo_it_frames(local: Stack) -> None:
    """In a screenshot of a lawn the model sees the window more than the lawn (the whole pictures' cosine is 0.26, far
    under the threshold), but the photo it frames matches the lawn (0.67): the screenshot's check finds the lawn by
    that photo's embedding and calls it a copy on it, as search does without its region search; the gravel is not
    one."""
    grass, gravel, shot = read("grass.jpg"), read("gravel.jpg"), screenshot("grass.jpg")
    local.put({"images/grass.jpg": grass, "images/gravel.jpg": gravel})
    local.check()
    assert local.events() == []
    status, body = local.api("POST", "/search", body={"image_base64": base64.b64encode(shot).decode(), "top_k": 3})
    assert status == 200, body
    top, *others = body["results"]
    assert top["id"] == sha(grass) and top["match"] and not any(r["match"] for r in others)
    assert "regions" not in body["timings_ms"]  # called on the whole query
    local.put({"images/shots/grass.png": shot})
    local.check()
    (event,) = local.events()
    assert {event["id"], event["copy_of"]} == {sha(grass), sha(shot)}
    assert local.groups() == [[sha(grass), sha(shot)]]


def recoloured(name: str) -> bytes:
    """The photo under the bench's colour edit (bench.transforms.colour_shift: hue +90 degrees, saturation x1.5)."""
    bgr = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    shifted = colour_shift(bgr, np.random.default_rng(0), 90, 1.5)
    return bytes(cv2.imencode(".jpg", shifted, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])


def test_two_textures_recoloured_alike_are_a_weak_link_that_merges_no_groups(local: Stack) -> None:
    """A lawn and gravel under the same colour filter look alike to the model, and none of their keypoints agree:
    the check links them weakly (its event says so), and the groups keep the lawn's copy and the gravel's apart."""
    grass, gravel, grass_hue, gravel_hue = (
        read("grass.jpg"),
        read("gravel.jpg"),
        *map(recoloured, ("grass.jpg", "gravel.jpg")),
    )
    local.put({"images/grass.jpg": grass, "images/gravel.jpg": gravel})
    local.put({"images/hue/grass.jpg": grass_hue, "images/hue/gravel.jpg": gravel_hue})
    local.check()
    weak = {frozenset((e["id"], e["copy_of"])) for e in local.events() if e["weak"]}
    assert weak == {frozenset((sha(grass_hue), sha(gravel_hue)))}
    assert sorted(sorted(g) for g in local.groups()) == sorted(
        [sorted([sha(grass), sha(grass_hue)]), sorted([sha(gravel), sha(gravel_hue)])]
    )


def test_a_deleted_image_leaves_its_group_and_its_links_go(local: Stack) -> None:
    original, copy, small = read(PHOTO), crop(), recompressed()
    local.put({"images/a.jpg": original})
    local.check()
    local.put({"images/b.jpg": copy, "images/c.jpg": small})
    local.check()
    ((oldest, *rest),) = local.groups()  # b and c are indexed within the same second: either may come second
    assert oldest == sha(original) and sorted(rest) == sorted([sha(copy), sha(small)])
    local.delete("images/b.jpg")
    assert local.groups() == [[sha(original), sha(small)]]
    assert not any(sha(copy) in pair for pair in local.links())  # none of its links is left in the index
    local.delete("images/a.jpg")
    assert local.groups() == [] and local.links() == set()
    local.check()  # the checks queued for nothing: nothing comes back
    assert local.groups() == [] and local.links() == set()


@pytest.mark.parametrize("deleted", ["images/a.jpg", "images/b.jpg"])  # the copy found, or the image checked
def test_an_image_deleted_while_its_copy_is_linked_keeps_no_link(
    local: Stack, deleted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deleting ingest removes an image's links before a check that linked it writes the link: the batch's
    settle sees the image gone and removes the link that check wrote."""
    original, copy = read(PHOTO), crop()
    local.put({"images/a.jpg": original})
    local.check()
    local.put({"images/b.jpg": copy})
    record = CopyLinks.record

    def deleted_first(self: CopyLinks, links: Sequence[Link]) -> None:
        if links:  # b's check found a: one of them is deleted (its links removed) before the link is written
            local.delete(deleted)
        record(self, links)

    monkeypatch.setattr(CopyLinks, "record", deleted_first)
    local.check()
    assert local.links() == set() and local.groups() == []


def test_a_link_to_an_image_the_index_view_lags_behind_on_is_kept(
    local: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image the refreshed index does not hold but S3 does (a view behind S3) keeps its links: settle confirms
    an image gone before its links go."""
    original, copy = read(PHOTO), crop()
    local.put({"images/a.jpg": original})
    local.check()
    local.put({"images/b.jpg": copy})
    settle = CopyChecker.settle

    def behind(self: CopyChecker) -> None:
        monkeypatch.setattr(self.service.backend, "keys", lambda ids: {})
        settle(self)

    monkeypatch.setattr(CopyChecker, "settle", behind)
    local.check()
    assert local.links() == {(sha(original), sha(copy)), (sha(copy), sha(original))}


@pytest.mark.parametrize("few", [1000, 0])  # the marks listed by the batch, or looked up one pair at a time
def test_a_dismissed_pair_stays_dismissed_after_a_reindex(
    local: Stack, few: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copycheck, "FEW_DISMISSED", few)
    original, copy, other = read(PHOTO), crop(), crop("chelsea.webp")
    local.put({"images/a.jpg": original, "images/cat.webp": read("chelsea.webp")})
    local.check()
    local.put({"images/b.jpg": copy, "images/cat-crop.jpg": other})
    local.check()
    assert len(local.events()) == 2 and len(local.groups()) == 2
    status, body = local.api("POST", "/duplicates/dismiss", body={"a": sha(original), "b": sha(copy)})
    assert status == 200 and body["dismissed"] is True
    assert local.groups() == [[sha(read("chelsea.webp")), sha(other)]]
    # reindexed: both images deleted and uploaded again (new entries, the same content ids), and checked again
    local.delete("images/a.jpg", "images/b.jpg")
    local.put({"images/again/a.jpg": original, "images/again/b.jpg": copy})
    local.check()
    assert (sha(copy), sha(original)) in local.links()  # found again...
    assert local.groups() == [[sha(read("chelsea.webp")), sha(other)]]  # ...and still not a copy
    assert local.events() == []  # nor announced again
    status, body = local.api("POST", "/duplicates/dismiss", body={"a": sha(copy), "b": sha(original)})
    assert status == 200 and body["dismissed"] is False  # marked already, whichever order
    status, body = local.api("POST", "/duplicates/dismiss", body={"a": sha(copy), "b": sha(copy)})
    assert status == 400
    status, body = local.api("POST", "/duplicates/dismiss", body={"a": sha(copy), "b": "0" * 64})
    assert status == 404


def test_two_copies_in_one_batch_find_each_other(local: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # the copies function's view of the index is loaded before they exist, and would not look again for an hour
    monkeypatch.setenv("PICTRACE_REFRESH_SECONDS", "3600")
    forget_container()
    get_checker.cache_clear()
    local.put({"images/coffee.png": read("coffee.png")})
    local.check()
    original, copy = read(PHOTO), crop()
    local.put({"images/a.jpg": original, "images/b.jpg": copy})
    assert _queued(local) == 2
    local.check()
    assert local.groups() == [[sha(original), sha(copy)]]
    assert {(e["id"], e["copy_of"]) for e in local.events()} in (
        {(sha(original), sha(copy))},
        {(sha(copy), sha(original))},
    )
    assert local.links() == {(sha(original), sha(copy)), (sha(copy), sha(original))}


def test_a_check_reads_the_index_again_only_for_an_image_it_does_not_hold_yet(
    local: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker's index, read before an image was indexed, is read again for that image's check; checks of images
    it holds already (a redelivery here; in a steady stream, the images indexed before the last batch settled) list
    nothing of the index."""
    monkeypatch.setenv("PICTRACE_REFRESH_SECONDS", "3600")  # only a check that needs it reads the index again
    forget_container()
    get_checker.cache_clear()
    listed: list[str] = []
    client = get_checker().service.store.client  # the copies handler's S3 client (the process's, ingest's too)
    listing = "before-parameter-build.s3.ListObjectsV2"
    client.meta.events.register(listing, lambda params, **_: listed.append(params.get("Prefix", "")))
    index_listings = lambda: [p for p in listed if p.startswith(("index/changes/", "index/entries/"))]  # noqa: E731
    local.put({"images/astronaut.jpg": read(PHOTO)})
    local.check()
    local.put({"images/crop.jpg": crop()})
    listed.clear()
    local.check()
    assert index_listings() and [e["copy_of"] for e in local.events()] == [sha(read(PHOTO))], listed
    SqsCheckQueue(local.stack.copies_url, local.stack.client("sqs")).enqueue([sha(crop()), sha(read(PHOTO))])
    listed.clear()
    local.check()
    assert index_listings() == [] and local.events() == []  # both held, both linked already: nothing to settle
    assert local.groups() == [[sha(read(PHOTO)), sha(crop())]]


def test_a_check_asks_the_index_for_an_images_keys_once(local: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checked image's keys are asked for once (is it held yet?), the copies' come with the search's hits: with
    S3 Vectors each asking is a GetVectors request. The batch's settle asks for every image it looks at again."""
    local.put({"images/astronaut.jpg": read(PHOTO)})
    local.check()
    local.put({"images/crop.jpg": crop()})
    backend = get_checker().service.backend
    backend.refresh(force=True)  # it holds the crop, as the index read when the last batch settled would
    asked: list[tuple[str, ...]] = []
    keys = backend.keys
    monkeypatch.setattr(backend, "keys", lambda ids: asked.append(tuple(ids)) or keys(ids))
    local.check()
    assert [e["copy_of"] for e in local.events()] == [sha(read(PHOTO))]
    assert asked == [(sha(crop()),), tuple(sorted((sha(crop()), sha(read(PHOTO)))))], asked


def _queued(local: Stack) -> int:
    attributes = local.stack.client("sqs").get_queue_attributes(
        QueueUrl=local.stack.copies_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_the_worker_reads_what_ingest_sent(local: Stack) -> None:
    """The copies queue's messages are what the handler parses: a message that names no image fails alone."""
    sqs = local.stack.client("sqs")
    sqs.send_message(QueueUrl=local.stack.copies_url, MessageBody=json.dumps({"key": "images/x.jpg"}))
    local.put({"images/a.jpg": read(PHOTO)})
    worker = SqsWorker(
        local.stack, local.copies.handler, queue_url=local.stack.copies_url, function_name="CopiesFunction"
    )
    worker.poll_once()
    assert worker.processed == 1 and worker.failed == 1


def pictrace(api: str, *args: str, drop: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """The installed `pictrace` command against the stack (as the stack fixture exports it) and the API."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pictrace"), *args],
        env={**env, "PICTRACE_API_URL": api, "COLUMNS": "200"},
        capture_output=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_the_command_lists_dismisses_and_rebuilds(local: Stack) -> None:
    from pictrace.api import create_app

    original, copy = read(PHOTO), crop()
    local.put({"images/a.jpg": original, "images/cat.webp": read("chelsea.webp")})
    local.check()
    local.put({"images/edits/b.jpg": copy})
    local.check()
    with serve(create_app()) as api:
        code, out, err = pictrace(api, "duplicates")
        assert code == 0, err
        assert "group 1: 2 images" in out and "images/a.jpg" in out and "images/edits/b.jpg" in out
        code, out, _ = pictrace(api, "duplicates", "--json")
        (group,) = json.loads(out)["groups"]
        assert code == 0 and [m["id"] for m in group["images"]] == [sha(original), sha(copy)]
        code, out, _ = pictrace(api, "duplicates", "--csv")
        rows = list(csv.reader(io.StringIO(out)))
        assert code == 0 and rows[0][:3] == ["group", "a", "a_keys"] and len(rows) == 2
        assert rows[1][1:5] == [sha(copy), "images/edits/b.jpg", sha(original), "images/a.jpg"]
        code, out, err = pictrace(api, "duplicates", "--prefix", "images/edits/")
        assert code == 1 and out.strip().endswith("0 groups, 0 images") and "no copies found under" in err

        # an index from before the check: its links are not there; --rebuild queues every image on the local
        # stack's copies queue (found from the S3 endpoint), and the stack's check finds them again
        for a, b in list(local.links()):
            local.s3.delete_object(Bucket=local.stack.bucket, Key=Layout("index/").copy_key(a, b))
        assert pictrace(api, "duplicates")[0] == 1
        assert len(local.events()) == 1  # when the pair was first found
        code, out, err = pictrace(
            api, "duplicates", "--rebuild", "--no-events", "-q", drop=("PICTRACE_COPIES_QUEUE_URL",)
        )
        assert code == 0 and out.startswith("3 indexed images queued"), err
        local.check()
        code, out, _ = pictrace(api, "duplicates", "--json")
        assert code == 0 and len(json.loads(out)["groups"]) == 1
        assert local.events() == []  # the rebuild was asked to announce nothing

        code, out, err = pictrace(api, "duplicates", "--dismiss", sha(original), sha(copy))
        assert code == 0 and "marked not a copy" in out, err
        assert pictrace(api, "duplicates")[0] == 1
        code, out, err = pictrace(api, "duplicates", "--dismiss", sha(original), "images/a.jpg")
        assert code == 2 and "two image ids" in err
