"""What the provider says of its rate limits: the `anthropic-ratelimit-*` headers of a response.

Every Messages API response (a 429 too) states, per bucket of the organisation's limits on the
model, `anthropic-ratelimit-<bucket>-limit`, `-remaining` and `-reset` (RFC 3339), for the
buckets `requests`, `input-tokens` and `output-tokens`. `read_rate_limits` turns them into
`RateLimitReading`s named like the shared limiter's buckets (`input_tokens`), so the pipeline
can teach the limiter the real capacity and what is left (`Queue.learn_limit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

__all__ = ["HEADER_BUCKETS", "RateLimitReading", "read_rate_limits"]

HEADER_BUCKETS: dict[str, str] = {
    "requests": "requests",
    "input-tokens": "input_tokens",
    "output-tokens": "output_tokens",
}
"""Bucket name in the headers -> the shared limiter's bucket name."""


class RateLimitReading(BaseModel):
    """One bucket as a response's headers state it.

    Attributes:
        bucket: The limiter's bucket name (`requests`, `input_tokens`, `output_tokens`).
        limit: The per-minute limit, when stated.
        remaining: What is left now, when stated.
        reset: When the bucket is full again, when stated.
    """

    model_config = ConfigDict(frozen=True)

    bucket: str
    limit: int | None = None
    remaining: int | None = None
    reset: datetime | None = None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def read_rate_limits(headers: Mapping[str, str] | None) -> dict[str, RateLimitReading]:
    """The rate-limit readings of a response's headers.

    Args:
        headers: The response headers (case-insensitive mappings such as httpx's, or a dict
            with lower-case names); None for no response.

    Returns:
        Limiter bucket name -> reading, for the buckets the headers state (a malformed value
        is read as absent: a header never fails a call).
    """
    if headers is None:
        return {}
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    out: dict[str, RateLimitReading] = {}
    for name, bucket in HEADER_BUCKETS.items():
        head = f"anthropic-ratelimit-{name}-"
        limit = _int(lowered.get(head + "limit"))
        remaining = _int(lowered.get(head + "remaining"))
        if limit is None and remaining is None:
            continue
        out[bucket] = RateLimitReading(
            bucket=bucket,
            limit=limit,
            remaining=remaining,
            reset=_time(lowered.get(head + "reset")),
        )
    return out
