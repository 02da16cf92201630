"""Redis connections: made from a URL or a given client, checked for safe settings, and
described without ever showing a password."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Connection, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import QueueFullError, UnsafeRedisError
from .redact import redact_url

__all__ = [
    "CONNECTION_ERRORS",
    "REDIS_ERRORS",
    "CancelSafeConnection",
    "check_server",
    "connect",
    "dedicated_client",
    "describe_client",
    "is_fakeredis",
    "redact_url",
]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OSError,
)
"""Errors of a server that is away, restarting or unreachable: retried after a backoff."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, QueueFullError)
"""Every error a Redis call can raise (a reply error too: READONLY after a failover, OOM,
BUSY, LOADING, MISCONF, NOREPLICAS, TRYAGAIN, CLUSTERDOWN; a script refused for OOM as our
`QueueFullError`): what a worker's loops survive, logging and backing off, never ending on one."""

log = logging.getLogger(__name__)
_warned: set[str] = set()


def is_fakeredis(client: Redis) -> bool:
    """Whether `client` talks to an in-memory `fakeredis` server rather than to a real one.

    Told by the classes of the client and of its pool's connections (fakeredis is never
    imported here: it is an optional, test-time dependency).
    """
    pool = getattr(client, "connection_pool", None)
    classes = [type(client), getattr(pool, "connection_class", None)]
    return any(
        (getattr(base, "__module__", None) or "").partition(".")[0] == "fakeredis"
        for cls in classes
        if isinstance(cls, type)
        for base in cls.__mro__
    )


def describe_client(client: Redis) -> str:
    """A password-free description of where a client connects."""
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    if is_fakeredis(client):
        # its `host` names an in-memory server, not a machine
        return f"fakeredis://{kwargs.get('host', '')}/{kwargs.get('db', 0)}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    auth = ":***@" if kwargs.get("password") else ""
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{auth}{host}:{port}/{db}"


class CancelSafeConnection(Connection):
    """A redis-py connection whose socket write timeout cannot swallow a cancellation.

    redis-py bounds writes with `asyncio.wait_for`, which on Python 3.11 loses a `cancel()`
    arriving just as the write completes: a worker's task could then miss its shutdown. The
    same bound is applied here with `asyncio.timeout`, which does not lose it.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


def dedicated_client(
    redis: Redis, *, socket_timeout: float | None = None, retries: bool = True
) -> Redis:
    """A client of its own with `redis`'s settings, for a blocking read or a subscription.

    Args:
        redis: the client to copy (its pool's connection class and kwargs).
        socket_timeout: replaces the socket timeout (longer than any block, so that a read that
            never settles on a half-dead connection ends in a reconnect, not a hang).
        retries: False turns off redis-py's silent retries, so a lost connection surfaces
            to the caller (who must resubscribe or re-read itself).
    """
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    if socket_timeout is not None:
        kwargs["socket_timeout"] = socket_timeout
    if not retries:
        kwargs["retry"] = Retry(NoBackoff(), 0)
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


def connect(url: str, **options: Any) -> Redis:
    """A client for `url` as the engine makes them: bytes replies, hiredis when installed, a
    health check every 30 s, and writes whose timeout cannot swallow a cancellation."""
    options.setdefault("health_check_interval", 30)
    if urlsplit(url).scheme == "redis":
        options.setdefault("connection_class", CancelSafeConnection)
    return Redis.from_url(url, **options)


async def check_server(client: Redis, *, allow_eviction: bool = False) -> dict[str, str]:
    """Refuse servers that can lose jobs; warn about missing persistence.

    Reads `INFO` (allowed on managed Redis that blocks CONFIG): a replica is refused, so is an
    eviction policy other than `noeviction` unless `allow_eviction`; persistence off is a
    warning. Returns the fields read. A fakeredis client is not checked (fakeredis has no
    `INFO`; an in-memory server is never a replica, never evicts and never persists): an
    empty dict is returned.
    """
    if is_fakeredis(client):
        return {}
    info: dict[str, Any] = await client.info("server")
    info.update(await client.info("replication"))
    info.update(await client.info("memory"))
    info.update(await client.info("persistence"))
    where = describe_client(client)
    if str(info.get("role", "master")) in {"slave", "replica"}:
        raise UnsafeRedisError(f"{where} is a read-only replica; point the queue at the primary")
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        if not allow_eviction:
            raise UnsafeRedisError(
                f"{where} has maxmemory-policy {policy!r}: Redis may evict jobs. "
                "Set it to 'noeviction' (or pass allow_eviction=True to accept the risk)"
            )
        log.warning("redis %s evicts keys (maxmemory-policy %s): jobs can be lost", where, policy)
    if str(info.get("aof_enabled", "0")) != "1" and where not in _warned:
        _warned.add(where)  # once per server and process, not once per queue
        log.warning("redis %s has no append-only file: a restart can lose recent jobs", where)
    version = str(info.get("redis_version", "0"))
    if int(version.split(".")[0] or 0) < 7:
        log.warning("redis %s is version %s; 7.0 or newer is expected", where, version)
    return {
        k: str(v) for k, v in info.items() if k in {"redis_version", "role", "maxmemory_policy"}
    }
