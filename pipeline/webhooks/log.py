"""The delivery log (`webhook_delivery`), as `python -m pipeline webhooks` and a dashboard
read it: one row per try, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

__all__ = ["DeliveryTry", "list_deliveries"]


@dataclass(frozen=True)
class DeliveryTry:
    """One try of one event: where it went (no credentials), what came back, how long."""

    msg_id: str
    event: str
    run_id: UUID | None
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    delivered: bool
    created_at: datetime

    def line(self) -> str:
        """The try as one line of `python -m pipeline webhooks`."""
        outcome = f"HTTP {self.status_code}" if self.status_code is not None else "no answer"
        if self.error and self.status_code is None:
            outcome = self.error
        mark = "✓" if self.delivered else "✗"
        return (
            f"{self.created_at:%Y-%m-%d %H:%M:%S} {mark} {self.event:20} try {self.attempt} "
            f"{outcome} {self.duration_ms:.0f} ms  {self.url}  {self.msg_id}"
        )


async def list_deliveries(
    pool: asyncpg.Pool, *, run_id: UUID | None = None, limit: int = 50
) -> list[DeliveryTry]:
    """The latest tries, newest first, of one run or of all.

    Args:
        pool: The PostgreSQL pool.
        run_id: Only this run's tries (default: every run's).
        limit: At most this many rows.
    """
    rows = await pool.fetch(
        "SELECT msg_id, event, run_id, url, attempt, status_code, error, duration_ms, "
        "delivered, created_at FROM webhook_delivery WHERE ($1::uuid IS NULL OR run_id = $1) "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        run_id,
        limit,
    )
    return [DeliveryTry(**dict(r)) for r in rows]
