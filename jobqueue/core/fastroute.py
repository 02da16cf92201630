"""The fast path (`FastConnection`) on Redis Cluster and behind Redis Sentinel.

Cluster (`ClusterFastConnection`):

- one multiplexed `FastConnection` per master, opened on first use;
- the slot map read from `CLUSTER SHARDS` (`CLUSTER SLOTS` on servers without it), asking the
  known masters first, then the startup nodes;
- each command routed by the hash slot of its first key (for `EVAL`/`EVALSHA` the first of
  KEYS: every key of one engine script shares one hash tag, so one slot);
- `MOVED slot host:port`: the slot is pointed at the new owner, the map is read again in the
  background, and the command is sent there (a redirected command did not run);
- `ASK slot host:port` (a slot being migrated): `ASKING` and the command go to the target back
  to back on its connection, with nothing in between, and the map is left as it is;
- `TRYAGAIN` (a multi-key command during a migration): retried after a short pause;
- `READONLY` (our master was demoted by a failover while its connection stayed up): the map is
  read again and the command sent to the new owner (a refused script did not run);
- a lost connection or a timeout fails the command (it may have run: the caller's lease logic
  decides), and the map is read again before the next command; a node that refuses the
  connection (nothing was sent) makes it read the map again and retry a few times, then fail
  (until the dead master's replica is promoted and the map names it);
- `SCRIPT LOAD` goes to every master (a script is cached per node).

Sentinel (`SentinelFastConnection`, in `jobqueue.core.fastsentinel`): a `FastConnection` whose
address comes from the sentinels
(`SENTINEL GET-MASTER-ADDR-BY-NAME`, through redis-py's `Sentinel`) each time it connects, and
is asked again once a second while commands flow (before the command: a failover moves it to
the new master); a
`READONLY` reply (the master it reached was demoted) drops the connection, and the command is
sent once more to the master the sentinels name now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._tls import tls_context
from .connection import cluster_of, sentinel_pool_of
from .fastconn import DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, FastConnection
from .fastsentinel import SentinelFastConnection

__all__ = [
    "MAX_REDIRECTS",
    "ClusterFastConnection",
    "SentinelFastConnection",
    "fast_connection",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""Redirections (MOVED, ASK, TRYAGAIN, READONLY) one command may follow before failing."""

_SLOTS = 16384
_NO_KEY = frozenset({"PING", "TIME", "INFO", "SCRIPT", "WAIT", "ASKING", "CLUSTER"})

Addr = tuple[str, int]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_key(args: tuple[Any, ...]) -> Any:
    """The key a command is routed by, or None for a command without keys."""
    name = _text(args[0]).upper()
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name in _NO_KEY or len(args) < 2:
        return None
    return args[1]


def _slot_of(key: Any) -> int:
    return int(key_slot(key if isinstance(key, bytes) else str(key).encode()))


def _pairs(flat: Any) -> dict[str, Any]:
    """A RESP2 flat map (`[k1, v1, k2, v2...]`, or a dict under RESP3) as a dict."""
    if isinstance(flat, dict):
        return {_text(k): v for k, v in flat.items()}
    items = list(flat)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _shards_map(reply: Any, *, tls: bool = False) -> list[tuple[int, int, Addr]]:
    """Slot ranges and their masters from `CLUSTER SHARDS` (a TLS client takes each node's
    `tls-port`: a node listening on both reports both)."""
    ranges: list[tuple[int, int, Addr]] = []
    for shard in reply:
        fields = _pairs(shard)
        master: Addr | None = None
        for node in fields.get("nodes", []):
            info = _pairs(node)
            if _text(info.get("role", "")) != "master":
                continue
            host = _text(info.get("endpoint") or info.get("ip") or "")
            if host in ("", "?"):
                host = _text(info.get("ip", ""))
            ports = ("tls-port", "port") if tls else ("port", "tls-port")
            port = int(info.get(ports[0]) or info.get(ports[1]) or 0)
            healthy = _text(info.get("health", "online")) == "online"
            if host and port and (master is None or healthy):
                master = (host, port)
        slots = [int(x) for x in fields.get("slots", [])]
        if master is not None:
            ranges.extend((slots[i], slots[i + 1], master) for i in range(0, len(slots) - 1, 2))
    return ranges


def _slots_map(reply: Any) -> list[tuple[int, int, Addr]]:
    ranges: list[tuple[int, int, Addr]] = []
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        ranges.append((start, end, (_text(master[0]), int(master[1]))))
    return ranges


class ClusterFastConnection:
    """The fast path on Redis Cluster: one `FastConnection` per master, routed by hash slot.

    Args:
        startup: (host, port) of nodes to read the slot map from first.
        options: `FastConnection` keyword arguments for every node (credentials, timeouts,
            decoding); `host`, `port`, `path` and `db` are set per node.
    """

    def __init__(self, startup: Iterable[Addr], **options: Any) -> None:
        self._startup: list[Addr] = list(startup)
        if not self._startup:
            raise ValueError("a cluster needs at least one startup node")
        self._options = options
        self._conns: dict[Addr, FastConnection] = {}
        self._slots: list[Addr | None] = [None] * _SLOTS
        self._stale = True
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0
        """How many times the slot map was read (for tests and logs)."""

    def __repr__(self) -> str:
        return f"<ClusterFastConnection masters={sorted(set(self._conns))}>"

    # -- nodes and the slot map ------------------------------------------------------------

    def _conn(self, addr: Addr) -> FastConnection:
        conn = self._conns.get(addr)
        if conn is None:
            conn = self._conns[addr] = FastConnection(addr[0], addr[1], **self._options)
        return conn

    def node_for(self, key: Any) -> Addr | None:
        """The master the map names for `key`'s slot (None before the map is read)."""
        return self._slots[_slot_of(key)]

    @property
    def masters(self) -> set[Addr]:
        """The masters of the current slot map."""
        return {a for a in self._slots if a is not None}

    async def refresh(self) -> None:
        """Read the slot map again (one read at a time: concurrent callers share it)."""
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        await asyncio.shield(task)

    async def _refresh(self) -> None:
        candidates = list(dict.fromkeys([*self.masters, *self._conns, *self._startup]))
        last: BaseException | None = None
        for addr in candidates:
            conn = self._conn(addr)
            try:
                try:
                    reply = await conn.execute("CLUSTER", "SHARDS")
                    ranges = _shards_map(reply, tls=conn.tls is not None)
                except ResponseError as exc:
                    if "unknown" not in str(exc).lower():
                        raise
                    ranges = _slots_map(await conn.execute("CLUSTER", "SLOTS"))
            except (RedisError, OSError) as exc:
                last = exc
                continue
            if not ranges:
                continue
            slots: list[Addr | None] = [None] * _SLOTS
            for start, end, addr_ in ranges:
                slots[start : end + 1] = [addr_] * (end - start + 1)
            self._slots = slots
            self._stale = False
            self.refreshes += 1
            for old in set(self._conns) - self.masters - set(self._startup):
                self._conns.pop(old).close()  # no longer a master
            return
        raise RedisConnectionError(f"no cluster node answered with a slot map: {last}")

    def _refresh_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called on a loop
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = loop.create_task(self._refresh())
            self._refreshing.add_done_callback(_quiet)

    # -- sending ---------------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """Send one command to the master of its first key's slot; follow redirections."""
        replies = await self.execute_many(args)
        if isinstance(replies[0], BaseException):
            raise replies[0]
        return replies[0]

    async def execute_on(self, key: Any, *args: Any) -> Any:
        """Send a command without keys (`INFO`) to the master of `key`'s slot."""
        if self._stale:
            await self.refresh()
        conn = self._conn(self._slots[_slot_of(key)] or self._any_master())
        try:
            return await conn.execute(*args)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._stale = True  # a failover may be under way: read the map first next time
            raise

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send commands back to back to the master of the first command's slot (they must
        all be in that slot), following redirections; each reply or error, in order."""
        first = commands[0]
        if _text(first[0]).upper() == "SCRIPT" and _text(first[1]).upper() == "LOAD":
            return [await self._everywhere(first)]
        key = _first_key(first)
        ask: Addr | None = None
        for attempt in range(MAX_REDIRECTS + 1):
            if self._stale:
                await self.refresh()
            if ask is not None:
                addr, sent = ask, (("ASKING",), *commands)
            else:
                owner = self._slots[_slot_of(key)] if key is not None else None
                addr, sent = owner or self._any_master(), commands
            conn = self._conn(addr)
            try:
                await conn.connect()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # nothing was sent: safe to ask for the map again and retry (a dead master's
                # replica may have taken over)
                self._stale = True
                if attempt == MAX_REDIRECTS:
                    raise
                await asyncio.sleep(0.05 * attempt)
                continue
            try:
                replies = await conn.execute_many(*sent)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                self._stale = True  # a failover may be under way: read the map first next time
                raise
            if ask is not None:
                replies, ask = replies[1:], None
            error = replies[0]
            if not isinstance(error, ResponseError) or attempt == MAX_REDIRECTS:
                return replies
            if isinstance(error, MovedError):
                self._slots[error.slot_id] = (error.host, int(error.port))
                self._refresh_soon()
            elif isinstance(error, AskError):
                ask = (error.host, int(error.port))
            elif isinstance(error, TryAgainError):
                await asyncio.sleep(0.02 * (attempt + 1))
            elif isinstance(error, ReadOnlyError):
                self._stale = True
                await asyncio.sleep(0.02 * attempt)
            else:
                return replies
        return replies  # pragma: no cover - the loop returns

    def _any_master(self) -> Addr:
        masters = sorted(self.masters)
        return masters[0] if masters else self._startup[0]

    async def _everywhere(self, args: tuple[Any, ...]) -> Any:
        if self._stale:
            await self.refresh()
        results = await asyncio.gather(
            *(self._conn(a).execute(*args) for a in sorted(self.masters)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                self._stale = True
                raise result
        return results[0]

    async def aclose(self) -> None:
        """Close every node's connection."""
        self.close()

    def close(self) -> None:
        """Close every node's connection now (a later command opens them again)."""
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._stale = True


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("background refresh failed: %s", task.exception())


def _fast_options(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """`FastConnection` options from redis-py connection kwargs (None: TLS or credential
    providers, which the fast path does not do)."""
    if kwargs.get("credential_provider") is not None or kwargs.get("ssl"):
        return None
    if str(kwargs.get("encoding", "utf-8")).lower().replace("_", "-") not in ("utf-8", "utf8"):
        return None
    timeout = kwargs.get("socket_timeout") or DEFAULT_COMMAND_TIMEOUT
    connect_timeout = kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout")
    return {
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "client_name": kwargs.get("client_name"),
        "command_timeout": float(timeout),
        "connect_timeout": float(connect_timeout or DEFAULT_CONNECT_TIMEOUT),
        "decode_responses": bool(kwargs.get("decode_responses", False)),
        "socket_keepalive": bool(kwargs.get("socket_keepalive", False)),
    }


def fast_connection(client: Any) -> FastConnection | ClusterFastConnection | None:
    """The fast path for a redis-py client: a `FastConnection` for a plain one, a
    `ClusterFastConnection` for a `RedisCluster`, a `SentinelFastConnection` for a client
    made by `Sentinel.master_for`; None when it needs redis-py (TLS behind Sentinel, TLS
    settings the fast path does not know, credential providers,
    fakeredis, connection classes we do not know)."""
    from redis.asyncio.connection import Connection, SSLConnection

    cluster = cluster_of(client)
    if cluster is not None:
        kwargs = cluster.connection_kwargs
        conn_class = kwargs.get("connection_class", Connection)
        tls = None
        if conn_class is SSLConnection:  # `rediss+cluster://`: the context redis-py would use
            tls = tls_context({k: v for k, v in kwargs.items() if v is not None})
            if tls is None:
                return None
        elif conn_class is not Connection:
            return None
        options = _fast_options(kwargs)
        if options is None:
            return None
        options["tls"] = tls
        nodes = cluster.nodes_manager.startup_nodes.values()
        return ClusterFastConnection([(n.host, int(n.port)) for n in nodes], **options)
    pool = sentinel_pool_of(client)
    if pool is not None:
        from redis.asyncio.sentinel import SentinelManagedConnection

        if pool.connection_class is not SentinelManagedConnection:
            return None  # TLS to the master
        options = _fast_options(pool.connection_kwargs)
        if options is None:
            return None
        return SentinelFastConnection(
            pool.sentinel_manager,
            pool.service_name,
            db=int(pool.connection_kwargs.get("db") or 0),
            **options,
        )
    return FastConnection.from_client(client)
