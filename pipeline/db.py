"""PostgreSQL access for the pipeline: the process-wide pool, migrations and secret redaction.

The pool is made on first use from an explicit URL or `DATABASE_URL`, so importing this module
never touches the network. `migrate` applies `schema.sql` (idempotent) under an advisory lock.

Command line::

    python -m pipeline.db migrate [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jobqueue import redact as _redact
from jobqueue import redact_url

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Connection",
    "acquire",
    "clean_text",
    "close_pool",
    "create_pool",
    "get_pool",
    "main",
    "migrate",
    "redact",
    "redact_dsn",
    "set_pool",
]

#: A connection as handed out by asyncpg, either direct or borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection | PoolConnectionProxy"

#: The schema version `schema.sql` records; bump both together.
SCHEMA_VERSION = 5
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema.sql"

# Any fixed 64-bit number works; it only has to be the same for every migrating process.
_MIGRATION_LOCK_KEY = 0x6A7170_5343_4831  # "jqp" "SCH1"

_pool: asyncpg.Pool | None = None
_pool_lock: asyncio.Lock | None = None

# --- Redaction --------------------------------------------------------------------------------

# One redaction for the whole project: the engine's (URL passwords, `password=`/`api_key=`
# values, `sk-...` keys, Bearer tokens), re-exported here for the pipeline's callers.
redact = _redact


def clean_text(value: str | None, limit: int = 2000) -> str | None:
    """Make text fit for a row: secrets masked, NUL removed, at most `limit` characters.

    Args:
        value: text or None.
        limit: maximum length kept.

    Returns:
        The cleaned text, or None when `value` is None.
    """
    if value is None:
        return None
    text = redact(value.replace("\x00", ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A DSN's user name alone is not a secret: the engine's `redact_url` masks the password only
# (`postgresql://user:***@host/db`), and `password=...` in a key/value DSN.
redact_dsn = redact_url


# --- Pool -------------------------------------------------------------------------------------


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb come back as Python objects and are sent from them, instead of raw text.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = 30.0,
    connect_timeout: float = 10.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """Create a new pool (not the shared one) with the pipeline's codecs and timeouts.

    Args:
        database_url: PostgreSQL URL.
        min_size: connections opened at once (0 = connect lazily).
        max_size: upper bound of connections.
        command_timeout: seconds before a statement is abandoned; without one a dead server
            can hang a caller forever (asyncpg#447).
        connect_timeout: seconds to establish a connection.
        **kwargs: passed to `asyncpg.create_pool` (e.g. `statement_cache_size=0` behind
            pgbouncer).

    Returns:
        The pool.
    """
    return await asyncpg.create_pool(
        dsn=database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=connect_timeout,
        init=_init_connection,
        **kwargs,
    )


async def get_pool(database_url: str | None = None) -> asyncpg.Pool:
    """Return the process-wide pool, creating it on first use.

    Args:
        database_url: URL to use when the pool does not exist yet; defaults to the
            `DATABASE_URL` environment variable. Ignored once the pool exists.

    Returns:
        The shared pool.

    Raises:
        RuntimeError: no pool exists and no URL was given or found in the environment.
    """
    global _pool, _pool_lock
    if _pool is not None and not _pool.is_closing():
        return _pool
    if _pool_lock is None:
        _pool_lock = asyncio.Lock()
    async with _pool_lock:
        # Another task may have created it while this one waited for the lock.
        if _pool is not None and not _pool.is_closing():
            return _pool
        url = database_url or os.environ.get("DATABASE_URL")
        if not url:
            raise RuntimeError("no database URL: pass one or set DATABASE_URL")
        _pool = await create_pool(url)
        return _pool


def set_pool(pool: asyncpg.Pool | None) -> None:
    """Make `pool` the process-wide pool (tests, or an application that builds its own).

    Args:
        pool: the pool to share, or None to forget the current one without closing it.
    """
    global _pool
    _pool = pool


async def close_pool() -> None:
    """Close the process-wide pool, if any; the next `get_pool` creates a new one."""
    global _pool, _pool_lock
    pool, _pool, _pool_lock = _pool, None, None  # the lock belongs to this event loop
    if pool is not None and not pool.is_closing():
        await pool.close()


@contextlib.asynccontextmanager
async def acquire(conn: Connection | None = None) -> AsyncIterator[Connection]:
    """Yield `conn` when given (the caller's transaction), else a connection of the pool.

    Args:
        conn: an open connection to reuse, or None.

    Yields:
        A connection.
    """
    if conn is not None:
        yield conn
        return
    pool = await get_pool()
    async with pool.acquire() as pooled:
        yield pooled


# --- Migration --------------------------------------------------------------------------------


async def _migrate_on(conn: Connection) -> int:
    # Every workers process migrates at start. On an up-to-date database it must take no lock:
    # the file's DDL (CREATE INDEX IF NOT EXISTS takes a SHARE lock even when the index exists)
    # would deadlock with the application's transactions running meanwhile.
    if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        current = await conn.fetchval("SELECT max(version) FROM schema_version")
        if current is not None and int(current) >= SCHEMA_VERSION:
            return int(current)
    sql = SCHEMA_PATH.read_text(encoding="utf-8")
    async with conn.transaction():
        # Two processes creating the same table at once can fail on the catalog's unique
        # indexes even with IF NOT EXISTS; the transaction-scoped lock serializes them.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute("SET LOCAL client_min_messages = warning")
        await conn.execute(sql)
        version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version)


async def migrate(target: str | asyncpg.Pool | None = None) -> int:
    """Apply `schema.sql` in one transaction; safe to run twice and from concurrent processes.

    Args:
        target: a PostgreSQL URL, a pool, or None for the process-wide pool.

    Returns:
        The schema version now recorded in `schema_version`.
    """
    if isinstance(target, str):
        conn = await asyncpg.connect(target, timeout=10.0)
        try:
            return await _migrate_on(conn)
        finally:
            await conn.close()
    pool = target if target is not None else await get_pool()
    async with pool.acquire() as pooled:
        return await _migrate_on(pooled)


# --- Command line -----------------------------------------------------------------------------

_CONNECT_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.CannotConnectNowError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `pipeline.db` command line.

    Args:
        argv: arguments without the program name; defaults to `sys.argv[1:]`.

    Returns:
        The exit code: 0 on success, 2 when the database cannot be reached or no URL is set.
    """
    parser = argparse.ArgumentParser(prog="python -m pipeline.db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("migrate", help="apply schema.sql (idempotent)")
    cmd.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (default: $DATABASE_URL)",
    )
    args = parser.parse_args(argv)
    url: str | None = args.database_url
    if not url:
        print("error: no database URL: pass --database-url or set DATABASE_URL", file=sys.stderr)
        return 2
    try:
        version = asyncio.run(migrate(url))
    except _CONNECT_ERRORS as exc:
        reason = redact(f"{type(exc).__name__}: {exc}")
        print(f"error: cannot connect to {redact_dsn(url)}: {reason}", file=sys.stderr)
        return 2
    print(f"schema version {version} applied to {redact_dsn(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
