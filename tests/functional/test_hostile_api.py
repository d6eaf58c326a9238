"""Issue 26's hostile inputs against the API as deployed (PICTRACE_URL_ALLOW_PRIVATE=false): each answers a 4xx
within 2 s, and the API stays healthy."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.functional.live import index_photos
from tests.unit.test_decode_bombs import progressive_jpeg, segments, tiff


def bombs() -> dict[str, bytes]:
    jpeg = progressive_jpeg(512)
    start, end = [s for s in segments(jpeg) if jpeg[s[0] + 1] == 0xDA][-1]
    common = [(258, 3, 8), (259, 3, 1), (262, 3, 1)]
    return {
        "repeated last scan": jpeg[:end] + jpeg[start:end] * 3000 + jpeg[end:],
        "tiff size named twice": tiff(
            [(256, 4, 9000), (257, 4, 8000), (256, 4, 16), (257, 4, 16), *common], b"\x80" * 256
        ),
    }


@pytest.mark.parametrize("name", ["repeated last scan", "tiff size named twice"])
def test_a_bomb_is_a_quick_4xx_and_the_api_stays_healthy(stack: Any, name: str) -> None:
    from pictrace.api import create_app
    from pictrace.settings import Settings

    index_photos(stack, ["astronaut.jpg"])
    client = TestClient(create_app(Settings.from_env(url_allow_private=False)))
    started = time.monotonic()
    answer = client.post("/search", files={"file": ("q", bombs()[name], "application/octet-stream")})
    assert answer.status_code == 422 and answer.json()["detail"], answer.text
    assert time.monotonic() - started < 2
    assert client.get("/health").json()["status"] == "ok"
    with open("tests/data/astronaut.jpg", "rb") as photo:
        found = client.post("/search?top_k=1", files={"file": ("q.jpg", photo.read(), "image/jpeg")})
    assert found.status_code == 200 and found.json()["results"][0]["match"] is True
