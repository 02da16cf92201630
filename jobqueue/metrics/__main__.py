"""`python -m jobqueue.metrics --redis URL [--prefix jq] [--host 127.0.0.1] [--port 9808]`:
serve the queue-level gauges of every queue under a prefix at `GET /metrics`, alone (the
dashboard serves the same at its own `/metrics`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, start_http_server

from ..core.connection import connect
from ..core.redact import redact_url
from ._queues import QueueMetricsCollector

log = logging.getLogger("jobqueue.metrics")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobqueue.metrics", description=__doc__)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    p.add_argument("--prefix", default="jq", help="key prefix of the queues (default jq)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9808, help="port to serve on (default 9808)")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds a scrape waits for Redis (default 5)"
    )
    return p


async def _serve(args: argparse.Namespace) -> None:
    redis = connect(args.redis)
    collector = QueueMetricsCollector(redis, prefix=args.prefix, timeout=args.timeout)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    loop = asyncio.get_running_loop()
    collector.attach(loop)
    server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "serving the metrics of %s (prefix %s) at http://%s:%d/metrics",
        redact_url(args.redis), args.prefix, args.host, server.server_port,
    )  # fmt: skip
    print(f"metrics at http://{args.host}:{server.server_port}/metrics", flush=True)
    try:
        await stop.wait()
    finally:
        # the HTTP thread may be waiting on this loop: stop it first, then close the client
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(5)
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m jobqueue.metrics`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
