"""Unit tests for `jobqueue.retry`: `backoff_delay` and the redaction of secrets in messages."""

from __future__ import annotations

import math
import random
from typing import Any

import anthropic
import pytest
from retry_helpers import status_error

from jobqueue.errors import ConfigError, ErrorType
from jobqueue.retry import (
    Classification,
    backoff_delay,
    classify_error,
    redact,
)

# --- backoff_delay ---------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    c = Classification(ErrorType.NETWORK_ERROR, True, 1.0, "x", False)
    assert [backoff_delay(c, n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_delay(c, 6, max_delay=20) == 20
    assert backoff_delay(c, 10_000) == 3600  # no float overflow


def test_exact_delays_are_not_multiplied_but_are_capped() -> None:
    c = Classification(ErrorType.RATE_LIMIT, True, 17.0, "x", True)
    assert backoff_delay(c, 1) == backoff_delay(c, 5) == 17
    assert backoff_delay(c, 5, jitter=1.0) == 17
    assert backoff_delay(c, 1, max_delay=10) == 10


def test_jitter_only_adds_within_bounds() -> None:
    c = Classification(ErrorType.UNKNOWN, True, 2.0, "x", False)
    rng = random.Random(1234)
    samples = [backoff_delay(c, 2, jitter=0.5, rng=rng) for _ in range(500)]
    assert all(4.0 <= s <= 6.0 for s in samples)
    assert max(samples) > 5.5
    assert min(samples) < 4.5
    assert backoff_delay(c, 2) == 4.0  # off by default
    assert all(backoff_delay(c, 2, jitter=1.0) <= 8.0 for _ in range(100))
    assert backoff_delay(c, 20, max_delay=100, jitter=1.0) == 100  # never above the cap


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"attempt": 0}, "0"),
        ({"attempt": -1}, "-1"),
        ({"attempt": 1.5}, "1.5"),
        ({"attempt": True}, "True"),
        ({"attempt": 1, "max_delay": -1}, "-1"),
        ({"attempt": 1, "max_delay": math.nan}, "nan"),
        ({"attempt": 1, "jitter": -0.1}, "-0.1"),
        ({"attempt": 1, "jitter": 1.5}, "1.5"),
        ({"attempt": 1, "jitter": math.nan}, "nan"),
    ],
)
def test_backoff_validates_arguments(kwargs: dict[str, Any], bad: str) -> None:
    c = Classification(ErrorType.UNKNOWN, True, 1.0, "x", False)
    with pytest.raises(ConfigError, match=bad):
        backoff_delay(c, **kwargs)


# --- messages and redaction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@h", "redis://:***@h"),
        ("redis://default:s3cr3t@redis.local:6379/0", "redis://default:***@redis.local:6379/0"),
        ("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x"),
        ("https://ghp_token123@github.com/o/r", "https://***@github.com/o/r"),
        ("key sk-ant-api03-AbC_dEf-123456 used", "key sk-*** used"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
        ("api_key=abcdef123 and password: hunter2", "api_key=*** and password: ***"),
        ("{'x-api-key': 'abc123'}", "{'x-api-key': '***'}"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "ask-me about sk-learn, https://example.com/p?q=a@b max_tokens=5 input_tokens: 3"
    assert redact(text) == text


def test_message_is_one_redacted_truncated_line() -> None:
    canaries = ["CANARYpw4242", "sk-ant-api03-CANARYkey0000", "CANARYbearer99"]
    exc = RuntimeError(
        f"connect redis://:{canaries[0]}@cache:6379 failed\n"
        f"key={canaries[1]}\r\nheaders: Authorization: Bearer {canaries[2]}\n" + "x" * 5000
    )
    c = classify_error(exc)
    assert c.message.startswith("RuntimeError: connect redis://:***@cache:6379 failed key=")
    assert "\n" not in c.message
    assert "\r" not in c.message
    assert len(c.message) == 1000
    assert not any(canary in c.message for canary in canaries)
    assert "CANARY" not in c.message


def test_message_of_an_sdk_error_hides_the_key() -> None:
    exc = status_error(
        anthropic.AuthenticationError, 401, body={"error": {"message": "bad key sk-ant-CANARY123"}}
    )
    c = classify_error(exc)
    assert "CANARY" not in c.message
    assert c.message.startswith("AuthenticationError: Error code: 401")


def test_message_without_text_is_the_class_name() -> None:
    assert classify_error(TimeoutError()).message == "TimeoutError"
