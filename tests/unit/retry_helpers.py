"""Helpers of the `jobqueue.retry` unit tests: SDK errors built the way the SDK builds them."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from jobqueue.errors import ErrorType

REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
FAST = {ErrorType.NETWORK_ERROR: 0.001, ErrorType.UNKNOWN: 0.001, ErrorType.RATE_LIMIT: 0.001}


def status_error(
    cls: type[anthropic.APIStatusError],
    status: int,
    *,
    headers: dict[str, str] | None = None,
    body: object = None,
) -> anthropic.APIStatusError:
    """Build an SDK status error the way the SDK does: message, response and decoded body."""
    response = httpx2.Response(status, headers=headers, request=REQUEST)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def error_body(error_type: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": "something went wrong"}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error}
