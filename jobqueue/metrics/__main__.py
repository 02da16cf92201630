"""`python -m jobqueue.metrics --redis URL [--prefix jq] [--host 127.0.0.1] [--port 9808]`:
serve the queue-level gauges of every queue under a prefix at `GET /metrics`, alone (the
dashboard serves the same at its own `/metrics`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, start_http_server

from ..core._inputs import cut
from ..core.connection import connect
from ..core.keys import validate_prefix
from ..core.redact import redact, redact_url
from ..errors import JobQueueError
from ._queues import QueueMetricsCollector

log = logging.getLogger("jobqueue.metrics")


def _port(text: str) -> int:
    port = int(text)  # argparse turns a ValueError into a usage error naming the value
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0-65535, got {port}")
    return port


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def _prefix(text: str) -> str:
    try:
        return validate_prefix(text)
    except JobQueueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobqueue.metrics", description=__doc__)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    p.add_argument(
        "--prefix", type=_prefix, default="jq", help="key prefix of the queues (default jq)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=9808, help="port to serve on (default 9808)")
    p.add_argument(
        "--timeout", type=_seconds, default=5.0, help="seconds a scrape waits for Redis (default 5)"
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
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        connect(args.redis)  # a bad URL is a usage error, before anything is served
    except ValueError as exc:
        parser.error(f"--redis {redact_url(cut(args.redis, 200))}: {cut(str(exc))}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except (OSError, UnicodeError, OverflowError) as exc:  # the address cannot be bound
        where = f"{cut(args.host, 100)}:{args.port}"
        print(f"error: cannot serve on {where}: {cut(redact(str(exc)))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
