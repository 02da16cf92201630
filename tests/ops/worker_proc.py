"""A worker process for the ops tests.

    python worker_proc.py --redis URL --prefix P --queue Q [--concurrency N] [--lease S] ...

The handler follows the job's data (a dict): `record` (RPUSH the job id to that key when it
starts), `gate` (wait until that key exists), `log` (lines for `job.log`), `fail_once` (fail
without retry on the first run only), `fail` (fail without retry), `error` (a retryable
error), `sleep` (seconds), `result`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from jobqueue import Job, Queue, QueueConfig, RateLimit, UnrecoverableError, Worker


async def handler(job: Job) -> Any:
    data = job.data if isinstance(job.data, dict) else {}
    redis = job.queue.redis
    if "record" in data:
        await redis.rpush(data["record"], job.id)
    if "gate" in data:
        deadline = time.monotonic() + 120  # a test never waits that long
        while not await redis.exists(data["gate"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    for line in data.get("log", []):
        await job.log(line)
    if "fail_once" in data and await redis.incr(f"{data['fail_once']}:{job.id}") == 1:
        raise UnrecoverableError("failed on the first run")
    if "fail" in data:
        raise UnrecoverableError(data["fail"])
    if "error" in data:
        raise RuntimeError(data["error"])
    if "sleep" in data:
        await asyncio.sleep(float(data["sleep"]))
    return data.get("result")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--name")
    p.add_argument("--concurrency", type=int, default=1)
    # a long lease: a loaded machine never loses a job (no test here is about stalls)
    p.add_argument("--lease", type=float, default=30.0)
    p.add_argument("--stall-interval", type=float, default=0.5)
    p.add_argument("--drain-delay", type=float, default=0.2)
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--attempts", type=int, default=1)
    p.add_argument("--grace", type=float, default=1.0)
    p.add_argument("--cap", type=int, help="QueueConfig.concurrency (all workers)")
    p.add_argument("--rate", help="QueueConfig.rate_limit as MAX/PER_SECONDS")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    config = QueueConfig(
        args.queue,
        lease=args.lease,
        stall_interval=args.stall_interval,
        drain_delay=args.drain_delay,
        heartbeat_interval=args.heartbeat,
        attempts=args.attempts,
        backoff=0.1,
        concurrency=args.cap,
        rate_limit=RateLimit(int(args.rate.split("/")[0]), float(args.rate.split("/")[1]))
        if args.rate
        else None,
    )
    queue = Queue(config, redis=args.redis, prefix=args.prefix)
    try:
        worker = Worker(
            queue,
            handler,
            concurrency=args.concurrency,
            name=args.name,
            shutdown_grace=args.grace,
            reconnect_backoff=(0.05, 0.5),
        )
        await worker.run()
    finally:
        await queue.close()


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(run(parse(sys.argv[1:])))
