"""The only place where Redis key names are built.

Every key of a queue lives under `<prefix>:{<queue>}:` (or, for a queue in a shared slot,
`<prefix>:{<slot>}<queue>:`) so that all of them hash to one Redis Cluster slot and one Lua
script may touch them all. A job is a field and a key at most: its JSON envelope written at
enqueue, the field `<id>` of the queue's one hash `jobs` (kept lean so a waiting job costs a few
hundred bytes: ~40 B less than a string key per job), and `s:<id>`, a small hash of its run
state created when it is first taken. A job written before the `jobs` hash existed keeps its
envelope in the string key `j:<id>` (`QueueKeys.legacy_job`) until it is removed: the scripts
read it when the hash has no field for the id (`lua/includes/keys.lua`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from ._inputs import shown

__all__ = [
    "QUEUE_NAME_RE",
    "QueueKeys",
    "keys_from_key",
    "queue_from_key",
    "queue_of_base",
    "queue_scan_patterns",
    "validate_prefix",
    "validate_queue_name",
    "validate_slot",
]

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,49}$")


def validate_queue_name(name: str) -> str:
    """Return `name` if it can be a queue name, else raise `ConfigError` naming it."""
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise ConfigError(
            f"queue name {shown(name)} is invalid: use 1-100 letters, digits, '_', '.', '-'"
        )
    return name


def validate_slot(slot: str) -> str:
    """Return `slot` if it can name a shared hash slot (the rules of a queue name), else raise
    `ConfigError` naming it."""
    if not isinstance(slot, str) or not QUEUE_NAME_RE.match(slot):
        raise ConfigError(
            f"slot {shown(slot)} is invalid: use 1-100 letters, digits, '_', '.', '-'"
        )
    return slot


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it can be a key prefix, else raise `ConfigError` naming it."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigError(
            f"prefix {shown(prefix)} is invalid: use 1-50 letters, digits, '_', '.', '-'"
        )
    return prefix


# Keys that every queue in use has: `meta` (written when a worker starts or the queue is
# paused) and `id` (the counter, written by the first add).
_MARKER_SUFFIXES = ("meta", "id")


def queue_scan_patterns(prefix: str) -> list[str]:
    """SCAN MATCH patterns that find the queues under `prefix` (one key per queue each).

    Args:
        prefix: the key prefix (validated).

    Returns:
        Patterns like `jq:{*}*:meta`; they match both layouts (`jq:{emails}:meta` and, for a queue
        in a shared slot, `jq:{llm}emails:meta`); queue names cannot hold glob characters.
    """
    validate_prefix(prefix)
    # `{*}*:` and not `{*}:`: a queue in a shared slot has its name after the brace
    return [f"{prefix}:{{*}}*:{suffix}" for suffix in _MARKER_SUFFIXES]


def keys_from_key(prefix: str, key: str) -> QueueKeys | None:
    """The keys of the queue that owns a key matched by `queue_scan_patterns`, or None."""
    head = f"{prefix}:{{"
    if not key.startswith(head):
        return None
    for suffix in _MARKER_SUFFIXES:
        tail = f":{suffix}"
        if not key.endswith(tail):
            continue
        middle = key[len(head) : -len(tail)]  # `queue}` or `slot}queue`
        tag, sep, rest = middle.partition("}")
        if not sep or not QUEUE_NAME_RE.match(tag):
            continue
        if rest == "":
            return QueueKeys(prefix, tag)
        if QUEUE_NAME_RE.match(rest):
            return QueueKeys(prefix, rest, slot=tag)
    return None


def queue_from_key(prefix: str, key: str) -> str | None:
    """The queue name in a key matched by `queue_scan_patterns`, or None if it is not one."""
    keys = keys_from_key(prefix, key)
    return None if keys is None else keys.queue


def queue_of_base(base: str) -> str:
    """The queue name in a `QueueKeys.base` (`jq:{emails}:` or, in a shared slot,
    `jq:{llm}emails:`), as flow children store their parent's."""
    tag, _, rest = base[base.index("{") + 1 :].partition("}")
    return rest.removesuffix(":") or tag


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue.

    A queue's keys share one Redis Cluster hash slot, so one script may touch them all: its own
    (`<prefix>:{<queue>}:...`), or, for a queue in a shared slot (its shared limiter's, or one
    named by `QueueConfig.slot`), `<prefix>:{<slot>}<queue>:...`. The keys of the queue's shared
    limiter live in the same slot: a take can then check the queue and the limiter in one
    atomic script. They are `<prefix>:{<slot>}!limiter` (`!hold`, `!breaker`, `!fails`) when
    the slot is named after the limiter, and `<prefix>:{<slot>}!<limiter>!limiter` (...) when
    several limiters share the slot. `!` cannot appear in a queue or limiter name, so no two of
    these names collide.

    Attributes:
        prefix: the key prefix.
        queue: the queue name.
        slot: the hash tag of a queue in a shared slot, None for a queue in its own slot.
        limiter_name: the name of the queue's shared limiter (None: none, or the slot's
            name).
    """

    prefix: str
    queue: str
    slot: str | None = None
    limiter_name: str | None = None

    @property
    def base(self) -> str:
        """The start of every key of this queue: `<prefix>:{<queue>}:`, or
        `<prefix>:{<slot>}<queue>:` in a shared slot."""
        if self.slot is None:
            return f"{self.prefix}:{{{self.queue}}}:"
        return f"{self.prefix}:{{{self.slot}}}{self.queue}:"

    @property
    def _slot_base(self) -> str:
        # keys of the shared limiter; `!` cannot start a queue name, so none collides. A
        # limiter named after its slot keeps the names it had before slots could be shared.
        tag = self.slot or self.queue
        if self.limiter_name is None or self.limiter_name == tag:
            return f"{self.prefix}:{{{tag}}}!"
        return f"{self.prefix}:{{{tag}}}!{self.limiter_name}!"

    @property
    def shared_limiter(self) -> str:
        """Hash of the shared limiter's buckets (`c:`/`w:`/`t:`/`ts:<bucket>`); for a queue
        without one, a key of its slot that its scripts never touch (they read the limiter's
        keys only when given a limiter)."""
        return self._slot_base + "limiter"

    @property
    def shared_hold(self) -> str:
        """String with PX: no job of any queue on the shared limiter starts until it expires
        (a 429's Retry-After)."""
        return self._slot_base + "hold"

    @property
    def breaker(self) -> str:
        """Hash of the shared limiter's circuit breaker (`state`, `until`, `trial`...)."""
        return self._slot_base + "breaker"

    @property
    def breaker_fails(self) -> str:
        """Zset of the breaker's recent server-side failures (score = ms)."""
        return self._slot_base + "fails"

    @property
    def costs(self) -> str:
        """Hash id -> cost of the jobs added with their own cost (`bucket=n,...`)."""
        return self.base + "costs"

    @property
    def jobs(self) -> str:
        """Hash job id -> the job's JSON envelope (name, data, options), written at enqueue."""
        return self.base + "jobs"

    def legacy_job(self, job_id: str) -> str:
        """String key with the envelope of a job written before the `jobs` hash existed (read
        only when `jobs` has no field for the id; deleted with the job)."""
        return f"{self.base}j:{job_id}"

    def state(self, job_id: str) -> str:
        """Hash with the job's run state (attempts, token, progress, result, error...)."""
        return f"{self.base}s:{job_id}"

    def logs(self, job_id: str) -> str:
        """List of the job's log lines (bounded)."""
        return f"{self.base}l:{job_id}"

    @property
    def waiting_children(self) -> str:
        """Zset of the flow parents waiting for their children; score = creation time in ms."""
        return self.base + "wc"

    def dependencies(self, job_id: str) -> str:
        """Hash of a flow parent's pending children: `<queue>:<id>` -> the child queue's base
        (exists only while the parent waits for children)."""
        return f"{self.base}d:{job_id}"

    def children_results(self, job_id: str) -> str:
        """Hash of a flow parent's completed children: `<queue>:<id>` -> result JSON."""
        return f"{self.base}cr:{job_id}"

    def children_failures(self, job_id: str) -> str:
        """Hash of a flow parent's failed `continue` children: `<queue>:<id>` -> `{"et", "em"}`
        JSON."""
        return f"{self.base}cf:{job_id}"

    @property
    def id_counter(self) -> str:
        """String counter: the ids of jobs added without one, and enqueue sequence numbers."""
        return self.base + "id"

    @property
    def wait(self) -> str:
        """List of ids of priority 0, FIFO."""
        return self.base + "wait"

    @property
    def prio(self) -> str:
        """Zset of ids with a non-zero priority; score orders by priority then FIFO."""
        return self.base + "prio"

    @property
    def priorities(self) -> str:
        """Hash id -> priority of jobs with a non-zero priority (kept across retries), or
        `<priority>:<cap>:<group>` for a job of a group; `#<id>` -> the dedup key it holds."""
        return self.base + "pri"

    @property
    def groups(self) -> str:
        """Hash of the groups' state (`lua/includes/groups.lua`): `n` grouped jobs waiting,
        `t` group tokens in wait/prio, per group `q:<g>` where its token is, `a:<g>` its
        active jobs, `c:<g>` its concurrency cap."""
        return self.base + "groups"

    def group_wait(self, group: str) -> str:
        """Zset of the waiting jobs of one group (score as in `prio`)."""
        return f"{self.base}gz:{group}"

    def dedup(self, key: str) -> str:
        """String `<job id> <window end ms>`: the job holding a deduplication key."""
        return f"{self.base}dd:{key}"

    @property
    def delayed(self) -> str:
        """Zset of delayed ids; score = due time in ms (Redis clock) * 1024 + sequence."""
        return self.base + "delayed"

    @property
    def active(self) -> str:
        """Zset of running ids; score = lease deadline in ms (Redis clock)."""
        return self.base + "active"

    @property
    def completed(self) -> str:
        """Zset of completed ids; score = finish time in ms."""
        return self.base + "completed"

    @property
    def failed(self) -> str:
        """Zset of failed ids; score = finish time in ms."""
        return self.base + "failed"

    @property
    def limiter(self) -> str:
        """Hash {t: tokens, ts: ms}: the shared token bucket."""
        return self.base + "limiter"

    @property
    def limited(self) -> str:
        """String with a PX expiry: no job starts until it expires (Retry-After)."""
        return self.base + "limited"

    @property
    def meta(self) -> str:
        """Hash: paused flag and the queue's published configuration."""
        return self.base + "meta"

    @property
    def marker(self) -> str:
        """Zset with one member: poked to wake a worker blocked in BZPOPMIN."""
        return self.base + "marker"

    def wake(self, worker: str) -> str:
        """Zset a worker blocked in `BZPOPMIN` on the marker also blocks on: it adds a member
        itself (from another connection) to end its own block at once, when it stops or learns
        of a due time while blocked. Expires soon after; only that worker blocks on it."""
        return f"{self.base}wake:{worker}"

    @property
    def events(self) -> str:
        """Stream of every state change, appended by the script that makes it."""
        return self.base + "events"

    @property
    def stall_lock(self) -> str:
        """String with PX: held by the one worker running the stall check."""
        return self.base + "stallcheck"

    @property
    def cancels(self) -> str:
        """Hash id -> reason of active jobs asked to cancel."""
        return self.base + "cancel"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancel requests of active jobs are published."""
        return self.base + "cancel-ch"

    @property
    def workers(self) -> str:
        """Prefix of the per-worker heartbeat keys (`workers:<name>`)."""
        return self.base + "workers:"

    @property
    def worker_set(self) -> str:
        """Zset of the names of the queue's workers; score = last heartbeat in ms."""
        return self.base + "workerset"

    def worker(self, name: str) -> str:
        """Hash of one worker's heartbeat (expires when the worker stops beating)."""
        return f"{self.base}workers:{name}"

    @property
    def schedulers(self) -> str:
        """Zset of the queue's scheduler ids; score = the next run time in ms (Redis clock)."""
        return self.base + "schedulers"

    def scheduler(self, scheduler_id: str) -> str:
        """Hash of one scheduler: its spec (`every` or `cron` + `tz`), the job it makes
        (`env`), its next and last run times."""
        return f"{self.base}sched:{scheduler_id}"

    @property
    def all_keys_pattern(self) -> str:
        """SCAN MATCH pattern of every key of this queue."""
        return self.base + "*"
