"""Least-privilege Redis ACL rules for the engine (Redis 6+ ACLs, key patterns per prefix).

`worker_acl(prefix)` is what a process that adds and runs jobs needs (workers, producers,
the status mirror): reads and writes of the prefix's keys and channels, the engine's scripts
by SHA (`EVALSHA` and `SCRIPT LOAD`, no `EVAL` of arbitrary code), `TIME`, `INFO` (the
start-up safety check) and pub/sub; no `KEYS`, `FLUSH*`, `CONFIG`, `DEBUG`, `FUNCTION`,
`SCRIPT FLUSH|KILL` or any other dangerous command, no key outside the prefix. Without
`FUNCTION` (whoever may load a library may replace another application's) the scripts run by
`EVALSHA`, not as the engine's function library (`jobqueue.core._library`).

`readonly_acl(prefix)` is for tools that only look (`python -m jobqueue.inspect`, the
dashboard in `--read-only` mode, `/metrics`): the prefix's keys readable only (`%R~`), so a
script that would change a job is refused by Redis itself (`NOPERM`), whatever the tool does.

    ACL SETUSER jq-worker on >secret resetkeys resetchannels <worker_acl("jq")...>
"""

from __future__ import annotations

__all__ = ["readonly_acl", "worker_acl"]

# what both need to talk to Redis at all (the engine's scripts are run by SHA)
_COMMON = (
    "-@all", "+@connection", "+@read", "+time", "+evalsha", "+evalsha_ro", "+script|load",
    "+script|exists",
)  # fmt: skip


def _check(prefix: str) -> str:
    if not prefix or any(c in prefix for c in " *?[]\\"):
        raise ValueError(f"prefix {prefix[:100]!r} cannot be an ACL key pattern")
    return prefix


def worker_acl(prefix: str = "jq") -> list[str]:
    """The ACL rules (arguments of `ACL SETUSER`) of a user that adds and runs the jobs of
    the queues under `prefix`.

    Raises:
        ValueError: a prefix that is empty or holds a glob character.
    """
    p = _check(prefix)
    return [
        "resetkeys", f"~{p}:*", "resetchannels", f"&{p}:*", *_COMMON,
        "+@write", "+@pubsub", "+@transaction", "-@dangerous", "-function", "+info",
    ]  # fmt: skip


def readonly_acl(prefix: str = "jq") -> list[str]:
    """The ACL rules of a user that may only read the queues under `prefix` (inspect, a
    read-only dashboard, metrics): every write to them is refused by Redis (`NOPERM`).

    Raises:
        ValueError: a prefix that is empty or holds a glob character.
    """
    p = _check(prefix)
    return [
        "resetkeys", f"%R~{p}:*", "resetchannels", f"&{p}:*", *_COMMON,
        "+subscribe", "+unsubscribe", "+@transaction", "-@dangerous", "-function", "+info",
    ]  # fmt: skip
