"""`python -m bench.roundtrip [--redis URL] [--n 20000]`: the floor under "enqueue one by one".

Awaits `--n` calls one after the other on this process's event loop, each kind in turn: a
`PING` and an `EVALSHA` of a script that only returns, both on jobqueue's fast connection, then
`Queue.add` of a small job. It prints each kind's rate and the client CPU per call as a
Markdown table: what a bare awaited round trip costs on this machine (asyncio),
against which an add's own work (its encoding, its script, the `Job` it returns) is measured.
The queue it adds to lives under a fresh prefix and is removed at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from jobqueue import Queue, QueueConfig
from jobqueue.core.fastconn import FastConnection

from . import cli

_RETURN = "return 1"


async def _timed(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(calls per second, client CPU µs per call) of `n` awaited calls."""
    await call()  # warm: connection, script cache
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


async def measure(url: str, n: int) -> str:
    """The table of rates and CPU per call."""
    conn = FastConnection.from_url(url)
    if conn is None:
        raise SystemExit(f"the fast connection cannot copy {url.split('@')[-1]} (TLS?)")
    queue = Queue(QueueConfig("roundtrip"), redis=url, prefix=f"bench-rt-{uuid.uuid4().hex[:8]}")
    try:
        sha = await conn.execute("SCRIPT", "LOAD", _RETURN)
        rows = [
            ("PING", await _timed(n, lambda: conn.execute("PING"))),
            ("EVALSHA (return 1)", await _timed(n, lambda: conn.execute("EVALSHA", sha, 0))),
            ("Queue.add", await _timed(n, lambda: queue.add("noop", {"t": 1.0, "i": 1}))),
        ]
    finally:
        await queue.obliterate(force=True)
        await queue.close()
        await conn.aclose()
    lines = [
        f"| awaited one by one (n={n:,}) | calls/s | client CPU µs/call |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:,.0f} | {cpu:.1f} |" for name, (rate, cpu) in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    cli.main("python -m bench.roundtrip", __doc__, measure, n=20000)
