"""Delivering one run event: a signed POST per try, each try recorded in `webhook_delivery`.

The handler of the `webhooks` queue. A try is delivered when the receiver answers 2xx within
`webhook_timeout`; otherwise it raises `RetryAfter` with an exponential delay (`webhook_backoff`
doubled per try, capped by `webhook_max_backoff`, or the receiver's `Retry-After` when longer)
and the engine tries again until `webhook_attempts` are spent, then the job fails. Every try
sends the same `webhook-id` and body, with its own `webhook-timestamp` and signature.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from uuid import UUID

import asyncpg
import httpx2
import structlog

from jobqueue import ErrorType, Job, RetryAfter
from pipeline.db import redact
from pipeline.runtime import Runtime
from pipeline.stages.base import INFRA_ERRORS
from pipeline.webhooks.events import EVENT_OF_STATUS
from pipeline.webhooks.settings import public_url
from pipeline.webhooks.signing import secret_key, signature_headers

__all__ = ["Deliverer", "body_of", "retry_delay"]

log = structlog.get_logger("pipeline.webhooks")

_LOG_TRY = """
INSERT INTO webhook_delivery (msg_id, event, run_id, url, attempt, status_code, error,
    duration_ms, delivered)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


class _PublicUrls(logging.Filter):
    """httpx2 logs every request's URL at INFO: a webhook URL may carry credentials in its
    user part or query (`?token=`), so the URL of each such line is shown as `public_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                public_url(str(a)) if isinstance(a, httpx2.URL) else a for a in record.args
            )
        return True


_FILTER = _PublicUrls()
if not any(isinstance(f, _PublicUrls) for f in logging.getLogger("httpx2").filters):
    logging.getLogger("httpx2").addFilter(_FILTER)


def body_of(payload: Any) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys in a stable order."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(rt: Runtime, attempt: int, retry_after: str | None = None) -> float:
    """The delay before the next try: `webhook_backoff * 2**(attempt-1)`, at least the
    receiver's `Retry-After` seconds when it sent some, at most `webhook_max_backoff`."""
    s = rt.settings
    delay = s.webhook_backoff * 2 ** max(attempt - 1, 0)
    if retry_after is not None and retry_after.strip().isdigit():
        delay = max(delay, float(retry_after.strip()))
    return float(min(delay, s.webhook_max_backoff))


class Deliverer:
    """The `webhooks` queue's handler (`deliver`, one job per run event) and the one HTTP
    client its tries share (made on first use: making one costs tens of ms); `aclose` it."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._client: httpx2.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            # no redirects followed: a 3xx is not a delivery (the spec's receivers answer 2xx)
            self._client = httpx2.AsyncClient(timeout=self.rt.settings.webhook_timeout)
        return self._client

    async def deliver(self, job: Job) -> dict[str, Any]:
        """Send one try of the job's event; see the module's description."""
        rt = self.rt
        s = rt.settings
        if s.webhook_url is None or s.webhook_secret is None:
            # a worker only runs with webhooks on; a job left from when they were on is dropped
            return {"skipped": "webhooks are off"}
        data = job.data
        msg_id, event, run_id = data["msg_id"], data["event"], UUID(data["run_id"])
        bound = log.bind(event=event, run_id=str(run_id), webhook_id=msg_id, attempt=job.attempt)
        try:
            status = await rt.pool.fetchval(
                "SELECT status FROM sector_analysis WHERE id = $1", run_id
            )
        except INFRA_ERRORS as exc:
            raise RetryAfter(
                s.infra_retry_delay,
                f"PostgreSQL unavailable ({type(exc).__name__})",
                error_type=ErrorType.NETWORK_ERROR,
                spend_attempt=False,
            ) from None
        if status is None:
            bound.info("webhook skipped: the run is gone")
            return {"skipped": "no such run"}
        if status not in EVENT_OF_STATUS:
            # enqueued inside the transaction that ends the run, which has not committed (or
            # rolled back and will end it again): wait for it without spending a try
            raise RetryAfter(
                max(s.webhook_backoff, 0.05),
                f"run {run_id} is {status}, not ended yet",
                spend_attempt=False,
            )
        if EVENT_OF_STATUS[status] != event:
            bound.info("webhook skipped: the run ended otherwise", status=status)
            return {"skipped": f"run is {status}"}
        url = s.webhook_url
        shown = public_url(url)
        body = body_of(data["payload"])
        now = int(time.time())
        key = secret_key(s.webhook_secret.get_secret_value())
        headers = signature_headers(key, msg_id, now, body)
        code: int | None = None
        error: str | None = None
        retry_after: str | None = None
        client = self._http()
        t0 = time.monotonic()
        try:
            response = await client.post(url, content=body, headers=headers)
            code = response.status_code
            retry_after = response.headers.get("retry-after")
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except httpx2.HTTPError as exc:
            # the message may echo the URL: shown without its credentials
            error = redact(f"{type(exc).__name__}: {exc}".replace(url, shown))[:500]
        ms = (time.monotonic() - t0) * 1000
        delivered = error is None
        try:
            await rt.pool.execute(
                _LOG_TRY, msg_id, event, run_id, shown, job.attempt, code, error, ms, delivered
            )
        except (*INFRA_ERRORS, asyncpg.PostgresError) as exc:
            # the log is for people; the delivery's outcome stands without it
            bound.warning("webhook try not logged", error_type=type(exc).__name__)
        if delivered:
            bound.info("webhook delivered", url=shown, status_code=code, ms=round(ms, 1))
            return {"status_code": code, "attempt": job.attempt}
        delay = retry_delay(rt, job.attempt, retry_after)
        bound.warning("webhook try failed", url=shown, error=error, retry_in=delay)
        raise RetryAfter(
            delay,
            f"{event} to {shown}: {error}",
            # both retried (API_ERROR is not): the receiver's failure, or no answer from it
            error_type=ErrorType.UNKNOWN if code is not None else ErrorType.NETWORK_ERROR,
        )
