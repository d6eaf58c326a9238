"""The page's Duplicates view (issue 28) in a real browser: a photo and its crop indexed and checked through the
local stack's queues, the group shown with both thumbnails, a compare per pair, and "not a copy" taking it out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import read
from tests.functional.live import serve
from tests.functional.test_duplicates import Stack, crop, local, sha  # noqa: F401  # local: the fixture
from tests.functional.test_web_page import TIMEOUT_MS, browser_page, save_screenshot  # noqa: F401  # a fixture


def test_the_duplicates_view_shows_a_group_compares_a_pair_and_dismisses_it(
    local: Stack,  # noqa: F811  # the fixtures imported above
    browser_page: Any,  # noqa: F811
) -> None:
    from pictrace.api import create_app

    original, copy = read("astronaut.jpg"), crop()

    def index_and_check() -> None:
        local.put({"images/astronaut.jpg": original, "images/coffee.png": read("coffee.png")})
        local.put({"images/edits/astronaut-crop.jpg": copy})
        local.check()

    in_thread(index_and_check)
    page = browser_page
    with serve(create_app()) as base:
        page.goto(f"{base}/#duplicates")
        page.wait_for_selector(".dup-group", timeout=TIMEOUT_MS)
        assert page.locator("#drop").is_hidden()  # the search's parts step aside
        group = page.locator(".dup-group")
        assert group.count() == 1
        ids = [group.locator(".dup-image").nth(i).get_attribute("data-id") for i in range(2)]
        assert ids == [sha(original), sha(copy)]  # the oldest first
        assert "oldest" in group.locator(".dup-image").first.inner_text()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.dup-group img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=TIMEOUT_MS,
        )
        assert "1 group of copies" in page.inner_text("#dup-summary")
        assert float(group.locator(".dup-sim").inner_text().rstrip("%")) > 90
        save_screenshot(page, "duplicates.png")
        # compare: the page's own dialog, the crop against its original
        group.locator(".dup-compare").click()
        page.wait_for_selector("#compare[open] .verdict", timeout=TIMEOUT_MS)
        assert page.locator("#compare .verdict").inner_text().lower() == "copy"
        page.keyboard.press("Escape")
        # not a copy: the pair leaves the groups, and stays out when the view is opened again
        group.locator(".dup-dismiss").click()
        page.wait_for_selector("#dup-summary >> text=No copies found", timeout=TIMEOUT_MS)
        assert page.locator(".dup-group").count() == 0
        page.reload()
        page.wait_for_selector("#dup-summary >> text=No copies found", timeout=TIMEOUT_MS)
    assert in_thread(local.groups) == []


def in_thread[T](fn: Callable[[], T]) -> T:
    """fn on a thread with an event loop of its own: the handlers run theirs, and Playwright's holds this thread."""

    def run() -> T:
        asyncio.set_event_loop(asyncio.new_event_loop())
        return fn()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()
