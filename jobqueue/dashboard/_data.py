"""What the pages show, read from Redis: queue overviews, job lists, a job with its timeline
and its flow, the live workers. Every text that may hold a secret goes through `redact`;
templates escape everything (job data is user input)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..core.codec import text
from ..core.redact import redact
from ..core.states import JobState
from ..events import Event
from ..job import Job
from ..limits.state import LimiterState
from ..queue import Queue
from ..queue_limits import QueueLimits
from ..workerinfo import WorkerInfo
from ._state import Dashboard
from ._stats import QueueRate

__all__ = [
    "STATES",
    "FlowNode",
    "JobView",
    "QueueView",
    "WorkerView",
    "job_page",
    "job_view",
    "list_jobs",
    "now_ms",
    "queue_view",
    "workers",
]

STATES = ("waiting", "active", "delayed", "waiting-children", "paused", "completed", "failed")
"""The states a queue's jobs are counted in, in display order."""

_TIMELINE_MAX = 5000  # stream entries scanned for one job's timeline
_FLOW_MAX = 200  # jobs shown of one flow


def pretty(value: Any) -> str:
    """A JSON value as indented text, secrets masked (shown escaped by the template)."""
    try:
        dumped = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        dumped = repr(value)
    return redact(dumped)


async def now_ms(dash: Dashboard) -> int:
    """The Redis clock in ms (the clock of every time the engine records)."""
    sec, usec = await dash.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


@dataclass(frozen=True)
class QueueView:
    """One queue on the overview."""

    name: str
    counts: dict[str, int]
    paused: bool
    limits: QueueLimits
    rate: QueueRate
    workers: int

    @property
    def limited(self) -> bool:
        """Whether a rate-limit hold or an open breaker keeps jobs from starting now."""
        shared = self.limits.shared
        return bool(
            self.limits.limited_ms
            or (shared is not None and (shared.hold_ms or _breaker_open(shared)))
        )


def _breaker_open(state: LimiterState) -> bool:
    return state.breaker is not None and state.breaker.state == "open"


async def queue_view(dash: Dashboard, queue: Queue, now: int) -> QueueView:
    """Counts by state, pause, limits, last hour and workers of one queue."""
    counts = await queue.get_job_counts()
    return QueueView(
        name=queue.name,
        counts=counts,
        paused=await queue.is_paused(),
        limits=await queue.get_limits(),
        rate=await dash.throughput.read(dash.redis, queue.keys.events, now),
        workers=len(await queue.get_workers()),
    )


@dataclass(frozen=True)
class JobView:
    """A job as the pages show it (texts redacted)."""

    queue: str
    id: str
    name: str
    state: str
    attempts_made: int
    max_attempts: int
    progress: int
    priority: int
    group: str | None
    error_type: str | None
    error_message: str | None
    data: str
    result: str | None
    parent: str | None
    created_at: Any
    started_at: Any
    finished_at: Any


def job_view(job: Job) -> JobView:
    """The `JobView` of a job."""
    return JobView(
        queue=job.queue.name,
        id=job.id,
        name=job.name,
        state=str(job.state),
        attempts_made=job.attempts_made,
        max_attempts=job.max_attempts,
        progress=job.progress,
        priority=job.priority,
        group=job.group,
        error_type=job.error_type,
        error_message=redact(job.error_message) if job.error_message is not None else None,
        data=pretty(job.data),
        result=pretty(job.result) if job.result is not None else None,
        parent=job.parent,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


async def _ids_page(queue: Queue, state: str, offset: int, size: int) -> list[str]:
    k = queue.keys
    zsets = {
        "delayed": (k.delayed, False),  # soonest due first
        "active": (k.active, False),
        "waiting-children": (k.waiting_children, False),
        "completed": (k.completed, True),  # newest first
        "failed": (k.failed, True),
    }
    if state in zsets:
        key, newest_first = zsets[state]
        end = offset + size - 1
        raw = await (
            queue.redis.zrevrange(key, offset, end)
            if newest_first
            else queue.redis.zrange(key, offset, end)
        )
        return [text(x) for x in raw]
    # waiting (and paused) jobs live in a list, a zset and group zsets: read up to the page
    ids = await queue.get_job_ids(JobState(state), limit=offset + size)
    return ids[offset : offset + size]


async def list_jobs(queue: Queue, state: str, page: int, size: int) -> list[JobView]:
    """Page `page` (from 0) of the jobs of `queue` in `state`."""
    ids = await _ids_page(queue, state, page * size, size)
    out = []
    for job_id in ids:
        job = await queue.get_job(job_id)
        if job is not None:
            out.append(job_view(job))
    return out


@dataclass
class FlowNode:
    """One job of a flow's tree."""

    queue: str
    id: str
    name: str
    state: str
    current: bool = False
    children: list[FlowNode] = field(default_factory=list)


def _split_ref(ref: str) -> tuple[str, str]:
    # queue names hold no ':' (job ids may)
    queue, _, job_id = ref.partition(":")
    return queue, job_id


async def _child_refs(queue: Queue, job_id: str) -> list[str]:
    k = queue.keys
    refs: set[str] = set()
    for key in (k.dependencies(job_id), k.children_results(job_id), k.children_failures(job_id)):
        refs.update(text(x) for x in await queue.redis.hkeys(key))
    return sorted(refs)


async def flow_tree(dash: Dashboard, job: Job) -> FlowNode | None:
    """The tree of the flow `job` belongs to (from its root), None when it is in none."""
    root_queue, root_id, root = job.queue.name, job.id, job
    seen = {f"{root_queue}:{root_id}"}
    while root.parent is not None and len(seen) < 50:
        q_name, p_id = _split_ref(root.parent)
        parent_queue = await dash.queue(q_name)
        parent = await parent_queue.get_job(p_id) if parent_queue else None
        if parent is None or f"{q_name}:{p_id}" in seen:
            break
        seen.add(f"{q_name}:{p_id}")
        root_queue, root_id, root = q_name, p_id, parent
    count = 0

    async def node(queue_name: str, job_id: str, found: Job | None, depth: int) -> FlowNode:
        nonlocal count
        count += 1
        queue = await dash.queue(queue_name)
        if found is None and queue is not None:
            found = await queue.get_job(job_id)
        this = FlowNode(
            queue_name,
            job_id,
            found.name if found else "",
            str(found.state) if found else "removed",
            current=(queue_name, job_id) == (job.queue.name, job.id),
        )
        if queue is not None and found is not None and depth < 6:
            for ref in await _child_refs(queue, job_id):
                if count >= _FLOW_MAX:
                    break
                c_queue, c_id = _split_ref(ref)
                this.children.append(await node(c_queue, c_id, None, depth + 1))
        return this

    tree = await node(root_queue, root_id, root, 0)
    return tree if tree.children or root is not job else None


def _event_line(event: Event) -> dict[str, Any]:
    f = event.fields
    details = []
    for key, label in (("a", "attempt"), ("st", "state"), ("p", "progress"), ("et", "error")):
        if f.get(key):
            details.append(f"{label} {f[key]}")
    for key in ("em", "reason"):
        if f.get(key):
            details.append(redact(f[key]))
    return {"ts": event.ts, "event": event.event, "details": "; ".join(details)}


async def timeline(queue: Queue, job: Job) -> list[dict[str, Any]]:
    """The job's events still in the stream, oldest first (the scan starts at its creation:
    stream ids are times)."""
    start = "-"
    if job.created_at is not None:
        start = str(int(job.created_at.timestamp() * 1000))
    out: list[dict[str, Any]] = []
    scanned = 0
    while scanned < _TIMELINE_MAX:
        entries: Any = await queue.redis.xrange(queue.keys.events, min=start, max="+", count=1000)
        for entry_id, raw in entries:
            event = Event.from_entry(entry_id, raw)
            if event.job_id == job.id:
                out.append(_event_line(event))
        scanned += len(entries)
        if len(entries) < 1000:
            break
        start = f"({text(entries[-1][0])}"
    return out


async def job_page(dash: Dashboard, queue: Queue, job: Job) -> dict[str, Any]:
    """Everything the job page shows."""
    logs = [redact(line) for line in await queue.get_job_logs(job.id)]
    return {
        "job": job_view(job),
        "logs": logs,
        "timeline": await timeline(queue, job),
        "flow": await flow_tree(dash, job),
    }


@dataclass
class WorkerView:
    """A live worker with the jobs it runs now (`(queue, id, name)`)."""

    info: WorkerInfo
    running: list[tuple[str, str, str]] = field(default_factory=list)


async def workers(dash: Dashboard) -> list[WorkerView]:
    """Every live worker of every queue, with the jobs each runs (from their lease tokens)."""
    by_name: dict[str, WorkerView] = {}
    for queue in await dash.queues():
        for info in await queue.get_workers():
            by_name.setdefault(info.name, WorkerView(info))
        active = [text(x) for x in await queue.redis.zrange(queue.keys.active, 0, 199)]
        if not active:
            continue
        async with queue.redis.pipeline(transaction=False) as pipe:
            for job_id in active:
                pipe.hget(queue.keys.state(job_id), "k")
            tokens = await pipe.execute()
        for job_id, token in zip(active, tokens, strict=True):
            if token is None:
                continue
            worker = text(token).rpartition(":")[0]  # the token is `<worker>:<starts>`
            view = by_name.get(worker)
            if view is not None:
                job = await queue.get_job(job_id)
                view.running.append((queue.name, job_id, job.name if job else ""))
    return sorted(by_name.values(), key=lambda w: w.info.name)
