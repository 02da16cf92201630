"""Two limiters in one hash slot, end to end with real worker processes: a flow spans a queue
on each and a plain queue; one limiter's breaker opens (its provider is down) while the other's
queue runs on, then the parent runs once with every child's result.

Nothing depends on the machine's speed: every wait is on a state (deadlines only bound a
hang)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, WorkerProcess, read_log, wait_for

from jobqueue import Breaker, Bucket, Child, JobState, Limiter, Queue, QueueConfig
from jobqueue.core.connection import connect

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BREAKER = {"failures": 1, "window": 60, "cooldown": 0.2, "max_wait": 600}
SPECS: dict[str, dict[str, Any]] = {
    "research": {"name": "anthropic.opus", "buckets": {"requests": [100, 60]}},
    "ranking": {"name": "anthropic.sonnet", "buckets": {"requests": [100, 60]}},
}
FAST = {"lease": 5.0, "stall_interval": 0.5, "retry_delays": {"NETWORK_ERROR": 0.05}}


def _limiter(spec: dict[str, Any]) -> Limiter:
    buckets = {name: Bucket(c, per=per) for name, (c, per) in spec["buckets"].items()}
    return Limiter(spec["name"], buckets, Breaker(**BREAKER))


def _config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "slot": "pipeline", **FAST}
    if name in SPECS:
        config["limiter"] = {**SPECS[name], "breaker": BREAKER}
        config["cost"] = {"requests": 1}
    return config


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        p.close()


@pytest.fixture
async def side(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def queues(redis_url: str, prefix: str) -> AsyncIterator[dict[str, Queue]]:
    made = {}
    for name in ("research", "ranking", "format"):
        cfg = _config(name)
        limiter = _limiter(SPECS[name]) if name in SPECS else None
        made[name] = Queue(
            QueueConfig(name, slot="pipeline", limiter=limiter, cost=cfg.get("cost")),
            redis=redis_url,
            prefix=prefix,
        )
    yield made
    for q in made.values():
        await q.close()


async def test_a_flow_over_two_limiters_of_one_slot_with_one_breaker_open(
    redis_url: str,
    prefix: str,
    procs: list[WorkerProcess],
    side: aioredis.Redis,
    queues: dict[str, Queue],
) -> None:
    research, ranking, fmt = queues["research"], queues["ranking"], queues["format"]
    await side.set(f"{prefix}:test:down", "1")  # Opus's provider is down
    await fmt.add_flow(
        "sector",
        {"children": True},
        job_id="root",
        children=[
            Child(queue=research, name="analyse", data={"fail_while_down": True}, job_id="a"),
            Child(queue=ranking, name="rank", job_id="r1"),
            Child(queue=ranking, name="rank", job_id="r2"),
        ],
    )
    for name in ("research", "ranking", "format"):
        procs.append(WorkerProcess(redis_url, prefix, _config(name), concurrency=2))

    async def opus_opened() -> bool:
        brk = (await research.get_limiter_state()).breaker
        return brk is not None and brk.openings >= 1

    await wait_for(opus_opened, what="Opus's breaker to open")

    async def ranked() -> bool:
        states = [await ranking.get_job_state(j) for j in ("r1", "r2")]
        return states == [JobState.COMPLETED, JobState.COMPLETED]

    await wait_for(ranked, what="Sonnet's jobs to complete while Opus's breaker is open")
    sonnet = (await ranking.get_limiter_state()).breaker
    assert sonnet is not None and sonnet.openings == 0 and sonnet.recent_failures == 0
    assert await fmt.get_job_state("root") == JobState.WAITING_CHILDREN
    assert await research.get_job_state("a") != JobState.COMPLETED

    await side.delete(f"{prefix}:test:down")
    root = await fmt.get_job("root")
    assert root is not None
    result = await root.wait_until_finished(timeout=HANG)
    assert set(result["children"]) == {"research:a", "ranking:r1", "ranking:r2"}
    starts = [e for e in await read_log(side, prefix) if e["ev"] == "start" and e["id"] == "root"]
    assert len(starts) == 1
    analysed = await research.get_job("a")
    assert analysed is not None and analysed.attempts_made <= 1  # the breaker spent none
