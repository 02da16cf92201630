"""A worker process for the failover tests: drains queues, each completion appended to a file.

    python drain_worker.py REDIS_URL PREFIX QUEUES_JSON OUT_FILE [CONCURRENCY]

QUEUES_JSON is a list of `QueueConfig` keyword dicts (one `Worker` each, in one process). The
ledger is a local file (one `<queue> <job id>` line per completed run, flushed at once), not a
Redis key: a master killed by the test must not take the record of what ran with it. Prints
"ready" once the workers run; the test kills it at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from jobqueue import Job, Queue, QueueConfig, Worker


async def main() -> None:
    url, prefix, configs, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    ledger = open(out, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    for cfg in configs:  # JSON has no tuples
        for key in ("keep_completed", "keep_failed"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
    queues = [Queue(QueueConfig(**cfg), redis=url, prefix=prefix) for cfg in configs]

    async def handler(job: Job) -> Any:
        await asyncio.sleep(float(job.data.get("sleep", 0)))
        ledger.write(f"{job.queue.name} {job.id}\n")
        return None

    workers = [Worker(q, handler, concurrency=concurrency, handle_signals=False) for q in queues]
    print("ready", flush=True)
    await asyncio.gather(*(w.run() for w in workers))
    for q in queues:
        await q.close()
    ledger.close()


if __name__ == "__main__":
    asyncio.run(main())
