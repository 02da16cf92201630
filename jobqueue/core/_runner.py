"""Running the scripts: EVALSHA (through the fast connection when the client allows it),
loading on NOSCRIPT, KEYS resolved once, ARGV packed by name from each script's `ScriptSpec`.

`Scripts` (`jobqueue.core.scripts`) builds on `ScriptRunner`: one method per script.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from ..errors import ConfigError, NotDurableError, QueueFullError
from ._library import LuaLibrary, ensure_library, library_was_missing, load_library
from ._loader import LuaScript, load_script, script_names
from ._specs import BlockFirst, ScriptSpec, resp_bulk, resp_head, spec
from .codec import text
from .connection import cluster_of, describe_client, is_fakeredis
from .fastconn import FastConnection
from .fastroute import ClusterFastConnection, fast_connection
from .keys import QueueKeys

__all__ = [
    "FASTCONN_ENV",
    "FUNCTIONS_ENV",
    "BlockFirst",
    "ScriptRunner",
    "ScriptSpec",
    "fastconn_enabled",
    "spec",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# scripts that change nothing (their shebang says `no-writes`): no WAIT after them
_READ_ONLY = frozenset({"counts", "getjob", "scheduler_due"})
# a short WAIT after these raises (the producer can add again); after the others it is logged
_STRICT = frozenset({"add", "add_plain", "add_flow"})

FASTCONN_ENV = "JOBQUEUE_FASTCONN"
"""Environment variable: `0` (or `false`, `no`, `off`) runs every script through redis-py."""


FUNCTIONS_ENV = "JOBQUEUE_FUNCTIONS"
"""Environment variable: `0` (or `false`, `no`, `off`) runs the scripts by EVALSHA, never as
the function library; any other value tries the library for a named ACL user too.
Unset: the library for the default user, EVALSHA for a named one (`jobqueue.acl.worker_acl`
grants no FUNCTION: asking would leave a denial in the ACL log)."""


def _env_flag(name: str) -> bool | None:
    """A yes/no environment variable: False for `0`/`false`/`no`/`off`, True for any other
    value, None when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value not in ("0", "false", "no", "off")


def fastconn_enabled() -> bool:
    """Whether the environment allows the fast connection (default: yes)."""
    return _env_flag(FASTCONN_ENV) is not False


class ScriptRunner:
    """Runs the scripts of one queue on one Redis client (see `Scripts` for its methods).

    Args:
        redis: the redis-py client; its connection settings (host, port or unix path, db,
            username, password, timeouts) are copied for the fast connection.
        keys: the queue's key names.
        events_maxlen: cap of the queue's event stream (0 = no events).
        fastconn: send EVALSHA over a `FastConnection` (default: on, unless the environment
            sets `JOBQUEUE_FASTCONN=0`); False keeps everything on `redis`. On Redis Cluster
            it is one connection per master, routed by hash slot; behind Sentinel, one to the
            master the sentinels name (`jobqueue.core.fastroute`).
        durable: `(replicas, timeout_ms)`: after every script that writes, `WAIT replicas
            timeout_ms` on the same connection (durable mode, `QueueConfig.durable_replicas`).
        functions: run the scripts as a Functions library (`FCALL`, `jobqueue.core._library`)
            on a plain fast connection (no cluster, no sentinel, no durable mode) whose server
            has functions (default: as `JOBQUEUE_FUNCTIONS` says, see `FUNCTIONS_ENV`); False
            keeps `EVALSHA` everywhere.
    """

    def __init__(
        self,
        redis: Redis,
        keys: QueueKeys,
        *,
        events_maxlen: int = 10_000,
        fastconn: bool | None = None,
        durable: tuple[int, int] | None = None,
        functions: bool | None = None,
    ) -> None:
        self._redis = redis
        self.keys = keys
        self.events_maxlen = events_maxlen
        use_fast = fastconn_enabled() if fastconn is None else fastconn
        self._fast = fast_connection(redis) if use_fast else None
        if durable is not None and self._fast is None and cluster_of(redis) is not None:
            raise ConfigError(
                "durable mode on Redis Cluster needs the fast path (JOBQUEUE_FASTCONN on, and no "
                "TLS or credential setting it does not know)"
            )
        self._durable = durable
        # durable mode: until when the master is known to lack replicas (0: not known)
        self._short_until = 0.0
        self._shebang = not is_fakeredis(redis)
        fast = self._fast
        plain = type(fast) is FastConnection and durable is None and self._shebang
        if functions is None:
            wanted = _env_flag(FUNCTIONS_ENV)
            functions = type(fast) is FastConnection and (
                wanted if wanted is not None else not fast.username
            )
        self._lib: LuaLibrary | None = load_library() if plain and functions else None
        # whether the library runs on the server: None until the first call finds out
        self._fn: bool | None = None if self._lib is not None else False
        self._where = describe_client(redis)  # password-free, for error messages
        self._scripts: dict[str, LuaScript] = {}
        # `_send_tail`: each script's command up to its per-call arguments, packed once
        self._packed: dict[str, bytes] = {}
        # KEYS of each script, resolved once (keys of one job are resolved per call)
        self._keys = {
            spec.name: [getattr(keys, k) for k in spec.keys]
            for spec in self.specs().values()
            if not any("(" in k for k in spec.keys)
        }

    @property
    def fast(self) -> FastConnection | ClusterFastConnection | None:
        """The fast connection in use, or None when scripts run through redis-py."""
        return self._fast

    # -- running ---------------------------------------------------------------------------

    async def _eval(self, name: str, keys: list[str], args: Sequence[Any]) -> Any:
        try:
            return await self._evalsha(name, keys, args)
        except OutOfMemoryError:
            raise self._full(name) from None

    def _full(self, name: str) -> QueueFullError:
        # what an OOM refusal becomes (`_eval`, `_tail_reply`): a `#!lua` script without
        # `allow-oom` is refused before it runs, so nothing of it was written
        return QueueFullError(
            f"redis {self._where} is out of memory (maxmemory reached, policy "
            f"noeviction): {name} refused, nothing written; retry later"
        )

    def _send_tail(
        self, name: str, head: Sequence[Any], tail: Sequence[str], decode: Callable[[Any], T]
    ) -> Awaitable[T]:
        """`name`'s script with its KEYS, then ARGV `head` (the same at every call) and `tail`;
        the awaitable gives its reply through `decode`.

        On a plain fast connection (no cluster, no sentinel, no durable WAIT) the command up to
        `tail` is packed once, each call packs only `tail`, and the command is written before
        this returns: what the caller does until it awaits runs while Redis runs the script.
        The hottest call, a plain `Queue.add`, packs 2 of its 12 arguments (~3 µs of client
        CPU a call less than packing them all) and builds the `Job` it returns meanwhile.
        An add with options (`add`, one job) packs its 8 fields the same way. Everywhere else
        the awaitable is `_eval`'s (sent when awaited).
        """
        fast = self._fast
        if type(fast) is not FastConnection or self._durable is not None or self._fn is None:
            # (`_fn` None: the first call through `_eval` finds out whether functions run)
            return self._eval_decoded(name, [*head, *tail], decode)
        prefix = self._packed.get(name)
        if prefix is None:
            keys = self._keys[name]
            prefix = resp_head([*self._target(name), len(keys), *keys, *head], len(tail))
            self._packed[name] = prefix
        data = b"".join([prefix, *map(resp_bulk, tail)])
        return self._tail_reply(name, fast, data, fast.send_packed(data), decode)

    async def _tail_reply(
        self,
        name: str,
        fast: FastConnection,
        data: bytes,
        reply: Awaitable[Any],
        decode: Callable[[Any], T],
    ) -> T:
        """`_send_tail`'s reply: loaded and sent again on NOSCRIPT (or a missing library), an
        OOM refusal ours."""
        try:
            try:
                return decode(await reply)
            except NoScriptError:
                await fast.execute("SCRIPT", "LOAD", self._script(name).source)
                return decode(await fast.send_packed(data))
            except ResponseError as exc:
                if not await self._lost_library(exc):
                    raise
                return decode(await fast.send_packed(data))
        except OutOfMemoryError:
            raise self._full(name) from None

    async def _eval_decoded(self, name: str, args: list[Any], decode: Callable[[Any], T]) -> T:
        return decode(await self._eval(name, self._keys[name], args))

    def _script(self, name: str) -> LuaScript:
        script = self._scripts.get(name)
        if script is None:  # once per script: the cached loader's keyword call costs ~0.4 us
            script = self._scripts[name] = load_script(name, shebang=self._shebang)
        return script

    def _target(self, name: str) -> tuple[str, str]:
        """The command and its first argument that run `name`: its function (once the library
        is known to run on the server) or its SHA1."""
        if self._fn:
            assert self._lib is not None
            read_only = name in self._lib.read_only
            return ("FCALL_RO" if read_only else "FCALL"), self._lib.functions[name]
        return "EVALSHA", self._script(name).sha

    async def _functions(self) -> bool:
        """Whether the scripts run as functions here; the first call loads the library."""
        if self._fn is None:
            assert self._lib is not None
            assert type(self._fast) is FastConnection
            self._fn = await ensure_library(self._fast, self._lib, self._where)
        return bool(self._fn)

    async def _lost_library(self, exc: BaseException) -> bool:
        """After a call failed with `exc`: whether it was an `FCALL` whose library the server
        had lost, loaded again now (nothing of the call ran: send it again). An OOM refusal or
        a script's own error: False."""
        if not self._fn or not isinstance(exc, ResponseError):
            return False
        if isinstance(exc, OutOfMemoryError):
            return False
        assert self._lib is not None
        assert type(self._fast) is FastConnection
        return await library_was_missing(self._fast, self._lib)

    async def _fcall(self, name: str, keys: list[str], args: Sequence[Any]) -> Any:
        fast = self._fast
        assert type(fast) is FastConnection
        call = (*self._target(name), len(keys), *keys, *args)
        try:
            return await fast.execute(*call)
        except ResponseError as exc:
            if not await self._lost_library(exc):
                raise
            return await fast.execute(*call)

    async def _evalsha(self, name: str, keys: list[str], args: Sequence[Any]) -> Any:
        if self._fn is not False and await self._functions():
            return await self._fcall(name, keys, args)
        script = self._script(name)
        if self._durable is not None and name not in _READ_ONLY:
            return await self._eval_durable(name, script.sha, script.source, keys, args)
        # a script that changes nothing runs as EVALSHA_RO (Redis 7): a user whose keys are
        # read-only (`%R~`, jobqueue.acl.readonly_acl) may run it, and a replica too
        command = "EVALSHA_RO" if self._shebang and name in _READ_ONLY else "EVALSHA"
        fast = self._fast
        if fast is not None:
            try:
                return await fast.execute(command, script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await fast.execute("SCRIPT", "LOAD", script.source)
                return await fast.execute(command, script.sha, len(keys), *keys, *args)
        try:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                command, script.sha, len(keys), *keys, *args
            )
        except NoScriptError:
            await self._redis.script_load(script.source)
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                command, script.sha, len(keys), *keys, *args
            )

    async def _eval_behind(
        self, block: BlockFirst, name: str, keys: list[str], args: Sequence[Any]
    ) -> Any:
        """`block`'s BZPOPMIN, then the script, written together on `block.conn`."""
        script = self._script(name)
        conn = block.conn
        wait = ("BZPOPMIN", *block.keys, block.timeout)
        if self._durable is not None:
            # its WAIT goes on the script's own connection, after it: no pipelining then
            await conn.execute(*wait)
            return await self._eval(name, keys, args)
        if self._fn is not False:
            await self._functions()
        call = (*self._target(name), len(keys), *keys, *args)
        popped, reply = await conn.execute_many(wait, call)
        if isinstance(popped, BaseException):
            raise popped
        if isinstance(reply, NoScriptError):  # a restarted server: load it, run it alone
            await conn.execute("SCRIPT", "LOAD", script.source)
            return await conn.execute(*call)
        if isinstance(reply, ResponseError) and await self._lost_library(reply):
            return await conn.execute(*call)  # the library was missing: nothing of it ran
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def _eval_durable(
        self, name: str, sha: str, source: str, keys: list[str], args: Sequence[Any]
    ) -> Any:
        """The script, then `WAIT` on the same connection (it waits for this connection's
        writes to reach the replicas).

        When a WAIT comes back short and the master has fewer replicas connected than asked
        (its replica died, or was promoted at a failover and nothing replaced it yet), every
        WAIT would last `timeout_ms` and block the connection, so every command behind it:
        then changes are not waited for (each is short at once) until `INFO replication`,
        asked again every `timeout_ms`, shows the replicas back."""
        assert self._durable is not None
        wanted, timeout_ms = self._durable
        if self._short_until and not await self._replicas_back(keys[0], wanted, timeout_ms):
            reply, _ = await self._send_durable(None, sha, source, keys, args)
            if name in _STRICT:  # the others were logged once, when the replicas went
                self._short(name, 0, wanted, "(not waited for: the master lacks replicas)")
            return reply
        wait = ("WAIT", wanted, timeout_ms)
        reply, acked = await self._send_durable(wait, sha, source, keys, args)
        if int(acked) < wanted:
            connected = await self._connected_replicas(keys[0])
            if connected < wanted:
                known, self._short_until = self._short_until, time.monotonic() + timeout_ms / 1000
                if not known:  # calls in flight together all come back short: say it once
                    log.warning(
                        "queue %s: the master has %d of %d replica(s) connected: changes are "
                        "not waited for until they are back (a failover now could lose them)",
                        self.keys.queue, connected, wanted,
                    )  # fmt: skip
            self._short(name, int(acked), wanted, f"within {timeout_ms} ms")
        return reply

    def _short(self, name: str, acked: int, wanted: int, how: str) -> None:
        message = (
            f"{name}: {acked} of {wanted} replica(s) acknowledged {how}; a failover now "
            "could lose this change"
        )
        if name in _STRICT:
            raise NotDurableError(message, acked=acked, wanted=wanted)
        log.warning("queue %s: %s", self.keys.queue, message)

    async def _replicas_back(self, key: str, wanted: int, timeout_ms: int) -> bool:
        """While replicas are known missing: False until the next look is due, then whether
        the master has them again."""
        if time.monotonic() < self._short_until:
            return False
        if await self._connected_replicas(key) < wanted:
            self._short_until = time.monotonic() + timeout_ms / 1000
            return False
        self._short_until = 0.0
        log.info(
            "queue %s: the master has its replica(s) again: changes are waited for", self.keys.queue
        )
        return True

    async def _connected_replicas(self, key: str) -> int:
        """`connected_slaves` of the master holding `key` (a large number when it cannot be
        asked: then WAIT's own answer stands)."""
        try:
            if self._fast is not None:
                info = await self._fast.execute_on(key, "INFO", "replication")
            else:
                info = await self._redis.execute_command("INFO", "replication")  # type: ignore[no-untyped-call]
        except ResponseError:  # e.g. an ACL user without INFO
            return 1 << 30
        if isinstance(info, dict):  # redis-py parses INFO
            return int(info.get("connected_slaves", 0))
        for line in text(info).splitlines():
            if line.startswith("connected_slaves:"):
                return int(line.partition(":")[2])
        return 1 << 30

    async def _send_durable(
        self,
        wait: tuple[Any, ...] | None,
        sha: str,
        source: str,
        keys: list[str],
        args: Sequence[Any],
    ) -> tuple[Any, Any]:
        """EVALSHA, and `wait` after it on the same connection: (reply, WAIT's reply)."""
        call = ("EVALSHA", sha, len(keys), *keys, *args)
        commands = (call,) if wait is None else (call, wait)
        for attempt in (0, 1):
            if self._fast is not None:
                replies = await self._fast.execute_many(*commands)
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError) and attempt == 0:
                if self._fast is not None:
                    await self._fast.execute("SCRIPT", "LOAD", source)
                else:
                    await self._redis.script_load(source)
                continue
            break
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies[0], (replies[1] if wait is not None else None)

    async def _call(
        self,
        spec: ScriptSpec,
        groups: Iterable[Sequence[Any]] = (),
        *,
        keys: list[str] | None = None,
        **argv: Any,
    ) -> Any:
        """Run `spec`'s script: its KEYS, its fixed ARGV by name, then each group in order."""
        args = spec.pack(argv)
        for group in groups:
            args.extend(group)
        return await self._eval(spec.name, self._keys[spec.name] if keys is None else keys, args)

    async def load_all(self) -> None:
        """Load every script up front (saves the first NOSCRIPT round trip), and the function
        library where it may run."""
        if self._lib is not None:
            # whatever was found before: look again (the server may have lost it, or have
            # room for it now)
            self._fn = None
            self._packed.clear()
            await self._functions()
        for name in script_names():
            source = load_script(name, shebang=self._shebang).source
            if self._fast is not None:
                await self._fast.execute("SCRIPT", "LOAD", source)
            else:
                await self._redis.script_load(source)

    async def aclose(self) -> None:
        """Close the fast connection (the redis-py client is its owner's to close)."""
        if self._fast is not None:
            await self._fast.aclose()

    @property
    def _queue(self) -> dict[str, Any]:
        return {"base": self.keys.base, "maxlen": self.events_maxlen}

    @classmethod
    def specs(cls) -> dict[str, ScriptSpec]:
        """Every script this class runs, by name (each declared beside its method)."""
        return {
            value.name: value
            for klass in reversed(cls.__mro__)
            for value in vars(klass).values()
            if isinstance(value, ScriptSpec)
        }
