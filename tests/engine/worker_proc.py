"""A real worker process for the end-to-end tests.

    python worker_proc.py REDIS_URL PREFIX QUEUE_CONFIG_JSON MODE [CONCURRENCY] [GRACE]

Modes (the handler's behaviour): `record` records each start and end (pid, time) in
`<prefix>:test:log` and sleeps `job.data["sleep"]` seconds (asyncio); `block` sleeps with
time.sleep (blocks the event loop, so leases are not renewed); `first-hangs` hangs on a job's
first run and completes on later runs. Prints "ready" once the worker runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from jobqueue import Job, Queue, QueueConfig, RateLimit, Worker


async def main() -> None:
    url, prefix, cfg_json, mode = sys.argv[1:5]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    grace = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg: dict[str, Any] = json.loads(cfg_json)
    if "rate_limit" in cfg:
        cfg["rate_limit"] = RateLimit(**cfg["rate_limit"])
    for key in ("keep_completed", "keep_failed"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    config = QueueConfig(**cfg)
    queue = Queue(config, redis=url, prefix=prefix)
    side = aioredis.Redis.from_url(url)
    log_key = f"{prefix}:test:log"
    pid = os.getpid()

    async def handler(job: Job) -> Any:
        data = job.data or {}
        await side.rpush(
            log_key,
            json.dumps(
                {"ev": "start", "id": job.id, "pid": pid, "t": time.time(), "attempt": job.attempt}
            ),
        )
        if mode == "block":
            time.sleep(float(data.get("sleep", 0)))
        elif mode == "first-hangs":
            runs = await side.incr(f"{prefix}:test:runs:{job.id}")
            if runs == 1:
                await asyncio.sleep(3600)
        else:
            await asyncio.sleep(float(data.get("sleep", 0)))
        if data.get("fail"):
            raise RuntimeError(f"asked to fail: {data['fail']}")
        await side.rpush(
            log_key, json.dumps({"ev": "end", "id": job.id, "pid": pid, "t": time.time()})
        )
        return {"pid": pid}

    worker = Worker(queue, handler, concurrency=concurrency, shutdown_grace=grace)
    print("ready", flush=True)
    await worker.run()
    await side.aclose()
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
