"""Settings come from the environment once, explicit arguments win, and bad values fail at start."""

from __future__ import annotations

import dataclasses

import pytest
from pictrace.errors import ConfigError
from pictrace.settings import Settings


def test_missing_bucket_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="PICTRACE_BUCKET"):
        Settings.from_env({})


def test_environment_is_read_and_typed() -> None:
    s = Settings.from_env(
        {
            "PICTRACE_BUCKET": "b",
            "PICTRACE_SHORTLIST": "80",
            "PICTRACE_URL_TIMEOUT": "2.5",
            "PICTRACE_URL_ALLOW_PRIVATE": "true",
        }
    )
    assert (s.bucket, s.shortlist, s.url_timeout, s.url_allow_private) == ("b", 80, 2.5, True)
    assert s.max_bytes == 20_000_000 and s.max_pixels == 50_000_000


def test_explicit_arguments_override_the_environment() -> None:
    s = Settings.from_env({"PICTRACE_BUCKET": "b", "PICTRACE_TOP_K": "3"}, top_k=7)
    assert s.top_k == 7


def test_settings_are_frozen() -> None:
    s = Settings(bucket="b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.bucket = "c"  # type: ignore[misc]


@pytest.mark.parametrize(
    "env,words",
    [
        ({"PICTRACE_SHORTLIST": "many"}, "PICTRACE_SHORTLIST must be a int"),
        ({"PICTRACE_INDEX_PREFIX": "index"}, "must end with '/'"),
        ({"PICTRACE_INDEX_PREFIX": "images/index/"}, "must not nest"),
        ({"PICTRACE_MAX_BYTES": "0"}, "PICTRACE_MAX_BYTES must be positive"),
    ],
)
def test_bad_values_fail_with_a_message(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env({"PICTRACE_BUCKET": "b", **env})
