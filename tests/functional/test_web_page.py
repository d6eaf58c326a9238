"""The web page at / in headless Chromium (Debian's package, driven by Playwright), against the real app served by
uvicorn on 127.0.0.1 with a local stack behind it: upload, drop, paste, click a result, and every kind of error."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import DATA, PHOTOS, ROOT, read
from tests.functional.live import index_photos, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the README's picture is refreshed only on request (PICTRACE_UPDATE_SCREENSHOT=1); otherwise the test writes to build/
SCREENSHOT = ROOT / ("docs" if os.environ.get("PICTRACE_UPDATE_SCREENSHOT") == "1" else "build") / "screenshot.png"
TIMEOUT_MS = 60_000  # the first search loads the model


def sha(name: str) -> str:
    return hashlib.sha256(read(name)).hexdigest()


@pytest.fixture
def site(stack: Any) -> Iterator[tuple[str, Any]]:
    """The app on a free port of 127.0.0.1, over a stack with the test photos indexed."""
    from pictrace.api import create_app

    index_photos(stack)
    with serve(create_app()) as base:
        yield base, stack


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium profile; fails the test on any uncaught script error."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        script_errors: list[str] = []
        page.on("pageerror", lambda exc: script_errors.append(str(exc)))
        try:
            yield page
        finally:
            context.close()
        assert not script_errors, script_errors


def result_ids(page: Any) -> list[str]:
    return [str(x) for x in page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")]


def wait_for_results(page: Any, first_id: str) -> None:
    """Until the grid's first card is the given id (the page replaces the grid when an answer arrives)."""
    page.wait_for_function(
        "id => { const c = document.querySelector('#results .card'); return c && c.dataset.id === id }",
        arg=first_id,
        timeout=TIMEOUT_MS,
    )


def error_text(page: Any) -> str:
    page.wait_for_selector("#error:not([hidden])")
    return str(page.inner_text("#error"))


def save_screenshot(page: Any, name: str = SCREENSHOT.name) -> None:
    """SCREENSHOT (build/, or docs/ on request), or another name beside it, kept small: the viewport, reduced to a
    256-colour palette."""
    from PIL import Image

    png = page.screenshot(full_page=False)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    image.save(SCREENSHOT.parent / name, optimize=True)


def test_upload_ranks_the_original_first_then_click_a_result_then_a_non_image(
    site: tuple[str, Any], browser_page: Any
) -> None:
    base, stack = site
    page = browser_page
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"))
    page.goto(base + "/")
    assert page.title().startswith("PicTrace")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('sscd')")

    # a file chosen with the file chooser: the same photo comes back first, as the same file, at ~100 %
    page.set_input_files("#file", str(DATA / "astronaut.jpg"))
    wait_for_results(page, sha("astronaut.jpg"))
    ids = result_ids(page)
    assert len(ids) == len(PHOTOS) and sorted(ids) == sorted(sha(n) for n in PHOTOS)
    first = page.locator("#results .card").first
    assert "same" in (first.get_attribute("class") or "")
    assert float(first.locator(".sim").inner_text().rstrip("%")) > 99
    assert first.locator(".key").inner_text() == "astronaut.jpg"
    scores = first.locator(".scores").inner_text()
    for signal in ("cosine", "ssim", "orb", "final"):
        assert signal in scores
    timings = page.inner_text("#timings")
    for stage in ("decode", "embed", "scan", "fetch", "rerank", "total"):
        assert stage in timings
    assert "sscd" in page.inner_text("#model") and "onnxruntime" in page.inner_text("#model")
    # the local stack asks for no sign-in, and the page says so (a deployed stack's /auth/config names its pool)
    assert page.inner_text("#auth") == "local stack: no sign-in"
    assert "JPEG" in page.inner_text("#summary") and f"{len(PHOTOS)} indexed" in page.inner_text("#summary")
    # thumbnails are the presigned links, loaded by the browser; TIFF, which browsers cannot show, is the API's JPEG
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=TIMEOUT_MS,
    )
    assert page.locator("#results img").count() == len(PHOTOS) and page.locator("#results .noimg").count() == 0
    tiff = page.locator(f"#results .card[data-id='{sha('camera.tiff')}'] img").get_attribute("src")
    assert tiff == f"thumbnail/{sha('camera.tiff')}"
    # every result says whether it is a copy of the query: the uploaded photo is, the other photos are not
    assert page.locator("#results .verdict").count() == len(PHOTOS)
    first = page.locator("#results .card").first
    assert (
        first.get_attribute("data-id") == sha("astronaut.jpg")
        and first.locator(".verdict").inner_text().lower() == "copy"
    )
    assert page.locator("#results .verdict", has_text="not a copy").count() == len(PHOTOS) - 1
    save_screenshot(page)

    # click a result: the page searches by its id, and that image comes back first
    coffee = page.locator(f"#results .card[data-id='{sha('coffee.png')}']")
    coffee.click()
    wait_for_results(page, sha("coffee.png"))
    assert page.evaluate("location.hash") == f"#id={sha('coffee.png')}"
    assert "coffee.png (indexed)" in page.inner_text("#summary")
    assert page.locator("#error").is_hidden()

    # a non-image: the API's message, clearly, with no stale results left on screen
    page.set_input_files("#file", str(DATA / "not_an_image.txt"))
    text = error_text(page)
    assert "That is not an image PicTrace can read." in text
    assert "not a supported image" in text and "not_an_image.txt" in text
    assert page.locator("#results .card").count() == 0 and page.locator("#query").is_hidden()

    # everything the page loaded came from the app itself or the bucket's presigned links: no CDN
    assert hosts - {"blob://"} == {base, stack.endpoint}, hosts  # blob: is the query's local preview


def test_drop_paste_and_typed_queries(site: tuple[str, Any], browser_page: Any) -> None:
    base, stack = site
    page = browser_page
    page.goto(base + "/")

    def file_event(kind: str, name: str, mime: str) -> None:
        page.evaluate(
            """([kind, b64, name, mime]) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, {type: mime}));
                if (kind === "drop") {
                    const zone = document.getElementById("drop");
                    for (const type of ["dragenter", "dragover", "drop"])
                        zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
                } else {
                    document.body.dispatchEvent(
                        new ClipboardEvent("paste", {bubbles: true, cancelable: true, clipboardData: dt}));
                }
            }""",
            [kind, base64.b64encode(read(name)).decode(), name, mime],
        )

    file_event("drop", "coffee.png", "image/png")
    wait_for_results(page, sha("coffee.png"))
    assert page.locator("#drop-overlay").is_hidden()
    assert "coffee.png" in page.inner_text("#query-caption")

    file_event("paste", "chelsea.webp", "image/webp")
    wait_for_results(page, sha("chelsea.webp"))
    assert "WEBP" in page.inner_text("#summary")

    # an id typed (or pasted) into the field, then Enter
    page.fill("#url", sha("rocket.bmp"))
    page.press("#url", "Enter")
    wait_for_results(page, sha("rocket.bmp"))

    # a URL pasted anywhere on the page: the service refuses loopback addresses (its SSRF guard), and says so
    link = stack.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": stack.bucket, "Key": "images/astronaut.jpg"}
    )
    page.evaluate(
        """url => {
            const dt = new DataTransfer();
            dt.setData("text/plain", url);
            const paste = new ClipboardEvent("paste", {bubbles: true, cancelable: true, clipboardData: dt});
            document.body.dispatchEvent(paste);
        }""",
        link,
    )
    text = error_text(page)
    assert "Could not fetch that URL." in text and "loopback" in text
    assert page.input_value("#url") == link

    # an unknown id: 404, said as such
    page.fill("#url", "0" * 64)
    page.press("#url", "Enter")
    page.wait_for_function("() => document.getElementById('error-detail').textContent.includes('no indexed image')")
    assert "Not found." in error_text(page)

    # text that is neither a URL nor an id is caught before any request
    page.fill("#url", "holiday photo")
    page.press("#url", "Enter")
    page.wait_for_function("() => document.getElementById('error-title').textContent.includes('not an image URL')")

    # the closing cross dismisses the message
    page.click("#error-close")
    assert page.locator("#error").is_hidden()


API_ERRORS: list[tuple[int | None, Any, str]] = [
    (400, {"detail": "give exactly one of url, image_base64 or id", "error": "BadRequest"}, "not understood"),
    (413, {"detail": "the upload is over the limit of 20000000 bytes", "error": "ImageTooLarge"}, "Too large."),
    (422, {"detail": "truncated JPEG: the data ends early", "error": "InvalidImage"}, "not an image PicTrace can read"),
    (422, {"detail": "the URL answered 404", "error": "FetchError"}, "Could not fetch that URL."),
    (
        422,
        {"detail": "invalid top_k: Input should be less than or equal to 100", "error": "RequestValidationError"},
        "not understood",
    ),
    (
        422,
        {"detail": [{"loc": ["query", "top_k"], "msg": "Input should be less than or equal to 100"}]},
        "not an image PicTrace can read",
    ),  # FastAPI's own shape, should a validation error ever come back raw
    (404, {"detail": "no indexed image with id 00", "error": "NotFound"}, "Not found."),
    (409, {"detail": "too many concurrent writers", "error": "ConflictError"}, "try again"),
    (500, {"detail": "internal error", "error": "InternalError"}, "The server failed."),
    (503, {"detail": "no model artifact in /opt/model", "error": "ConfigError"}, "misconfigured"),
    (503, {"detail": "holds weights 'random:0' but PICTRACE_WEIGHTS is 'imagenet'", "error": "ModelMismatch"}, "model"),
    (503, {"detail": "the bucket could not be reached", "error": "UpstreamError"}, "could not be reached"),
    (502, "<html>Bad Gateway</html>", "could not be reached"),
    (None, None, "Cannot reach the PicTrace API."),
]


def test_every_api_error_gets_a_clear_message(site: tuple[str, Any], browser_page: Any) -> None:
    """Each error the API can answer (and a dead network), shown as a title plus the API's own words."""
    base, _ = site
    page = browser_page
    page.goto(base + "/")

    def answering(status: int | None, body: Any) -> Any:
        def answer(route: Any) -> None:
            if status is None:
                route.abort("connectionrefused")
            elif isinstance(body, dict):
                route.fulfill(status=status, json=body)
            else:
                route.fulfill(status=status, body=body, content_type="text/html")

        return answer

    for status, body, title in API_ERRORS:
        page.route("**/search*", answering(status, body))
        page.evaluate("document.getElementById('error').hidden = true")
        page.set_input_files("#file", str(DATA / "astronaut.jpg"))
        text = error_text(page)
        assert title in text, (status, body, text)
        if isinstance(body, dict) and isinstance(body["detail"], str):
            assert body["detail"] in text, (status, body, text)
        elif isinstance(body, dict):
            assert "top_k: Input should be less than or equal to 100" in text, text
        elif status is not None:
            assert f"HTTP {status}" in text, text
        assert page.locator("#results .card").count() == 0
        page.unroute("**/search*")


def test_docs_and_assets_are_served(site: tuple[str, Any]) -> None:
    import httpx

    base, _ = site
    page = httpx.get(base + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("static/app.js", "static/style.css", "static/favicon.svg"):
        assert asset in page.text
        assert httpx.get(f"{base}/{asset}").status_code == 200
    assert "http" not in page.text.replace("http://www.w3.org", "")  # no link leaves the app
    assert httpx.get(base + "/docs").status_code == 200
    assert "/search" in httpx.get(base + "/openapi.json").json()["paths"]
    assert httpx.get(base + "/static/nope.js").status_code == 404


def crop30() -> tuple[bytes, tuple[int, int, int, int]]:
    """A PNG of 30 % of astronaut.jpg's area, off-centre, and where it lies in the photo (x0, y0, x1, y1)."""
    import math

    import cv2
    import numpy as np

    photo = cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    cw, ch = round(w * math.sqrt(0.3)), round(h * math.sqrt(0.3))
    x0, y0 = round(w * 0.35), round(h * 0.15)
    return cv2.imencode(".png", photo[y0 : y0 + ch, x0 : x0 + cw])[1].tobytes(), (x0, y0, x0 + cw, y0 + ch)


def test_compare_view_shows_where_a_crop_sits_by_mouse_and_keyboard(
    site: tuple[str, Any], browser_page: Any, tmp_path: Path
) -> None:
    import numpy as np

    from tests.regions import iou

    base, _ = site
    page = browser_page
    page.goto(base + "/")
    data, where = crop30()
    (tmp_path / "crop.png").write_bytes(data)
    page.set_input_files("#file", str(tmp_path / "crop.png"))
    card = page.locator(f"#results .card[data-id='{sha('astronaut.jpg')}']")
    card.wait_for()
    picture_loaded = (
        "() => { const i = document.querySelector('#compare[open] #compare-figure img');"
        " return !!i && i.complete && i.naturalWidth > 0 }"
    )

    # the mouse: the result's compare button opens the view (and does not search with the result)
    card.locator(".compare-button").click()
    page.wait_for_function(picture_loaded, timeout=TIMEOUT_MS)
    assert page.evaluate("location.hash") == ""
    assert "astronaut.jpg" in page.inner_text("#compare-title")
    verdict = page.inner_text("#compare-verdict")
    assert "agree on one affine transform" in verdict and "similar" in verdict
    assert "matched region" in page.inner_text("#compare-facts")
    size = page.evaluate(
        "[...document.querySelectorAll('#compare-figure img')].map(i => [i.naturalWidth, i.naturalHeight])"
    )
    assert size and size[0][0] > size[0][1] > 200  # two images side by side
    # the region outlined on the result's thumbnail, in the photo's pixels: where the crop came from
    points = card.locator("svg.region polygon").get_attribute("points") or ""
    region = np.array([[float(v) for v in p.split(",")] for p in points.split()])
    assert len(region) == 4 and iou(region, where) >= 0.8, (region, where)
    save_screenshot(page, "compare.png")

    # the keyboard: Escape closes it and gives the focus back to the button; Enter opens it again
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('compare').open")
    assert page.evaluate("document.activeElement.classList.contains('compare-button')")
    page.keyboard.press("Enter")
    page.wait_for_function(picture_loaded, timeout=TIMEOUT_MS)
    assert page.evaluate("location.hash") == ""  # Enter on the button is not Enter on the card
    page.click("#compare-close")
    page.wait_for_function("() => !document.getElementById('compare').open")

    # an error while comparing is said in the view
    page.route(
        "**/compare*",
        lambda route: route.fulfill(status=404, json={"detail": "no indexed image with id x", "error": "NotFound"}),
    )
    card.locator(".compare-button").click()
    page.wait_for_function("() => document.getElementById('compare-verdict').textContent.includes('Not found.')")
    assert "no indexed image" in page.inner_text("#compare-facts")
    page.keyboard.press("Escape")
    page.unroute("**/compare*")


def test_each_result_shows_its_verdict(site: tuple[str, Any], browser_page: Any) -> None:
    """match true: "copy", false: "not a copy", null or absent: no badge; the similarity stays."""
    base, _ = site
    page = browser_page
    verdicts = {sha("astronaut.jpg"): True, sha("coffee.png"): False, sha("chelsea.webp"): None}

    def with_verdicts(route: Any) -> None:  # the real answer (route.fetch drops multipart files), with verdicts
        import httpx

        files = {"file": ("astronaut.jpg", read("astronaut.jpg"), "image/jpeg")}
        body = httpx.post(f"{base}/search?top_k=10", files=files, timeout=TIMEOUT_MS / 1000).json()
        for hit in body["results"]:
            if hit["id"] in verdicts:
                hit["match"] = verdicts[hit["id"]]
            else:
                hit.pop("match", None)
        route.fulfill(status=200, json=body)

    page.route("**/search*", with_verdicts)
    page.goto(base + "/")
    page.set_input_files("#file", str(DATA / "astronaut.jpg"))
    wait_for_results(page, sha("astronaut.jpg"))

    def badge(name: str) -> list[str]:
        card = page.locator(f"#results .card[data-id='{sha(name)}']")
        assert card.locator(".sim").inner_text().endswith("%")
        return [str(t) for t in card.locator(".verdict").all_inner_texts()]

    assert [b.lower() for b in badge("astronaut.jpg")] == ["copy"]
    assert [b.lower() for b in badge("coffee.png")] == ["not a copy"]
    assert badge("chelsea.webp") == [] and badge("rocket.bmp") == []
