"""The `webhooks` queue: its name and its engine configuration, from the settings."""

from __future__ import annotations

from jobqueue import QueueConfig
from pipeline.settings import Settings

__all__ = ["WEBHOOK_JOB", "WEBHOOK_QUEUE", "webhook_queue_config"]

#: The queue of webhook deliveries: of its own, so a slow or dead receiver holds up nothing
#: of the pipeline (its stage queues never wait on it).
WEBHOOK_QUEUE = "webhooks"
#: The job name of one event's delivery.
WEBHOOK_JOB = "run-event"


def webhook_queue_config(settings: Settings) -> QueueConfig:
    """The `webhooks` queue: `webhook_attempts` tries, exponential backoff from
    `webhook_backoff`, and an engine timeout above the POST's own as a backstop."""
    return QueueConfig(
        WEBHOOK_QUEUE,
        concurrency=settings.webhook_concurrency,
        timeout=settings.webhook_timeout * 2 + 5.0,
        attempts=settings.webhook_attempts,
        backoff=settings.webhook_backoff,
        max_backoff=settings.webhook_max_backoff,
        # a run's status row not yet committed (the event was enqueued in its transaction)
        # or PostgreSQL away: deferred, without spending a try
        max_deferrals=1000,
        lease=settings.lease,
        stall_interval=settings.stall_interval,
        drain_delay=settings.drain_delay,
        keep_completed=(10_000, 7 * 86400.0),
        keep_failed=(10_000, 30 * 86400.0),
    )
