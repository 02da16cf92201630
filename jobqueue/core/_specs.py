"""What each `Scripts` method declares of its script (`ScriptSpec`, `spec`), a blocking
command sent ahead of a script (`BlockFirst`), and RESP packing for commands packed once
(`ScriptRunner._send_tail`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .fastconn import FastConnection
from .fastroute import ClusterFastConnection

__all__ = ["BlockFirst", "ScriptSpec", "resp_bulk", "resp_head", "spec"]


def resp_bulk(value: str | bytes) -> bytes:
    """One RESP bulk string (text as UTF-8)."""
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%b\r\n" % (len(data), data)


def resp_head(args: Sequence[str | bytes | int], more: int) -> bytes:
    """A RESP command of `args` then `more` arguments packed by the caller (`resp_bulk`)."""
    parts = [b"*%d\r\n" % (len(args) + more)]
    parts += [resp_bulk(arg if isinstance(arg, str | bytes) else str(arg)) for arg in args]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """What a method declares of its script: the names its header must list.

    Attributes:
        name: the script (`lua/<name>.lua`).
        keys: `QueueKeys` names (`name(id)` for a key of one job), in KEYS order.
        argv: the fixed ARGV names, in order.
        group: the names of the ARGV group repeated per item, in order.
        events: the events the script may emit.
    """

    name: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]
    group: tuple[str, ...]
    events: frozenset[str]
    _argset: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_argset", frozenset(self.argv))

    def index(self, arg: str) -> int:
        """The position of a fixed ARGV name."""
        return self.argv.index(arg)

    def pack(self, values: Mapping[str, Any]) -> list[Any]:
        """The fixed ARGV in header order, from values by name (every name exactly once)."""
        if values.keys() != self._argset:
            raise TypeError(f"{self.name}.lua takes ARGV {list(self.argv)}, got {sorted(values)}")
        return [values[a] for a in self.argv]


def spec(name: str, *, keys: str, argv: str = "", group: str = "", events: str = "") -> ScriptSpec:
    """A `ScriptSpec` from space-separated names."""
    return ScriptSpec(
        name, tuple(keys.split()), tuple(argv.split()), tuple(group.split()),
        frozenset(events.split()),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BlockFirst:
    """A `BZPOPMIN` sent right ahead of a script on the same connection: Redis reads the
    script only when the block ends (a member popped, or the timeout), and runs it at once,
    so that a woken worker's take costs no round trip of its own.

    Attributes:
        conn: the blocking connection (a worker's wake-up connection, never a shared one).
        keys: the zsets to block on (all in the script's hash slot).
        timeout: seconds to block at most.
    """

    conn: FastConnection | ClusterFastConnection
    keys: tuple[str, ...]
    timeout: float
