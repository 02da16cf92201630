"""Helpers of the group and dedup tests: script calls as a worker makes them, and the check
that the group structures (lua/includes/groups.lua) agree with the jobs they hold."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from jobqueue import Queue
from jobqueue.core.codec import text
from jobqueue.core.replies import Outcome, Retention, TakeLimits


def limits(q: Queue, worker: str = "w1", lease_ms: int = 30_000) -> TakeLimits:
    """The queue's own take limits (its shared limiter too), with this worker and lease."""
    return replace(q.config.take_limits(worker), lease_ms=lease_ms)


async def take(q: Queue, n: int, worker: str = "w1", lease_ms: int = 30_000) -> list[Any]:
    """Take up to n jobs: [(id, token)]."""
    reply = await q.scripts.take(n, limits(q, worker, lease_ms))
    return [(t.job_id, t.token) for t in reply.jobs]


async def finish(q: Queue, outcomes: list[tuple[Any, ...]], n: int = 0) -> tuple[list[int], Any]:
    reply = await q.scripts.finish(
        [Outcome(*o) for o in outcomes],
        take=n,
        limits=limits(q),
        retention=Retention(*q.config.retention_ms),
    )
    return reply.codes, [(t.job_id, t.token) for t in reply.taken.jobs]


async def names(q: Queue, ids: list[str]) -> list[str]:
    """The group of each job (its name when it has none)."""
    out = []
    for job_id in ids:
        job = await q.get_job(job_id)
        assert job is not None
        out.append(job.group or job.name)
    return out


def _level(score: float) -> int:
    return -math.floor(score / 2**32)


async def check_groups(q: Queue) -> dict[str, int]:
    """Assert the invariants of the group structures and that every job is in exactly one
    place; return the number of jobs per place."""
    r, k = q.redis, q.keys
    h = {text(a): text(b) for a, b in (await r.hgetall(k.groups)).items()}
    wait = [text(x) for x in await r.lrange(k.wait, 0, -1)]
    prio = {text(m): s for m, s in await r.zrange(k.prio, 0, -1, withscores=True)}
    tokens = [m for m in wait if m.startswith("!")] + [m for m in prio if m.startswith("!")]
    assert len(tokens) == len(set(tokens)), tokens
    assert int(h.get("t", 0)) == len(tokens), (h, tokens)
    groups: dict[str, list[tuple[str, float]]] = {}
    async for key in r.scan_iter(match=k.base + "gz:*"):
        name = text(key)[len(k.base) + 3 :]
        groups[name] = [(text(m), s) for m, s in await r.zrange(key, 0, -1, withscores=True)]
    assert int(h.get("n", 0)) == sum(len(v) for v in groups.values()), (h, groups)
    pri = {text(a): text(b) for a, b in (await r.hgetall(k.priorities)).items()}
    active = [text(x) for x in await r.zrange(k.active, 0, -1)]
    running: dict[str, int] = {}
    for job_id in active:
        g = await r.hget(k.state(job_id), "g")
        if g is not None:
            running[text(g)] = running.get(text(g), 0) + 1
    for g, jobs in groups.items():
        assert jobs, g
        where = h.get(f"q:{g}")
        head = _level(jobs[0][1])
        if where == "p":
            assert f"!{g}" not in tokens
            assert int(h[f"a:{g}"]) >= int(h[f"c:{g}"]), (g, h)
        else:
            assert where is not None and int(where) == head, (g, where, head)
            if head == 0:
                assert f"!{g}" in wait
            else:
                assert _level(prio[f"!{g}"]) == head
        for job_id, score in jobs:
            p, cap, group = pri[job_id].split(":", 2)
            assert group == g and int(p) == _level(score) and int(cap) >= 0
    for field in h:
        if field.startswith(("q:", "a:", "c:")):
            g = field[2:]
            if field.startswith("q:"):
                assert g in groups, field
            if field.startswith("c:"):
                assert g in groups or g in running, field
    for token in tokens:
        assert token[1:] in groups, token
    assert running == {g: int(v) for f, v in h.items() if f.startswith("a:") for g in [f[2:]]}
    # every job in exactly one place
    places: dict[str, list[str]] = {}

    def put(job_id: str, place: str) -> None:
        places.setdefault(job_id, []).append(place)

    for m in wait:
        if not m.startswith("!"):
            put(m, "wait")
    for m in prio:
        if not m.startswith("!"):
            put(m, "prio")
    for jobs in groups.values():
        for job_id, _ in jobs:
            put(job_id, "group")
    for name, key in (
        ("delayed", k.delayed), ("active", k.active), ("completed", k.completed),
        ("failed", k.failed), ("waiting-children", k.waiting_children),
    ):  # fmt: skip
        for m in await r.zrange(key, 0, -1):
            put(text(m), name)
    for field in await r.hkeys(k.jobs):
        job_id = text(field)
        assert len(places.get(job_id, [])) == 1, (job_id, places.get(job_id))
    counted: dict[str, int] = {}
    for where_list in places.values():
        counted[where_list[0]] = counted.get(where_list[0], 0) + 1
    counts = await q.get_job_counts()
    ready = counted.get("wait", 0) + counted.get("prio", 0) + counted.get("group", 0)
    assert counts["waiting"] + counts["paused"] == ready, (counts, counted)
    assert counts["delayed"] == counted.get("delayed", 0)
    return counted
