"""Operations on queues of one shared hash slot with several limiters (`QueueConfig(slot=...)`):
discovery, `open_queue` (the limiter read from what the workers published) and
`python -m jobqueue.inspect`, against real Redis and in-process workers."""

from __future__ import annotations

import json

import pytest
from ops_helpers import run_cli, state_is

from jobqueue import Bucket, Job, Limiter
from jobqueue.maintenance import discover_queue_keys, find_queue_keys, open_queue

OPUS = Limiter("anthropic.opus", {"requests": Bucket(50, per=3600)})
SONNET = Limiter("anthropic.sonnet", {"requests": Bucket(80, per=3600)})
OLD = Limiter("llm.old", {"requests": Bucket(10, per=60)})


async def _slot_queues(make_queue, run_worker):
    """research (Opus), ranking (Sonnet), format (no limiter) in slot `pipeline`, and `old`
    on a limiter in its own slot; a worker ran one job on each (publishing its limits)."""
    queues = {
        "research": make_queue("research", limiter=OPUS, slot="pipeline", cost={"requests": 1}),
        "ranking": make_queue("ranking", limiter=SONNET, slot="pipeline", cost={"requests": 2}),
        "format": make_queue("format", slot="pipeline"),
        "old": make_queue("old", limiter=OLD, cost={"requests": 1}),
    }

    async def handler(job: Job) -> str:
        return job.queue.name

    for queue in queues.values():
        run_worker(queue, handler)
        job = await queue.add("x", None)
        await state_is(queue, job.id, "completed")
    return queues


async def test_discovery_and_open_queue_find_each_limiter_of_a_slot(make_queue, run_worker, prefix):
    queues = await _slot_queues(make_queue, run_worker)
    redis = queues["research"].redis
    found = {k.queue: k.slot for k in await discover_queue_keys(redis, prefix)}
    assert found == {
        "format": "pipeline",
        "old": "llm.old",
        "ranking": "pipeline",
        "research": "pipeline",
    }
    for name, queue in queues.items():
        keys = await find_queue_keys(redis, name, prefix=prefix)
        assert keys is not None and keys.base == queue.keys.base
        opened = await open_queue(redis, name, prefix=prefix)
        try:
            assert opened.keys == queue.keys, name
            assert opened.config.limiter == queue.config.limiter, name
            if queue.config.limiter is not None:
                got = await opened.get_limiter_state()
                want = await queue.get_limiter_state()
                assert got.name == want.name == queue.config.limiter.name
                [got_bucket], [want_bucket] = got.buckets, want.buckets
                assert got_bucket.capacity == want_bucket.capacity
                # read from the same keys: the same spend (tokens refill in between)
                assert got_bucket.tokens == pytest.approx(want_bucket.tokens, abs=0.5)
        finally:
            await opened.close()
    # the limiters' states are their own: Opus spent 1 request, Sonnet 2
    research = await queues["research"].get_limiter_state()
    ranking = await queues["ranking"].get_limiter_state()
    assert research.buckets[0].tokens is not None and research.buckets[0].tokens < 50
    assert ranking.buckets[0].tokens is not None and ranking.buckets[0].tokens < 80
    assert research.buckets[0].capacity == 50 and ranking.buckets[0].capacity == 80


async def test_open_queue_falls_back_to_the_slots_namesake(make_queue, run_worker, prefix):
    # meta written by workers that did not name their limiter: the slot names it, as before
    queues = await _slot_queues(make_queue, run_worker)
    old = queues["old"]
    await old.redis.hdel(old.keys.meta, "limiter")
    opened = await open_queue(old.redis, "old", prefix=prefix)
    try:
        assert opened.config.limiter == OLD and opened.keys == old.keys
    finally:
        await opened.close()


async def test_inspect_shows_the_limiter_of_each_queue_of_a_slot(
    make_queue, run_worker, redis_url, prefix
):
    await _slot_queues(make_queue, run_worker)
    result = await run_cli("--redis", redis_url, "--prefix", prefix, "--json")
    assert result.code == 0, result.stderr
    queues = {q["name"]: q for q in json.loads(result.stdout)["queues"]}
    assert set(queues) == {"research", "ranking", "format", "old"}
    limiters = {name: (q["limiter"] or {}).get("name") for name, q in queues.items()}
    assert limiters == {
        "research": "anthropic.opus",
        "ranking": "anthropic.sonnet",
        "format": None,
        "old": "llm.old",
    }
    capacity = {
        name: q["limiter"]["buckets"][0]["capacity"] for name, q in queues.items() if q["limiter"]
    }
    assert capacity == {"research": 50, "ranking": 80, "old": 10}
    for name, q in queues.items():
        assert q["counts"]["completed"] == 1, name
    slots = {name: q["slot"] for name, q in queues.items()}
    assert slots == {
        "research": "pipeline",
        "ranking": "pipeline",
        "format": "pipeline",
        "old": "llm.old",
    }
    table = await run_cli("--redis", redis_url, "--prefix", prefix)
    assert table.code == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    # one row per limiter, with its slot when the slot is not its namesake
    assert "{pipeline}" in rows["anthropic.opus"] and "research" in rows["anthropic.opus"]
    assert "{pipeline}" in rows["anthropic.sonnet"] and "ranking" in rows["anthropic.sonnet"]
    assert "{" not in rows["llm.old"]
