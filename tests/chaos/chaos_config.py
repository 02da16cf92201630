"""The chaos queue's settings, one place for the producer and the worker processes."""

from __future__ import annotations

from jobqueue import QueueConfig, RateLimit

__all__ = ["queue_config"]


def queue_config(name: str, *, lease: float, rate: int = 0, durable: int = 0) -> QueueConfig:
    """Short leases and stall checks (faults outlast them on purpose), every job kept after
    it ends (the reconciliation reads each one), many stalls allowed before a job fails;
    `durable` replicas acknowledge each change (the cluster failover: docs/cluster.md)."""
    return QueueConfig(
        name,
        lease=lease,
        stall_interval=max(0.1, lease / 2),
        drain_delay=0.5,
        heartbeat_interval=0.5,
        max_stalls=1000,
        keep_completed=(None, None),
        keep_failed=(None, None),
        events_maxlen=200_000,
        rate_limit=RateLimit(max=rate, per=1.0) if rate else None,
        durable_replicas=durable,
    )
