"""The local stack's moto server: its cheaper clock reads and JSONPath compilation answer as moto's own do."""

from __future__ import annotations

import datetime
import time

from infra.motoserver import moto_server


def test_the_quickened_clock_reads_the_same_epoch_and_converts_a_given_time_as_moto_does() -> None:
    from moto.core import utils
    from moto.sqs import models

    server = moto_server("127.0.0.1", 0)  # made, not started
    assert server is not None
    before = time.time() * 1000
    now = models.unix_time_millis()
    assert before <= now <= time.time() * 1000
    assert abs(models.unix_time() - utils.unix_time()) < 1.0  # moto's own, through datetime
    given = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert models.unix_time_millis(given) == utils.unix_time_millis(given)
    assert models.unix_time(given) == utils.unix_time(given)


def test_a_jsonpath_is_compiled_once_and_finds_what_a_fresh_one_finds() -> None:
    import jsonpath_ng.ext

    moto_server("127.0.0.1", 0)
    event = {"detail": {"id": "a"}, "source": "pictrace"}
    assert jsonpath_ng.ext.parse("$.detail") is jsonpath_ng.ext.parse("$.detail")
    assert [m.value for m in jsonpath_ng.ext.parse("$.detail").find(event)] == [{"id": "a"}]
    assert [m.value for m in jsonpath_ng.ext.parse("$.source").find(event)] == ["pictrace"]
