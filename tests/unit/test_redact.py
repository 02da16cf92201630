"""Unit tests for `jobqueue.redact` and `jobqueue.redact_url` (`jobqueue/core/redact.py`), and the
redaction of classification messages."""

from __future__ import annotations

import anthropic
import pytest
from retry_helpers import status_error

import jobqueue
from jobqueue.core import connection
from jobqueue.core.redact import redact, redact_url
from jobqueue.retry import classify_error


def test_one_implementation_everywhere() -> None:
    assert jobqueue.redact is redact
    assert jobqueue.redact_url is connection.redact_url is redact_url


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


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@127.0.0.1:6390/2", "redis://:***@127.0.0.1:6390/2"),
        ("redis://user:CANARY@h:1/0", "redis://user:***@h:1/0"),
        ("rediss://default:s3cr3t@[::1]:6380/0", "rediss://default:***@[::1]:6380/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        # a user name alone is a connection's user, not a secret
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("postgresql://app@db/x?password=CANARY", "postgresql://app@db/x?password=***"),
        ("host=db user=app password=CANARY", "host=db user=app password=***"),
        ("redis://[::1", "redis://[::1"),  # not a URL urlsplit can read
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected


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
