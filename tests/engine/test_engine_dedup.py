"""Deduplication keys (`Dedup`): drop while the holder waits, the window (ttl), replace
(debounce) with its restarted delay, release of the key, on Redis, Valkey and fakeredis."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import redis_ms, stream_events, wait_redis_clock
from groups_helpers import check_groups, finish, take

from jobqueue import Dedup, InvalidJobError, JobState

pytestmark = pytest.mark.integration


async def test_a_duplicate_of_a_waiting_job_is_dropped(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("refresh", {"v": 1}, dedup=Dedup("user-1"))
    assert first.deduplicated is None
    again = await q.add("refresh", {"v": 2}, dedup=Dedup("user-1"))
    assert again.id == first.id and again.deduplicated == "dropped"
    assert again.data == {"v": 1}
    other = await q.add("refresh", {"v": 3}, dedup=Dedup("user-2"))
    assert other.id != first.id and other.deduplicated is None
    assert (await q.get_job_counts())["waiting"] == 2
    assert [e["id"] for e in await stream_events(q) if e["ev"] == "deduplicated"] == [first.id]
    # in a bulk add too, also against a job of the same batch
    bulk = await q.add_bulk(
        [
            {"name": "refresh", "data": 4, "dedup": Dedup("user-1")},
            {"name": "refresh", "data": 5, "dedup": Dedup("user-3")},
            {"name": "refresh", "data": 6, "dedup": Dedup("user-3")},
        ]
    )
    assert [j.deduplicated for j in bulk] == ["dropped", None, "dropped"]
    assert bulk[0].id == first.id and bulk[2].id == bulk[1].id
    assert (await q.get_job_counts())["waiting"] == 3


async def test_a_batch_leaves_the_fifo_list_as_jobs_added_in_turn_would(make_queue: Any) -> None:
    # the list is pushed once per batch: a replace in the batch still takes its holder out of
    # it first (no id twice), and a group's token keeps its place between the batch's jobs
    q = make_queue()
    jobs = await q.add_bulk(
        [
            {"name": "x", "data": 1},
            {"name": "x", "data": 2, "dedup": Dedup("k", replace=True)},
            {"name": "x", "data": 3},
            {"name": "x", "data": 4, "dedup": Dedup("k", replace=True)},
            {"name": "x", "data": 5, "group": "G"},
            {"name": "x", "data": 6},
        ]
    )
    one, two, three, again, _, six = (j.id for j in jobs)
    assert again == two and jobs[3].deduplicated == "replaced"
    listed = [v.decode() for v in await q.redis.lrange(q.keys.wait, 0, -1)]
    assert listed == [one, three, two, "!G", six]
    ids = [int(j.id) for j in jobs if j.id != two]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_a_delayed_job_holds_its_key_and_a_started_one_does_not(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("x", 1, delay=60, dedup=Dedup("k"))
    assert (await q.add("x", 2, dedup=Dedup("k"))).id == first.id
    await q.redis.zadd(q.keys.delayed, {first.id: 0}, xx=True)  # due now
    [(job_id, token)] = await take(q, 5)
    assert job_id == first.id
    # running: without a window, a new job with the key is added and holds it
    second = await q.add("x", 3, dedup=Dedup("k"))
    assert second.id != first.id and second.deduplicated is None
    assert (await q.add("x", 4, dedup=Dedup("k"))).id == second.id
    # a failed attempt due to run again holds the key again... only if it is the holder
    await finish(q, [(job_id, token, "f", "boom", "UNKNOWN", 60_000, 3)])
    assert (await q.add("x", 5, dedup=Dedup("k"))).id == second.id


async def test_the_window_drops_duplicates_after_the_holder_started(make_queue: Any) -> None:
    q = make_queue()
    added_at = await redis_ms(q.redis)
    first = await q.add("x", 1, dedup=Dedup("k", ttl=0.3))
    [(job_id, token)] = await take(q, 5)
    await finish(q, [(job_id, token, "c", "null", "", 0, 0)])
    # ended, yet within the window
    late = await q.add("x", 2, dedup=Dedup("k", ttl=0.3))
    assert late.id == first.id and late.deduplicated == "dropped"
    # the window counts from the holder's add, on the Redis clock
    await wait_redis_clock(q.redis, added_at + 300 + 5)
    fresh = await q.add("x", 3, dedup=Dedup("k", ttl=0.3))
    assert fresh.id != first.id and fresh.deduplicated is None


async def test_the_window_outlives_a_removed_holder(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("x", 1, dedup=Dedup("k", ttl=600))
    assert await q.remove(first.id)
    assert (await q.add("x", 2, dedup=Dedup("k", ttl=600))).deduplicated == "dropped"
    # without a window, removing the holder releases the key at once
    plain = await q.add("y", 1, dedup=Dedup("p"))
    assert await q.remove(plain.id)
    assert not await q.redis.exists(q.keys.dedup("p"))
    assert (await q.add("y", 2, dedup=Dedup("p"))).deduplicated is None


async def test_replace_debounces_a_waiting_job(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("save", {"v": 1}, delay=0.5, dedup=Dedup("doc-1", replace=True))
    before = await q.redis.zscore(q.keys.delayed, first.id)
    replaced = await q.add("save", {"v": 2}, delay=30, dedup=Dedup("doc-1", replace=True))
    assert replaced.id == first.id and replaced.deduplicated == "replaced"
    assert replaced.data == {"v": 2} and replaced.state == JobState.DELAYED
    # the delay restarted from now: due about 30 s later than the first add's 0.5 s
    after = await q.redis.zscore(q.keys.delayed, first.id)
    assert (after - before) / 1024 >= 29_000
    assert (await q.get_job_counts())["delayed"] == 1
    # replaced with no delay: ready now, in its new group
    now = await q.add("save", {"v": 3}, group="G", dedup=Dedup("doc-1", replace=True))
    assert now.deduplicated == "replaced" and now.group == "G"
    await check_groups(q)
    [(job_id, _)] = await take(q, 5)
    assert job_id == first.id
    # started: a replace no longer applies; without a window a new job is added
    fresh = await q.add("save", {"v": 4}, dedup=Dedup("doc-1", replace=True))
    assert fresh.id != first.id and fresh.deduplicated is None
    got = await q.get_job(first.id)
    assert got is not None and got.data == {"v": 3}
    added = [e for e in await stream_events(q) if e["ev"] == "added" and e["id"] == first.id]
    assert [e.get("replaced") for e in added] == [None, "1", "1"]


async def test_replace_within_a_window_after_the_start_drops(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("x", 1, dedup=Dedup("k", ttl=600, replace=True))
    [(job_id, _)] = await take(q, 5)
    late = await q.add("x", 2, dedup=Dedup("k", ttl=600, replace=True))
    assert late.id == job_id == first.id and late.deduplicated == "dropped"


async def test_dedup_keys_are_released_when_their_jobs_go(make_queue: Any) -> None:
    q = make_queue(keep_completed=(0, None))
    job = await q.add("x", 1, dedup=Dedup("k"))
    [(job_id, token)] = await take(q, 5)
    await finish(q, [(job_id, token, "c", "null", "", 0, 0)])  # trimmed at once
    assert await q.get_job(job.id) is None
    assert not await q.redis.exists(q.keys.dedup("k"))
    assert not await q.redis.hexists(q.keys.priorities, f"#{job.id}")
    cancelled = await q.add("x", 2, dedup=Dedup("c"))
    await q.cancel(cancelled.id)
    assert not await q.redis.exists(q.keys.dedup("c"))


async def test_bad_dedup_is_refused(make_queue: Any) -> None:
    q = make_queue()
    for bad in ({"key": ""}, {"key": "x" * 201}, {"key": "a\nb"}, {"key": "k", "ttl": 0},
                {"key": "k", "ttl": float("inf")}, {"key": "k", "replace": 1}):  # fmt: skip
        with pytest.raises(InvalidJobError):
            Dedup(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError):
        await q.add("x", None, dedup="k")
    assert (await q.get_job_counts())["waiting"] == 0
