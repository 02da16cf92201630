"""Jobs written before the `jobs` hash: their envelope in the string key `j:<id>`
(`QueueKeys.legacy_job`). An upgraded engine takes, finishes, removes, inspects and logs them,
and an add with one of their ids is still a duplicate."""

from __future__ import annotations

from typing import Any

import pytest
from groups_helpers import finish, take

from jobqueue import JobState, Queue

pytestmark = pytest.mark.integration


async def add_the_old_way(q: Queue, job_id: str, data: Any) -> None:
    """What the add script wrote before the `jobs` hash: the envelope in its own string key
    and the id at the tail of the wait list (the envelope is the one today's add writes, byte
    for byte; the job is added then moved back to where the old script put it)."""
    await q.add("old", data, job_id=job_id)
    r, k = q.redis, q.keys
    envelope = await r.hget(k.jobs, job_id)
    assert envelope is not None and await r.lrange(k.wait, -1, -1) == [job_id.encode()]
    await r.hdel(k.jobs, job_id)
    await r.set(k.legacy_job(job_id), envelope)


async def test_a_job_written_before_the_hash_runs_to_its_end(make_queue: Any) -> None:
    q = make_queue("legacy", keep_completed=(0, None))
    r, k = q.redis, q.keys
    await add_the_old_way(q, "old-1", {"n": 1})
    assert not await r.hexists(k.jobs, "old-1")
    # inspected
    job = await q.get_job("old-1")
    assert job is not None and (job.name, job.data) == ("old", {"n": 1})
    assert await q.get_job_state("old-1") == JobState.WAITING
    assert await q.add_job_log("old-1", "seen") == 1
    # an add with its id is a duplicate: nothing written for it
    again = await q.add("new", {"n": 2}, job_id="old-1")
    assert again.id == "old-1"
    assert not await r.hexists(k.jobs, "old-1")
    assert (await q.get_job_counts())["waiting"] == 1
    # taken (with its envelope) and completed; retention (keep none) then deletes its keys
    jobs = await take(q, 5)
    assert [j for j, _ in jobs] == ["old-1"]
    codes, _ = await finish(q, [(jobs[0][0], jobs[0][1], "c", '"done"', "", 0, 0)])
    assert codes == [1]
    assert await q.get_job("old-1") is None
    assert not await r.exists(k.legacy_job("old-1"), k.state("old-1"), k.logs("old-1"))


async def test_a_job_written_before_the_hash_is_removed_with_its_key(make_queue: Any) -> None:
    q = make_queue("legacy")
    r, k = q.redis, q.keys
    await add_the_old_way(q, "old-2", [1, 2])
    job = await q.get_job("old-2")
    assert job is not None and job.data == [1, 2]
    assert await q.remove("old-2")
    assert await q.get_job("old-2") is None
    assert not await r.exists(k.legacy_job("old-2"))
    assert (await q.get_job_counts())["waiting"] == 0
    # the id is free again: a new job takes it, in the hash
    await q.add("new", None, job_id="old-2")
    assert await r.hexists(k.jobs, "old-2")
    assert not await r.exists(k.legacy_job("old-2"))


async def test_new_jobs_are_fields_of_one_hash(make_queue: Any) -> None:
    q = make_queue("hash")
    r, k = q.redis, q.keys
    added = await q.add_bulk([("x", i) for i in range(3)])
    await q.add("y", "named", job_id="mine")
    assert sorted(x.decode() for x in await r.hkeys(k.jobs)) == sorted(
        [j.id for j in added] + ["mine"]
    )
    assert not [key async for key in r.scan_iter(match=k.base + "j:*")]
