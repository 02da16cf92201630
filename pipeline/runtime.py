"""The pipeline's runtime: one Redis client, the five queues, the PostgreSQL pool, the model.

A web API process uses it only to enqueue; the workers process uses all of it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis

from jobqueue import Queue, connect
from pipeline import db
from pipeline.ai import LLM, make_llm
from pipeline.ai.guard import Guard, GuardedLLM
from pipeline.budget import BudgetGuard
from pipeline.cancelled import RunCancelGuard
from pipeline.limit_guard import ProviderLimitGuard
from pipeline.metrics import MetricsGuard
from pipeline.offline_fixtures import register_offline_fixtures
from pipeline.settings import JOB_TYPES, Settings, get_settings
from pipeline.webhooks.queue import webhook_queue_config

__all__ = ["Runtime", "close_runtime", "get_runtime"]

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a stage or `enqueue()` needs, made once per process."""

    settings: Settings
    redis: Redis
    pool: asyncpg.Pool
    queues: dict[str, Queue] = field(default_factory=dict)
    #: The queue of webhook deliveries; None when `PIPELINE_WEBHOOK_URL` is unset.
    webhooks: Queue | None = None
    _llm: LLM | None = None

    @classmethod
    async def create(
        cls,
        settings: Settings | None = None,
        *,
        redis: Redis | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> Runtime:
        """Connect to Redis and PostgreSQL as the settings say (or use the given ones)."""
        settings = settings or get_settings()
        if redis is None:
            if not settings.redis_url:
                raise RuntimeError("no Redis URL: set REDIS_URL")
            redis = connect(settings.redis_url)
        if pool is None:
            if not settings.database_url:
                raise RuntimeError("no database URL: set DATABASE_URL")
            pool = await db.create_pool(settings.database_url)
        rt = cls(settings=settings, redis=redis, pool=pool)
        for job_type in JOB_TYPES:
            rt.queues[job_type] = Queue(
                settings.queue_config(job_type), redis=redis, prefix=settings.prefix
            )
        if settings.webhook_url is not None:
            rt.webhooks = Queue(webhook_queue_config(settings), redis=redis, prefix=settings.prefix)
        return rt

    @property
    def llm(self) -> LLM:
        """The model client, made on first use (offline unless ANTHROPIC_API_KEY is set), with
        the guards of every call around it (the run's and the day's budget, then the shared
        limits' settling and learning, then the refusal of a cancelled run's calls)."""
        if self._llm is None:
            s = self.settings
            register_offline_fixtures()
            key = s.anthropic_api_key.get_secret_value() if s.anthropic_api_key else None
            self._llm = self._guarded(
                make_llm(
                    api_key=key,
                    mode=s.llm_mode,
                    base_url=s.anthropic_base_url,
                    models=s.models,  # type: ignore[arg-type]
                    latency=s.offline_latency,
                )
            )
        return self._llm

    def use_llm(self, llm: LLM) -> None:
        """Use this model client (tests, or an application's own), behind the same guards."""
        register_offline_fixtures()
        self._llm = self._guarded(llm)

    def _guarded(self, llm: LLM) -> LLM:
        if isinstance(llm, GuardedLLM):
            return llm
        s = self.settings
        budget = BudgetGuard(
            self.pool,
            org=s.budget_org,
            daily_budget_usd=s.daily_budget_usd,
            reservation_ttl=s.budget_reservation_ttl,
        )
        # the budget refuses a call before anything else; the limits settle after it; the
        # cancel check comes last, so no wait stands between it and the call: a call of a
        # cancelled run admitted by it read the run before its cancel committed (in flight);
        # the metrics, admitting everything, count the calls that were sent
        guards: list[Guard[Any]] = [
            budget,
            ProviderLimitGuard(self.queues),
            RunCancelGuard(self.pool),
            MetricsGuard(),
        ]
        return GuardedLLM(llm, guards, models=s.models)

    async def close(self) -> None:
        """Close the connections this runtime made."""
        closer = getattr(self._llm, "aclose", None)
        if closer is not None:
            await closer()
        for queue in self.queues.values():
            await queue.close()  # its script connection; the shared client is closed below
        if self.webhooks is not None:
            await self.webhooks.close()
        await self.redis.aclose()
        await self.pool.close()


_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


async def get_runtime() -> Runtime:
    """The process-wide runtime, made on first use from the environment."""
    global _runtime, _lock
    if _runtime is not None:
        return _runtime
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _runtime is None:
            _runtime = await Runtime.create()
        return _runtime


def set_runtime(rt: Runtime | None) -> None:
    """Make `rt` the process-wide runtime (tests, or an application that builds its own)."""
    global _runtime
    _runtime = rt


async def close_runtime() -> None:
    """Close the process-wide runtime, if any."""
    global _runtime
    rt, _runtime = _runtime, None
    if rt is not None:
        await rt.close()
