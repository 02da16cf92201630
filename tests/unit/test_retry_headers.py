"""Unit tests for `jobqueue.retry_after_seconds`: the server's requested delay, from its headers."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx2
import pytest

from jobqueue import retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ({}, None),
        ({"retry-after": "17"}, 17.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "17"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "17"}, 17.0),
        ({"retry-after-ms": "-1", "retry-after": "17"}, 17.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        # not a number of seconds a server may send: no usable hint, not "now"
        ({"retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": email.utils.formatdate(time.time() - 60, usegmt=True)}, 0.0),
    ],
)
def test_retry_after_seconds(headers: dict[str, str] | None, expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected
    if headers is not None:
        assert retry_after_seconds(httpx2.Headers(headers)) == expected


def test_http_date_in_the_future() -> None:
    target = int(time.time()) + 120  # an HTTP date has whole seconds
    when = email.utils.formatdate(target, usegmt=True)
    before = time.time()
    value = retry_after_seconds(httpx2.Headers({"Retry-After": when}))
    after = time.time()
    # however long the call took, the answer is the time left until the date
    assert value is not None and target - after - 0.01 <= value <= target - before + 0.01


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "7"},  # a plain dict is case-sensitive; header names are not
        {"RETRY-AFTER-MS": "7000"},
        {b"retry-after": b"7"},
    ],
)
def test_any_mapping_any_case(headers: dict[Any, Any]) -> None:
    assert retry_after_seconds(headers) == 7.0


def test_a_mapping_that_raises_is_no_hint() -> None:
    class Broken(dict[str, str]):
        def get(self, key: object, default: object = None) -> Any:
            raise RuntimeError("broken")

    assert retry_after_seconds(Broken({"retry-after": "1"})) is None
    assert retry_after_seconds("retry-after: 5") is None  # type: ignore[arg-type]
