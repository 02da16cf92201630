"""A real worker process whose handler (`isolation_handlers.work`) runs isolated in children.

    python isolated_worker_proc.py REDIS_URL PREFIX QUEUE_CONFIG_JSON [GRACE]

Prints "ready" once the worker runs; SIGTERM stops it gracefully (within GRACE seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import isolation_handlers

from jobqueue import Queue, QueueConfig, Worker


async def main() -> None:
    url, prefix, cfg_json = sys.argv[1:4]
    grace = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    queue = Queue(QueueConfig(**json.loads(cfg_json)), redis=url, prefix=prefix)
    worker = Worker(queue, isolation_handlers.work, shutdown_grace=grace, isolation="process")
    print("ready", flush=True)
    await worker.run()
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
