"""Loading and running the Lua scripts: one file per atomic transition under `lua/`.

A script may pull shared code with a line `--@include name.lua` (from `lua/includes/`). Each
script is loaded once per connection pool, run by EVALSHA, and loaded again when the server
answers NOSCRIPT (after a restart or SCRIPT FLUSH). Scripts signal domain failures with small
negative integers; `raise_for_code` maps them to typed errors: nothing parses error strings.

EVALSHA goes through a `FastConnection` (one multiplexed hiredis socket, see
`jobqueue.core.fastconn`) made from the redis-py client's connection settings: it costs a fraction
of redis-py's client CPU per round trip. Opt out with `Scripts(redis, fastconn=False)` or the
environment variable `JOBQUEUE_FASTCONN=0`; clients the fast path cannot copy (TLS, Sentinel,
Cluster, credential providers) stay on redis-py.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from ..errors import JobNotFoundError, JobQueueError, LeaseLostError, QueueStateError
from .fastconn import FastConnection
from .keys import QueueKeys

__all__ = [
    "CODE_ERRORS",
    "FASTCONN_ENV",
    "LuaScript",
    "Scripts",
    "fastconn_enabled",
    "queue_key_list",
    "raise_for_code",
]

_LUA_DIR = Path(__file__).parent / "lua"
_INCLUDE_RE = re.compile(r"^--@include\s+(\S+)\s*$", re.MULTILINE)

# The one table from script return codes to errors.
CODE_ERRORS: dict[int, tuple[type[JobQueueError], str]] = {
    -1: (JobNotFoundError, "job not found"),
    -2: (LeaseLostError, "the lease on this job was lost"),
    -3: (QueueStateError, "the job is not in a state that allows this"),
    -4: (QueueStateError, "the queue has active jobs"),
    -5: (QueueStateError, "the job is active (running); cancel it instead"),
    -6: (QueueStateError, "the job has not failed"),
}


def raise_for_code(code: int, context: str = "") -> None:
    """Raise the typed error for a negative script return code (no-op for codes >= 0)."""
    if code >= 0:
        return
    cls, message = CODE_ERRORS.get(code, (JobQueueError, f"script returned code {code}"))
    raise cls(f"{message}: {context}" if context else message)


def queue_key_list(keys: QueueKeys) -> list[str]:
    """The full queue key set, in the order of `lua/includes/queue_keys.lua`."""
    return [
        keys.wait,
        keys.prio,
        keys.delayed,
        keys.active,
        keys.meta,
        keys.limiter,
        keys.limited,
        keys.marker,
        keys.events,
        keys.id_counter,
        keys.priorities,
        keys.completed,
        keys.failed,
        keys.stall_lock,
        keys.cancels,
    ]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script, its includes expanded, with its SHA1."""

    name: str
    source: str
    sha: str


def _expand(source: str, seen: frozenset[str] = frozenset()) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise RuntimeError(f"include cycle at {name}")
        text = (_LUA_DIR / "includes" / name).read_text()
        return _expand(text, seen | {name})

    return _INCLUDE_RE.sub(replace, source)


@cache
def load_script(name: str) -> LuaScript:
    """Read `lua/<name>.lua`, expand its includes and hash it (cached per process)."""
    raw = (_LUA_DIR / f"{name}.lua").read_text()
    source = _expand(raw)
    # the shebang must stay on the first line; includes come after it
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())


SCRIPT_NAMES = tuple(sorted(p.stem for p in _LUA_DIR.glob("*.lua")))

FASTCONN_ENV = "JOBQUEUE_FASTCONN"
"""Environment variable: `0` (or `false`, `no`, `off`) runs every script through redis-py."""


def fastconn_enabled() -> bool:
    """Whether the environment allows the fast connection (default: yes)."""
    return os.environ.get(FASTCONN_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class Scripts:
    """Runs the scripts on one Redis client with EVALSHA, loading them on NOSCRIPT.

    Args:
        redis: the redis-py client; its connection settings (host, port or unix path, db,
            username, password, timeouts) are copied for the fast connection.
        fastconn: send EVALSHA over a `FastConnection` (default: on, unless the environment
            sets `JOBQUEUE_FASTCONN=0`); False keeps everything on `redis`.
    """

    def __init__(self, redis: Redis, *, fastconn: bool | None = None) -> None:
        self._redis = redis
        use_fast = fastconn_enabled() if fastconn is None else fastconn
        self._fast = FastConnection.from_client(redis) if use_fast else None

    @property
    def fast(self) -> FastConnection | None:
        """The fast connection in use, or None when scripts run through redis-py."""
        return self._fast

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script `name` with KEYS `keys` and ARGV `args`; return its raw reply."""
        script = load_script(name)
        fast = self._fast
        if fast is not None:
            try:
                return await fast.execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await fast.execute("SCRIPT", "LOAD", script.source)
                return await fast.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    async def load_all(self) -> None:
        """Load every script up front (saves the first NOSCRIPT round trip)."""
        for name in SCRIPT_NAMES:
            source = load_script(name).source
            if self._fast is not None:
                await self._fast.execute("SCRIPT", "LOAD", source)
            else:
                await self._redis.script_load(source)

    async def aclose(self) -> None:
        """Close the fast connection (the redis-py client is its owner's to close)."""
        if self._fast is not None:
            await self._fast.aclose()
