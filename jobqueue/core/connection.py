"""Redis connections: made from a URL or a given client, checked for safe settings, and
described without ever showing a password.

`connect` is the one factory every part of the engine and the app uses: a `redis://`,
`rediss://` or `unix://` URL gives a `redis.asyncio.Redis`; `redis+cluster://` a
`redis.asyncio.cluster.RedisCluster` (typed as `Redis`: it answers the same commands, routed by
key); `redis+sentinel://` a `Redis` whose pool asks the sentinels for the master (see
`jobqueue.core._urls` for the URL forms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import Connection, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import QueueFullError, UnsafeRedisError
from ._urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, parse_cluster_url, parse_sentinel_url
from .redact import redact_url

__all__ = [
    "CONNECTION_ERRORS",
    "REDIS_ERRORS",
    "CancelSafeConnection",
    "check_server",
    "cluster_of",
    "cluster_options",
    "connect",
    "dedicated_client",
    "describe_client",
    "is_fakeredis",
    "redact_url",
    "scan_slot",
    "sentinel_pool_of",
    "server_time",
]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OSError,
)
"""Errors of a server that is away, restarting or unreachable: retried after a backoff."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    QueueFullError,
)
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


def cluster_of(client: object) -> RedisCluster | None:
    """`client` as a `RedisCluster` when it is one (the engine types clients as `Redis`)."""
    return client if isinstance(client, RedisCluster) else None


def sentinel_pool_of(client: object) -> SentinelConnectionPool | None:
    """The Sentinel pool of a client made by `Sentinel.master_for`, else None."""
    pool = getattr(client, "connection_pool", None)
    return pool if isinstance(pool, SentinelConnectionPool) else None


def _hostlist(nodes: Iterable[tuple[str, int]]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)


def describe_client(client: Redis) -> str:
    """A password-free description of where a client connects."""
    cluster = cluster_of(client)
    if cluster is not None:
        nodes = cluster.nodes_manager.startup_nodes.values()
        auth = ":***@" if cluster.connection_kwargs.get("password") else ""
        scheme = "rediss+cluster" if _cluster_ssl(cluster) else "redis+cluster"
        return f"{scheme}://{auth}{_hostlist((n.host, int(n.port)) for n in nodes)}"
    sentinel = sentinel_pool_of(client)
    if sentinel is not None:
        where = _hostlist(
            (s.connection_pool.connection_kwargs.get("host", "localhost"),
             int(s.connection_pool.connection_kwargs.get("port", 26379)))
            for s in sentinel.sentinel_manager.sentinels
        )  # fmt: skip
        auth = ":***@" if sentinel.connection_kwargs.get("password") else ""
        db = sentinel.connection_kwargs.get("db", 0)
        return f"redis+sentinel://{auth}{where}/{sentinel.service_name}/{db}"
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
    cluster = cluster_of(redis)
    if cluster is not None:
        options = cluster_options(cluster)
        if socket_timeout is not None:
            options["socket_timeout"] = socket_timeout
        if not retries:
            options["retry"] = Retry(NoBackoff(), 0)
        nodes = [ClusterNode(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()]
        return cast(Redis, RedisCluster(startup_nodes=nodes, **options))
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    if socket_timeout is not None:
        kwargs["socket_timeout"] = socket_timeout
    if not retries:
        kwargs["retry"] = Retry(NoBackoff(), 0)
    sentinel = sentinel_pool_of(redis)
    if sentinel is not None:
        kwargs.pop("connection_pool", None)  # the new pool sets its own
        return Redis(
            connection_pool=SentinelConnectionPool(  # type: ignore[no-untyped-call]
                sentinel.service_name, sentinel.sentinel_manager, **kwargs
            )
        )
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


_CLUSTER_COPIED = (
    "username", "password", "client_name", "encoding", "encoding_errors", "decode_responses",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval",
    "credential_provider",
)  # fmt: skip


def _cluster_ssl(cluster: RedisCluster) -> bool:
    from redis.asyncio.connection import SSLConnection

    conn_class = cluster.connection_kwargs.get("connection_class")
    return isinstance(conn_class, type) and issubclass(conn_class, SSLConnection)


def cluster_options(cluster: RedisCluster) -> dict[str, Any]:
    """The `RedisCluster(...)` options that made `cluster` (to make another like it)."""
    kwargs = cluster.connection_kwargs
    options = {k: kwargs[k] for k in _CLUSTER_COPIED if k in kwargs}
    if _cluster_ssl(cluster):
        options["ssl"] = True
        options.update({k: v for k, v in kwargs.items() if k.startswith("ssl_")})
    return options


async def server_time(redis: Redis, *, key: str) -> tuple[int, int]:
    """`TIME` of the server holding `key` (on a cluster, its master: the clock its scripts
    read), as (seconds, microseconds)."""
    cluster = cluster_of(redis)
    if cluster is None:
        sec, usec = await redis.time()
    else:
        await cluster.initialize()
        sec, usec = await cluster.time(target_nodes=cluster.get_node_from_key(key))
    return int(sec), int(usec)


async def scan_slot(
    redis: Redis, pattern: str, *, key: str, count: int = 1000
) -> AsyncIterator[Any]:
    """SCAN for `pattern`, whose keys all live in `key`'s hash slot: on a cluster only the
    node that owns the slot is scanned (a plain SCAN on `RedisCluster` visits every node)."""
    cluster = cluster_of(redis)
    if cluster is None:
        async for found in redis.scan_iter(match=pattern, count=count):
            yield found
        return
    await cluster.initialize()  # the slot map is read at the first command
    node = cluster.get_node_from_key(key)
    async for found in cluster.scan_iter(match=pattern, count=count, target_nodes=node):
        yield found


def connect(url: str, **options: Any) -> Redis:
    """A client for `url` as the engine makes them: bytes replies, hiredis when installed, a
    health check every 30 s, and writes whose timeout cannot swallow a cancellation."""
    options.setdefault("health_check_interval", 30)
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER_SCHEMES:
        parsed = parse_cluster_url(url)
        nodes = [ClusterNode(host, port) for host, port in parsed.nodes]
        # typed as Redis: the engine sends it the same commands, routed by key
        return cast(Redis, RedisCluster(startup_nodes=nodes, **{**parsed.options, **options}))
    if scheme in SENTINEL_SCHEMES:
        return _sentinel_client(url, options)
    if scheme == "redis":
        options.setdefault("connection_class", CancelSafeConnection)
    return Redis.from_url(url, **options)


def _sentinel_client(url: str, options: dict[str, Any]) -> Redis:
    parsed = parse_sentinel_url(url)
    settings = {**parsed.options, **options}
    # the sentinels get the timeouts (never the master's credentials) and their own ones
    sentinel_kwargs = {
        k: v for k, v in settings.items() if k.startswith("socket_") or k.startswith("ssl_")
    }
    sentinel_kwargs.update(parsed.sentinel_options)
    if settings.pop("ssl", False):
        settings["connection_class"] = SentinelManagedSSLConnection
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        parsed.sentinels, sentinel_kwargs=sentinel_kwargs, **settings
    )
    return cast(Redis, sentinel.master_for(parsed.service, redis_class=Redis, db=parsed.db))


async def _infos(client: Redis) -> list[tuple[str, dict[str, Any]]]:
    """(where, INFO fields) of the server, or of each master of a cluster."""
    sections = ("server", "replication", "memory", "persistence")
    cluster = cluster_of(client)
    if cluster is None:
        info: dict[str, Any] = {}
        for section in sections:
            info.update(await client.info(section))
        return [(describe_client(client), info)]
    found = []
    await cluster.initialize()  # the node list is read at the first command
    for node in cluster.get_primaries():
        info = {}
        for section in sections:
            info.update(await cluster.info(section, target_nodes=node))
        found.append((f"redis+cluster node {node.host}:{node.port}", info))
    return found


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
    checked: dict[str, str] = {}
    for where, info in await _infos(client):
        checked = _check_info(where, info, allow_eviction=allow_eviction)
    return checked


def _check_info(where: str, info: dict[str, Any], *, allow_eviction: bool) -> dict[str, str]:
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
