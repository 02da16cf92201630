"""A real worker process for the end-to-end tests.

    python worker_proc.py REDIS_URL PREFIX QUEUE_CONFIG_JSON MODE [CONCURRENCY] [GRACE]

Modes (the handler's behaviour): `record` records each start and end (pid, time) in
`<prefix>:test:log`, waits for the gate (`<prefix>:test:gate` exists) when the job's data has
`"gate": true`, then sleeps `job.data["sleep"]` seconds (asyncio); `block` blocks the event
loop (so leases are not renewed) until `<prefix>:test:release` exists, records its end from
inside the block and returns without awaiting anything; `first-hangs` hangs on a job's first
run and completes on later runs. In `record` mode a job's data may also ask for
`"rate_limit_once": seconds` (its first run raises a RATE_LIMIT RetryAfter), `"fail_while_down":
true` (it raises a connection error while `<prefix>:test:down` exists) and `"usage": {...}`
(settled on the queue's shared limiter); `"children": true` returns the flow children's results
(`{"pid", "children"}`); `"kids": {"n", "queue", "gate"}` makes the job, on its first step, add
n children on that queue (`Job.add_children`, logged `added`), wait for the gate when asked,
and wait for its children (it runs again with `job.step` 1). The queue config JSON may hold `"limiter": {"name",
"buckets": {name: [capacity, per]}, "breaker": {failures, window, cooldown, max_wait}}`. Prints
"ready" once the worker runs. SIGUSR1 writes the
stack of every task to the log (what a hung worker is waiting for).

Handlers reach Redis through `jobqueue.connect`: a plain redis-py client (socket timeout 5 s by
default) can drop the worker's cancellation on Python 3.11 (see jobqueue.core.connection).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import redis
from redis.cluster import RedisCluster

from jobqueue import (
    Breaker,
    Bucket,
    Child,
    ErrorType,
    Job,
    Limiter,
    Queue,
    QueueConfig,
    RateLimit,
    RetryAfter,
    Worker,
    connect,
)

# a blocked or gated handler gives up after this long: a test never waits that long
_GIVE_UP = 120.0


def _dump_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"TASK {task.get_name()} cancelling={task.cancelling()}", file=sys.stderr)
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_frame"):
            frame = coro.cr_frame
            if frame is not None:
                code = frame.f_code
                print(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}", file=sys.stderr)
            coro = coro.cr_await
    sys.stderr.flush()


def _block_until(client: redis.Redis, key: str) -> None:
    deadline = time.monotonic() + _GIVE_UP
    while not client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)


async def main() -> None:
    url, prefix, cfg_json, mode = sys.argv[1:5]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    grace = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    cfg: dict[str, Any] = json.loads(cfg_json)
    if "rate_limit" in cfg:
        cfg["rate_limit"] = RateLimit(**cfg["rate_limit"])
    if "limiter" in cfg:
        spec = cfg["limiter"]
        cfg["limiter"] = Limiter(
            spec["name"],
            {name: Bucket(c, per=per) for name, (c, per) in spec.get("buckets", {}).items()},
            Breaker(**spec["breaker"]) if spec.get("breaker") else None,
        )
    for key in ("keep_completed", "keep_failed"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    config = QueueConfig(**cfg)
    queue = Queue(config, redis=url, prefix=prefix)
    side = connect(url)
    sync_side: Any = (
        # a cluster's first node: the client finds the others
        RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://").split(",")[0])
        if url.startswith("redis+cluster://")
        else redis.Redis.from_url(url)
    )
    log_key = f"{prefix}:test:log"
    pid = os.getpid()

    def entry(ev: str, job: Job) -> str:
        return json.dumps(
            {
                "ev": ev,
                "id": job.id,
                "pid": pid,
                "t": time.time(),
                "attempt": job.attempt,
                "step": job.step,
            }
        )

    async def handler(job: Job) -> Any:
        data = job.data or {}
        await side.rpush(log_key, entry("start", job))
        if mode == "block":
            # nothing of the worker runs meanwhile: no renewal, no outcome, no stall check
            _block_until(sync_side, f"{prefix}:test:release")
            sync_side.rpush(log_key, entry("end", job))
            return {"pid": pid}
        if mode == "first-hangs":
            runs = await side.incr(f"{prefix}:test:runs:{job.id}")
            if runs == 1:
                await asyncio.sleep(3600)
        kids = data.get("kids")
        if kids and job.step == 0:
            await job.add_children(
                [Child(queue=kids["queue"], name="c") for _ in range(int(kids["n"]))]
            )
            await side.rpush(log_key, entry("added", job))
            if kids.get("gate"):
                deadline = time.monotonic() + _GIVE_UP
                while not await side.exists(f"{prefix}:test:gate") and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            await job.wait_for_children()
        if data.get("gate"):
            deadline = time.monotonic() + _GIVE_UP
            while not await side.exists(f"{prefix}:test:gate") and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        first = data.get("rate_limit_once") and await side.incr(f"{prefix}:test:runs:{job.id}")
        if first == 1:
            raise RetryAfter(data["rate_limit_once"], "429", error_type=ErrorType.RATE_LIMIT)
        if data.get("fail_while_down") and await side.exists(f"{prefix}:test:down"):
            raise ConnectionError("the provider is down (HTTP 529)")
        if data.get("usage"):
            await job.settle(data["usage"])
        await asyncio.sleep(float(data.get("sleep", 0)))
        if data.get("fail"):
            raise RuntimeError(f"asked to fail: {data['fail']}")
        await side.rpush(log_key, entry("end", job))
        if data.get("children"):
            return {"pid": pid, "children": await job.children_results()}
        return {"pid": pid}

    # every error logged (not rate-limited): the restart test reads each announced backoff
    worker = Worker(
        queue, handler, concurrency=concurrency, shutdown_grace=grace, error_log_every=0
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    print("ready", flush=True)
    await worker.run()
    await side.aclose()
    sync_side.close()
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
