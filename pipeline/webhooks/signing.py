"""Standard Webhooks signing (https://www.standardwebhooks.com): pure functions, no I/O.

A message is signed as `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the
bytes of the secret: base64 after its `whsec_` prefix. A receiver recomputes it over the raw
body and the `webhook-id` and `webhook-timestamp` headers it got.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from jobqueue import JobQueueError

__all__ = ["SECRET_PREFIX", "WebhookConfigError", "secret_key", "sign", "signature_headers"]

SECRET_PREFIX = "whsec_"


class WebhookConfigError(JobQueueError):
    """A webhook setting is wrong: the secret is not `whsec_` followed by base64 of at least 24
    bytes, or the URL is not http(s).

    The message names the setting and what is wrong, never the value. (Not a ValueError on
    purpose: pydantic would wrap it in a ValidationError that prints the input.)
    """


def secret_key(secret: str, *, setting: str = "PIPELINE_WEBHOOK_SECRET") -> bytes:
    """The HMAC key of a `whsec_` secret: the bytes its base64 part encodes.

    Args:
        secret: The secret, `whsec_<base64>`.
        setting: The name the error gives the value.

    Returns:
        The key bytes.

    Raises:
        WebhookConfigError: No `whsec_` prefix, bad base64, or fewer than 24 bytes (the spec
            asks for 24 to 64); the value is not in the message.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookConfigError(f"{setting} must start with {SECRET_PREFIX!r} (value not shown)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookConfigError(
            f"{setting} must be {SECRET_PREFIX!r} followed by base64 (value not shown)"
        ) from None
    if len(key) < 24:
        raise WebhookConfigError(
            f"{setting} must encode at least 24 bytes, got {len(key)} (value not shown)"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one message: `v1,<base64 HMAC-SHA256>`.

    Args:
        key: The secret's key bytes (`secret_key`).
        msg_id: The `webhook-id`, the same on every try of one message.
        timestamp: The `webhook-timestamp`, unix seconds of this try.
        body: The exact bytes sent.
    """
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one try, plus the JSON content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
