"""Several shared limiters in one hash slot (`QueueConfig(slot=...)`), on Redis 7, Valkey and
fakeredis: each limiter keeps its own buckets, 429 hold and circuit breaker, and a flow spans
queues on different limiters (and none) of the slot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_engine_limiter import finish, take

from jobqueue import Breaker, Bucket, Child, CrossSlotFlowError, JobState, Limiter, Queue

pytestmark = pytest.mark.integration

OPUS = Limiter(
    "anthropic.opus",
    {"requests": Bucket(1, per=600)},
    Breaker(failures=1, window=60, cooldown=600, max_wait=600),
)
SONNET = Limiter(
    "anthropic.sonnet",
    {"requests": Bucket(1, per=600)},
    Breaker(failures=1, window=60, cooldown=600, max_wait=600),
)
# named after the slot: its keys keep the names a limiter's slot gave them before
NAMESAKE = Limiter("pipeline", {"requests": Bucket(1, per=600)})


def make_slot(make_queue: Any) -> dict[str, Queue]:
    """Queues of the slot `pipeline`: two on Opus, one on Sonnet, one on the namesake, one on
    no limiter."""
    cost = {"cost": {"requests": 1}}
    return {
        "research": make_queue("research", limiter=OPUS, slot="pipeline", **cost),
        "analysis": make_queue("analysis", limiter=OPUS, slot="pipeline", **cost),
        "ranking": make_queue("ranking", limiter=SONNET, slot="pipeline", **cost),
        "judge": make_queue("judge", limiter=NAMESAKE, slot="pipeline", **cost),
        "format": make_queue("format", slot="pipeline"),
    }


async def test_limiters_of_one_slot_keep_separate_buckets(make_queue: Any) -> None:
    qs = make_slot(make_queue)
    for q in qs.values():
        await q.add_bulk([("x", 1), ("x", 2)])
    _, jobs = await take(qs["research"], 2)
    assert len(jobs) == 1  # Opus's one request per 10 minutes
    hint, none = await take(qs["analysis"], 2)
    assert none == [] and hint > 0  # the other Opus queue spends the same bucket
    for name in ("ranking", "judge"):
        _, jobs = await take(qs[name], 2)
        assert len(jobs) == 1, name  # Sonnet's and the namesake's buckets are their own
    _, jobs = await take(qs["format"], 2)
    assert len(jobs) == 2  # no limiter at all
    # each limiter's state is its own, under its own keys (the namesake's as before)
    redis = qs["research"].redis
    prefix = qs["research"].prefix
    assert await redis.exists(f"{prefix}:{{pipeline}}!anthropic.opus!limiter")
    assert await redis.exists(f"{prefix}:{{pipeline}}!anthropic.sonnet!limiter")
    assert await redis.exists(f"{prefix}:{{pipeline}}!limiter")
    for name in ("research", "ranking", "judge"):
        state = await qs[name].get_limiter_state()
        assert state.name == qs[name].config.limiter.name  # type: ignore[union-attr]
        assert [b.tokens for b in state.buckets] == [pytest.approx(0, abs=0.01)]


async def test_a_429_holds_only_the_queues_of_its_limiter(make_queue: Any) -> None:
    qs = make_slot(make_queue)
    for q in qs.values():
        await q.add_bulk([("x", 1), ("x", 2)])
    _, [(jid, token)] = await take(qs["research"], 1)
    outcome = (jid, token, "r", "429", "RATE_LIMIT", 600_000, 5)
    assert await finish(qs["research"], [outcome]) == [2]
    hint, none = await take(qs["analysis"], 1)
    assert none == [] and 0 < hint <= 600_000
    assert (await qs["analysis"].get_limiter_state()).hold_ms > 0
    for name in ("ranking", "judge", "format"):
        _, jobs = await take(qs[name], 1)
        assert len(jobs) == 1, name
    assert (await qs["ranking"].get_limiter_state()).hold_ms == 0
    assert (await qs["judge"].get_limiter_state()).hold_ms == 0


async def test_a_breaker_opens_for_its_limiter_only(make_queue: Any) -> None:
    qs = make_slot(make_queue)
    for q in qs.values():
        await q.add_bulk([("x", 1), ("x", 2)])
    _, [(jid, token)] = await take(qs["ranking"], 1)
    outcome = (jid, token, "b", "HTTP 529 overloaded", "NETWORK_ERROR", 10, 0)
    assert await finish(qs["ranking"], [outcome]) == [2]
    sonnet = await qs["ranking"].get_limiter_state()
    assert sonnet.breaker is not None and sonnet.breaker.state == "open"
    opus = await qs["research"].get_limiter_state()
    assert opus.breaker is not None and opus.breaker.state == "closed"
    assert opus.breaker.recent_failures == 0
    _, jobs = await take(qs["research"], 1)
    assert len(jobs) == 1  # Opus goes on while Sonnet's breaker is open


async def test_a_flow_spans_queues_on_different_limiters_of_one_slot(make_queue: Any) -> None:
    qs = make_slot(make_queue)
    research, ranking, fmt = qs["research"], qs["ranking"], qs["format"]
    await fmt.add_flow(
        "sector",
        job_id="root",
        children=[
            Child(queue=research, name="analysis", job_id="a1"),
            Child(queue="ranking", name="rank", job_id="k1"),  # by name: the slot's queue
            Child(queue=fmt, name="render", job_id="f1"),
        ],
    )
    assert await fmt.get_job_state("root") == JobState.WAITING_CHILDREN
    for q, job_id in ((research, "a1"), (ranking, "k1"), (fmt, "f1")):
        _, jobs = await take(q, 1)
        assert [j for j, _ in jobs] == [job_id]
        [(jid, token)] = jobs
        await finish(q, [(jid, token, "c", json.dumps(q.name), "", 0, 3)])
    # the last child's finish released the parent in the same script
    assert await fmt.get_job_state("root") == JobState.WAITING
    root = await fmt.get_job("root")
    assert root is not None
    assert await root.children_results() == {
        "research:a1": "research",
        "ranking:k1": "ranking",
        "format:f1": "format",
    }


async def test_a_queue_of_the_limiter_but_not_of_the_slot_is_refused(make_queue: Any) -> None:
    qs = make_slot(make_queue)
    # on Opus, but in Opus's own slot (no `slot` given): another hash slot
    alone = make_queue("alone", limiter=OPUS)
    assert alone.keys.slot == "anthropic.opus"
    assert alone.keys.shared_limiter.endswith(":{anthropic.opus}!limiter")
    with pytest.raises(CrossSlotFlowError, match="slot"):
        await qs["research"].add_flow("p", job_id="p", children=[Child(queue=alone, name="x")])
    with pytest.raises(CrossSlotFlowError, match="slot"):
        await alone.add_flow("p", job_id="p", children=[Child(queue=qs["format"], name="x")])
    assert await qs["research"].get_job("p") is None and await alone.get_job("p") is None
