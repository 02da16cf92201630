"""`ProviderLimitGuard`: after every model call, settle it with the shared limiter and learn
what the provider says of its limits.

A job reserved its stage's estimated cost of its model's limiter when it started (the take
script). After each call this guard, in order:

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

import logging
from collections.abc import Mapping

from jobqueue import ConfigError, LeaseLostError, Queue, get_current_job
from pipeline.ai.base import LLMError, LLMResult
from pipeline.ai.guard import LLMCall
from pipeline.ai.ratelimits import RateLimitReading

__all__ = ["ProviderLimitGuard", "usage_of"]

log = logging.getLogger(__name__)


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

    def __init__(self, queues: Mapping[str, Queue]) -> None:
        self.queues = queues

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
        """Nothing to do: the job's start reserved its cost."""
        del call

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
