"""POST /compare (and GET /thumbnail, `pictrace compare`): a crop and a quarter turn of an indexed photo are found
where they are in their original, the picture shows both images, every query kind works, bad input gets search's
4xx, and the S3 Vectors backend compares from the same entries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import cv2
import numpy as np
import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient
from pictrace.compare import HEADER, PICTURE_GAP

from tests.conftest import PHOTOS, ROOT, read
from tests.functional.live import index_photos, serve
from tests.regions import iou

PHOTO = "astronaut.jpg"
MIN_IOU = 0.8


def sha(name: str) -> str:
    return hashlib.sha256(read(name)).hexdigest()


def photo(name: str = PHOTO) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)


def png(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".png", bgr)[1].tobytes()


def crop30(bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """30 % of the photo's area, off-centre, and where it lies in the photo (x0, y0, x1, y1)."""
    h, w = bgr.shape[:2]
    cw, ch = round(w * math.sqrt(0.3)), round(h * math.sqrt(0.3))
    x0, y0 = round(w * 0.35), round(h * 0.15)
    return bgr[y0 : y0 + ch, x0 : x0 + cw], (x0, y0, x0 + cw, y0 + ch)


def quarter_turn(bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The photo turned 90 degrees counter-clockwise: it lies on the whole original."""
    h, w = bgr.shape[:2]
    return np.ascontiguousarray(np.rot90(bgr)), (0, 0, w, h)


@pytest.fixture
def client(stack: Any) -> Iterator[TestClient]:
    from pictrace.api import create_app

    index_photos(stack)
    yield TestClient(create_app())


def compare(client: TestClient, data: bytes, target: str, **params: str) -> Any:
    return client.post("/compare", params={"target": target, **params}, files={"file": ("q.png", data, "image/png")})


def panels(picture: np.ndarray, left_width: int) -> tuple[np.ndarray, np.ndarray]:
    """The query's and the indexed image's halves of a rendered picture."""
    body = picture[HEADER:]
    return body[:, :left_width], body[:, left_width + PICTURE_GAP :]


def resembles(panel: np.ndarray, image: np.ndarray) -> float:
    """Correlation of a picture's panel with an image scaled to it (lines drawn over it lower it a little)."""
    h, w = image.shape[:2]
    scale = panel.shape[0] / h
    size = (round(w * scale), panel.shape[0])
    ref = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY).astype(np.float64)
    got = cv2.cvtColor(panel[:, : size[0]], cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(np.corrcoef(ref.ravel(), got.ravel())[0, 1])


@pytest.mark.parametrize("edit", [crop30, quarter_turn], ids=["crop 30 %", "turned 90°"])
def test_a_crop_and_a_quarter_turn_are_found_where_they_are_and_drawn(client: TestClient, edit: Any) -> None:
    original = photo()
    query, where = edit(original)
    response = compare(client, png(query), sha(PHOTO))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == sha(PHOTO) and body["keys"] == [f"images/{PHOTO}"]
    assert body["indexed"]["width"] == original.shape[1] and body["indexed"]["height"] == original.shape[0]
    assert body["query"]["width"] == query.shape[1] and body["query"]["height"] == query.shape[0]
    assert body["inliers"] >= 30 and body["inliers"] == len(body["correspondences"]) <= body["matches"]
    assert body["match"] in (True, False)  # the default model is calibrated (how well: the benchmark, not this test)
    assert body["scores"]["inliers"] >= 30 and 0 <= body["similarity"] <= 100
    measured = iou(np.array(body["region"]), where)
    assert measured >= MIN_IOU, (body["region"], where)
    # every correspondence agrees with the affine transform, in each image's own pixels
    affine = np.array(body["affine"])
    q = np.array([c["query"] for c in body["correspondences"]])
    i = np.array([c["indexed"] for c in body["correspondences"]])
    assert np.median(np.linalg.norm(q @ affine[:, :2].T + affine[:, 2] - i, axis=1)) < 4
    turn = body["transform"]
    assert not turn["mirrored"] and abs(turn["scale"] - 1) < 0.05
    assert abs(turn["rotation_degrees"] - (90 if edit is quarter_turn else 0)) < 2

    # the picture: both images side by side, the query left
    for fmt, magic in (("png", b"\x89PNG"), ("jpeg", b"\xff\xd8\xff")):
        response = compare(client, png(query), sha(PHOTO), format=fmt)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == f"image/{fmt}" and response.content.startswith(magic)
        picture = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] <= 1600 + PICTURE_GAP and picture.shape[0] <= 480 + HEADER
        left_width = round(query.shape[1] * (picture.shape[0] - HEADER) / query.shape[0])
        left, right = panels(picture, left_width)
        assert resembles(left, query) > 0.8 and resembles(right, original) > 0.8
        assert resembles(right, query) < 0.5  # the two halves are not the same image twice
        assert int(response.headers["x-pictrace-inliers"]) >= 30
        assert iou(region_header(response), where) >= MIN_IOU


def test_an_inset_is_placed_in_the_query_and_a_crop_in_the_original(client: TestClient) -> None:
    """The photo at 40 % of the width inside another photo: `inset`, and original_region is where it was placed in
    the query (the picture outlines it there); a crop lies in its original: not inset, region says where."""
    original, background = photo(), photo("coffee.png")
    bh, bw = background.shape[:2]
    w = round(bw * 0.4)
    h = round(original.shape[0] * w / original.shape[1])
    x0, y0 = round(bw * 0.45), round(bh * 0.3)
    query = background.copy()
    query[y0 : y0 + h, x0 : x0 + w] = cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA)
    body = compare(client, png(query), sha(PHOTO)).json()
    assert body["inset"] is True and body["inliers"] >= 12, body.get("inliers")
    assert iou(np.array(body["original_region"]), (x0, y0, x0 + w, y0 + h)) >= MIN_IOU, body["original_region"]
    box = body["original_region_box"]
    assert box[0] < box[2] and box[1] < box[3]
    response = compare(client, png(query), sha(PHOTO), format="png")
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")

    cropped, where = crop30(original)
    body = compare(client, png(cropped), sha(PHOTO)).json()
    assert body["inset"] is False and iou(np.array(body["region"]), where) >= MIN_IOU
    # the other way round, the original mapped into the crop spills far beyond it
    assert iou(np.array(body["original_region"]), (0, 0, cropped.shape[1], cropped.shape[0])) < 0.5


def region_header(response: Any) -> np.ndarray:
    """The matched region a picture response names in its X-PicTrace-Region header."""
    return np.array([[float(v) for v in corner.split(",")] for corner in response.headers["x-pictrace-region"].split()])


def test_an_indexed_image_with_a_trimmed_border_is_exact(client: TestClient) -> None:
    """camera.tiff has a uniform border that ingest trimmed: the entry records the content's box, so the JSON (from
    the index alone) and the picture (which decodes the original) both place the crop where it is."""
    crop, where = crop30(photo("camera.tiff"))
    body = compare(client, png(crop), sha("camera.tiff")).json()
    assert body["exact"] is True and body["inliers"] >= 30
    assert iou(np.array(body["region"]), where) >= 0.9
    picture = compare(client, png(crop), sha("camera.tiff"), format="png")
    assert iou(region_header(picture), where) >= 0.9


def test_every_query_kind_and_the_accept_header(client: TestClient, stack: Any) -> None:
    crop, where = crop30(photo())
    data = png(crop)
    target = sha(PHOTO)
    by_file = compare(client, data, target).json()
    b64 = client.post(f"/compare?target={target}", json={"image_base64": base64.b64encode(data).decode()}).json()
    up = client.post("/uploads", json={"content_type": "image/png"}).json()
    stack.client("s3").put_object(Bucket=stack.bucket, Key=up["key"], Body=data)
    by_key = client.post(f"/compare?target={target}", json={"key": up["key"]}).json()
    for body in (b64, by_key):
        assert body["region"] == by_file["region"] and body["inliers"] == by_file["inliers"]
    assert iou(np.array(by_key["region"]), where) >= MIN_IOU

    # an indexed image against itself, by id: the identity, over the whole image
    itself = client.post(f"/compare?target={target}", json={"id": target})
    assert itself.status_code == 200, itself.text
    body = itself.json()
    assert body["query"]["id"] == target and body["scores"]["final"] > 0.99
    h, w = photo().shape[:2]
    assert iou(np.array(body["region"]), (0, 0, w, h)) > 0.98
    assert np.allclose(body["affine"], [[1, 0, 0], [0, 1, 0]], atol=0.02)

    # by id with a picture: both originals come from the bucket
    other = client.post(f"/compare?target={sha('coffee.png')}", json={"id": target}, headers={"accept": "image/jpeg"})
    assert other.status_code == 200 and other.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(other.content, np.uint8), cv2.IMREAD_COLOR) is not None
    assert client.post(f"/compare?target={target}", json={"id": sha("coffee.png")}).json()["inliers"] < 30


def test_bad_input_gets_the_same_answer_as_search(client: TestClient) -> None:
    target = sha(PHOTO)
    bad: list[dict[str, Any]] = [
        {"files": {"file": ("x.txt", read("not_an_image.txt"), "text/plain")}},
        {"files": {"file": ("t.jpg", read("truncated.jpg"), "image/jpeg")}},
        {"json": {}},
        {"json": {"id": "0" * 64}},
        {"json": {"id": "nothex"}},
        {"json": {"image_base64": "%%%"}},
        {"json": {"url": "http://127.0.0.1/x.jpg"}},
        {"json": {"key": "images/astronaut.jpg"}},
        {"json": {"id": target, "image_base64": "AAAA"}},
        {"json": {"colour": "red"}},
        {"content": b"raw", "headers": {"content-type": "image/jpeg"}},
    ]
    for request in bad:
        searched = client.post("/search", **request)
        compared = client.post(f"/compare?target={target}", **request)
        assert searched.status_code >= 400 and compared.status_code == searched.status_code, (request, compared.text)
        assert compared.json()["error"] == searched.json()["error"]
    data = png(crop30(photo())[0])
    assert compare(client, data, "0" * 64).status_code == 404  # no such indexed image
    assert compare(client, data, "xyz").status_code == 400  # not an id
    assert client.post("/compare", files={"file": ("q.png", data)}).status_code == 422  # no target
    assert compare(client, data, sha(PHOTO), format="gif").json()["error"] == "BadRequest"
    from pictrace.api import create_app
    from pictrace.settings import Settings

    small = TestClient(create_app(Settings.from_env(max_bytes=10_000)))
    too_big = small.post(f"/compare?target={target}", files={"file": ("q.png", data)})
    assert too_big.status_code == 413 and too_big.json()["error"] == "ImageTooLarge"
    assert small.post(f"/compare?target={target}&format=png", json={"id": target}).status_code == 413  # the original


def test_thumbnails_for_images_browsers_cannot_show(client: TestClient) -> None:
    response = client.get(f"/thumbnail/{sha('camera.tiff')}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) == 256 and len(response.content) < 60_000  # 256×256: never enlarged
    small = client.get(f"/thumbnail/{sha(PHOTO)}?size=64").content
    assert max(cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape[:2]) == 64
    assert client.get(f"/thumbnail/{'0' * 64}").status_code == 404
    assert client.get("/thumbnail/nope").status_code == 400
    assert client.get(f"/thumbnail/{sha(PHOTO)}?size=5000").status_code == 422


def test_the_s3_vectors_backend_compares_from_the_same_entries(stack: Any) -> None:
    from pictrace.ingest import Ingestor
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings, get_settings
    from pictrace.wiring import wire

    s3 = stack.client("s3")
    ingestor = Ingestor(get_settings())
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        assert ingestor.sync_key(f"images/{name}").action == "created"
    client = boto3.client("s3vectors", region_name="us-east-1")
    settings = Settings.from_env(index_backend="s3vectors", vector_bucket="pictrace-vectors")
    service = SearchService(settings, wiring=wire(settings, vector_client=client))
    query, where = quarter_turn(photo())
    with Stubber(client) as stub:
        stub.add_response("get_vectors", {"vectors": [{"key": sha(PHOTO), "metadata": {"keys": [f"images/{PHOTO}"]}}]})
        result = asyncio.run(service.compare(SearchQuery(image=png(query)), sha(PHOTO), picture=True))
        stub.assert_no_pending_responses()
    assert result.target.keys == (f"images/{PHOTO}",) and result.target_image is not None
    assert result.evidence.region is not None and iou(result.evidence.region, where) >= MIN_IOU
    assert result.evidence.exact and result.hit.scores.inliers >= 30


def test_the_command_writes_the_picture(stack: Any, tmp_path: Path) -> None:
    from pictrace.api import create_app

    index_photos(stack)
    crop, _ = crop30(photo())
    query = tmp_path / "crop.png"
    query.write_bytes(png(crop))
    exe = Path(sys.executable).parent / "pictrace"
    with serve(create_app()) as api:
        env = {**os.environ, "PICTRACE_API_URL": api, "COLUMNS": "200"}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            command = [str(exe), *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)

        done = run("compare", str(query), PHOTO, "--out", str(tmp_path / "compare.png"))
        assert done.returncode == 0, done.stderr
        assert "agree on one affine transform" in done.stdout and "region" in done.stdout
        picture = cv2.imread(str(tmp_path / "compare.png"))
        assert picture is not None and picture.shape[0] > HEADER
        done = run("compare", str(query), sha(PHOTO), "--json", "--out", str(tmp_path / "c.jpg"))
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["id"] == sha(PHOTO) and body["picture"]["format"] == "jpeg" and body["inliers"] >= 30
        missing = run("compare", str(query), "images/nope.jpg")
        assert missing.returncode == 1 and "no indexed image" in missing.stderr
        assert run("compare", str(query), "0" * 64).returncode == 1
        assert run("compare", str(tmp_path / "absent.png"), PHOTO).returncode == 2
