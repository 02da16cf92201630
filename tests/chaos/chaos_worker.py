"""A worker process of the chaos suite: runs one `Worker` on the chaos queue until SIGTERM;
its handler writes every start and end to the ledger.

`JQ_CHAOS_CLOCK_OFFSET=<seconds>` shifts this process's `time.time` and `time.monotonic` (a
clock set wrong): the engine takes every delay, lease and limit from the Redis clock, so
nothing may change (the ledger keeps the real clock).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from ledger import Ledger

_OFFSET = float(os.environ.get("JQ_CHAOS_CLOCK_OFFSET") or 0)
if _OFFSET:
    _time, _monotonic = time.time, time.monotonic
    time.time = lambda: _time() + _OFFSET
    time.monotonic = lambda: _monotonic() + _OFFSET

from chaos_config import queue_config  # noqa: E402

from jobqueue import Job, Queue, Worker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--durable", type=int, default=0)
    parser.add_argument("--work-ms", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format=f"worker {os.getpid()} %(levelname)s %(name)s %(message)s"
    )
    ledger = Ledger(args.ledger)
    rng = random.Random()

    async def handler(job: Job) -> dict[str, int]:
        run = ledger.start(job.id)
        await asyncio.sleep(rng.uniform(0, 2 * args.work_ms) / 1000)
        ledger.end(run)
        return {"i": int(job.data["i"])}

    async def run() -> None:
        config = queue_config(args.queue, lease=args.lease, rate=args.rate, durable=args.durable)
        queue = Queue(config, redis=args.redis, prefix=args.prefix)
        worker = Worker(
            queue,
            handler,
            concurrency=args.concurrency,
            shutdown_grace=5.0,
            reconnect_backoff=(0.02, 0.5),
            error_log_every=5.0,
            scheduler_interval=None,
        )
        try:
            await worker.run()
        finally:
            await queue.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
