"""`ProviderLimitGuard`: before every model call, hold what its prompt needs of the shared
limiter; after it, settle it and learn what the provider says of its limits.

A job reserved its stage's estimated cost of its model's limiter when it started (the take
script). Before each call, once the prompt is known, this guard estimates the input tokens the
provider will charge (`expected_input`: the prompt at 3.5 characters a token, less a cached
prefix this process wrote recently, since cache reads are free) and holds the difference
(`Job.reserve`): for the first call, whatever the prompt needs beyond the job's reservation;
for a later call (the first settle gave the reservation back), the whole call. When the
buckets cannot pay it yet, the call waits until they can, so a big prompt never meets a 429.
After each call this guard, in order:

1. settles the running job with what the call really used (`Job.settle`): input tokens as the
   provider counts them (fresh input plus cache writes; cache reads are free), output tokens,
   one request; a call the provider answered with an error used nothing, so the reservation is
   given back; a call that died on the way (dropped connection, timeout) keeps it, since the
   provider may have counted it;
2. corrects the limiter from the response's `anthropic-ratelimit-*` headers
   (`Queue.learn_limit`): the capacity becomes the stated limit, and what is left is lowered
   to the stated remaining when it was above (someone else spends the same key, or an estimate
   was low).

Settling first keeps the second step's correction: the provider's `remaining` already counts
this call, so refunding after it would lift the buckets above what the provider allows. A 429
needs nothing more here: the engine holds every queue of the limiter for the Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

from jobqueue import ConfigError, Job, LeaseLostError, Queue, get_current_job
from jobqueue.metrics import worker_metrics
from pipeline.ai.base import LLMError, LLMResult
from pipeline.ai.estimate import estimate_tokens
from pipeline.ai.guard import LLMCall
from pipeline.ai.ratelimits import RateLimitReading

__all__ = ["ProviderLimitGuard", "expected_input", "usage_of"]

log = logging.getLogger(__name__)

_TTL = {"5m": 300.0, "1h": 3600.0}


def _prefixes(call: LLMCall) -> list[tuple[str, int, float]]:
    """(key, tokens up to it, ttl) of each cache breakpoint of the call's prompt."""
    out: list[tuple[str, int, float]] = []
    digest = hashlib.sha256(call.model.encode())
    tokens = 0
    for block in call.blocks:
        digest.update(b"\x00" + block.text.encode())
        tokens += estimate_tokens(block.text)
        if block.cache is not None:
            out.append((digest.hexdigest(), tokens, _TTL[block.cache]))
    return out


def expected_input(call: LLMCall, seen: Mapping[str, float], now: float) -> int:
    """The input tokens the provider will charge a call: its whole prompt, less the longest
    cached prefix written within its TTL (`seen`: prefix key -> when it expires).

    Args:
        call: The call about to be made.
        seen: Prefixes known to be in the provider's cache, with their expiry.
        now: The current `time.monotonic()`.

    Returns:
        The estimate (cache writes are charged like input, reads are free).
    """
    whole = sum(estimate_tokens(b.text) for b in call.blocks) + estimate_tokens(call.prompt)
    cached = max(
        (tokens for key, tokens, _ in _prefixes(call) if seen.get(key, 0.0) > now), default=0
    )
    return whole - cached


def usage_of(result: LLMResult) -> dict[str, float]:
    """What a finished call spent of its model's limiter, bucket by bucket.

    Args:
        result: The call's result.

    Returns:
        `requests`, `input_tokens` (fresh input and cache writes) and `output_tokens`.
    """
    u = result.usage
    return {
        "requests": 1,
        "input_tokens": u.input_tokens + u.cache_write_tokens,
        "output_tokens": u.output_tokens,
    }


class ProviderLimitGuard:
    """A `Guard` that settles each call with its job's shared limiter and learns the provider's
    limits from the response headers.

    Args:
        queues: The stage queues by job type; a call is charged to its stage's queue's limiter
            (queues without a limiter are left alone: the per-queue mode).
    """

    def __init__(self, queues: Mapping[str, Queue], *, max_prefixes: int = 1024) -> None:
        self.queues = queues
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max_prefixes = max_prefixes

    def __repr__(self) -> str:
        return f"ProviderLimitGuard(queues={sorted(self.queues)})"

    def _queue_for(self, call: LLMCall) -> Queue | None:
        if call.stage is not None:
            queue = self.queues.get(call.stage)
            if queue is not None and queue.config.limiter is not None:
                return queue
        # a call outside a stage's job: any queue on the limiter of the call's model
        for queue in self.queues.values():
            limiter = queue.config.limiter
            if limiter is not None and limiter.name.endswith("." + call.model):
                return queue
        return None

    async def before(self, call: LLMCall) -> None:
        """Hold what the call's prompt needs beyond what is reserved, waiting until the
        buckets can pay it.

        Raises:
            UnrecoverableError: The call can never fit the model's limits.
        """
        queue = self._queue_for(call)
        job = get_current_job()
        if queue is None or job is None or job.id != call.job_id:
            return  # not inside the job that made the call: nothing reserved, nothing to hold
        needed = expected_input(call, self._seen, time.monotonic())
        if call.call_index == 0:
            reserved = (queue.config.cost or {}).get("input_tokens", 0)
            hold = {"input_tokens": needed - reserved} if needed > reserved else {}
        else:  # the first call's settle gave the job's reservation back
            hold = {"requests": 1, "input_tokens": needed, "output_tokens": call.max_tokens}
        if hold:
            await self._hold(job, hold)

    @staticmethod
    async def _hold(job: Job, hold: dict[str, float]) -> None:
        try:
            wait = await job.reserve(hold)
        except ConfigError:
            return  # the job's queue has no shared limiter
        except LeaseLostError:
            return  # the job is no longer ours: the worker drops its outcome anyway
        if wait > 0:
            # the buckets are spent for now: calling before they refill would earn a 429
            log.info("job %s waits %.1fs for its model's limits", job.id, wait)
            worker_metrics().observe_limiter_wait(job.queue.name, wait)
            await asyncio.sleep(wait)

    async def after(
        self, call: LLMCall, reservation: None, outcome: LLMResult | BaseException
    ) -> None:
        """Settle the call with the running job, then learn from the response's headers."""
        del reservation
        queue = self._queue_for(call)
        if queue is None:
            return
        usage: dict[str, float] | None = None
        readings: Mapping[str, RateLimitReading] = {}
        if isinstance(outcome, LLMResult):
            usage, readings = usage_of(outcome), outcome.rate_limits
            self._remember(call)
        elif isinstance(outcome, LLMError):
            readings = outcome.rate_limits
            if outcome.status_code is not None:
                usage = {}  # answered with an error: the provider counted nothing
        if usage is not None:
            await self._settle(call, usage)
        limiter = queue.config.limiter
        assert limiter is not None
        for bucket, reading in readings.items():
            if bucket in limiter.buckets and (reading.limit or reading.remaining is not None):
                await queue.learn_limit(bucket, limit=reading.limit, remaining=reading.remaining)

    def _remember(self, call: LLMCall) -> None:
        # the call wrote (or refreshed) its cached prefixes: later calls read them for free
        now = time.monotonic()
        for key, _, ttl in _prefixes(call):
            self._seen[key] = now + ttl
            self._seen.move_to_end(key)
        while len(self._seen) > self._max_prefixes:
            self._seen.popitem(last=False)

    @staticmethod
    async def _settle(call: LLMCall, usage: dict[str, float]) -> None:
        job = get_current_job()
        if job is None or job.id != call.job_id:
            return  # not inside the job that made the call: nothing was reserved
        try:
            await job.settle(usage)
        except ConfigError:
            pass  # the job's queue has no shared limiter
        except LeaseLostError:
            log.info("job %s lost its lease before its call was settled", job.id)
