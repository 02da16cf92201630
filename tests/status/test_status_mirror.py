"""The status mirror on a real stream and database: lifecycles, ordering, replays, batching."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
import pytest
import redis.asyncio as aioredis
from status_helpers import HANG, Stream, uid, wait_until

from pipeline import status as st
from pipeline.mirror import StatusMirror

MakeMirror = Callable[..., StatusMirror]


async def drain(mirror: StatusMirror, limit: int = 50) -> int:
    """run_once until a step applies nothing; returns the entries applied."""
    total = 0
    for _ in range(limit):
        applied = await mirror.run_once()
        if applied == 0:
            return total
        total += applied
    raise AssertionError("the mirror never ran dry")


async def row(job_id: str) -> st.JobStatusRow:
    found = await st.get_job_status(job_id)
    assert found is not None, f"no row for {job_id}"
    return found


async def test_added_active_progress_completed(stream: Stream, make_mirror: MakeMirror) -> None:
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await stream.emit("added", job_id, name="sector_research", st="waiting")
    assert await drain(mirror) == 1
    r = await row(job_id)
    assert (r.status, r.job_type, r.queue, r.progress) == (
        "waiting",
        "sector_research",
        stream.queue,
        0,
    )
    assert r.event_ms > 0

    await stream.emit("active", job_id, a=1)
    await drain(mirror)
    assert ((await row(job_id)).status, (await row(job_id)).attempts) == ("active", 1)

    await stream.emit("progress", job_id, p=40)
    await drain(mirror)
    assert (await row(job_id)).progress == 40

    last = await stream.emit("completed", job_id, a=1)
    await drain(mirror)
    r = await row(job_id)
    assert (r.status, r.progress, r.attempts, r.finished) == ("completed", 100, 1, True)
    assert f"{r.event_ms}-{r.event_seq}" == last
    assert await stream.pending() == 0


async def test_retrying_then_failed(stream: Stream, make_mirror: MakeMirror) -> None:
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await stream.emit("added", job_id, name="stock_analysis", st="waiting")
    await stream.emit("active", job_id, a=1)
    await stream.emit("progress", job_id, p=70)
    await stream.emit("retrying", job_id, a=1, et="TRANSIENT", em="timeout", st="delayed")
    await drain(mirror)
    r = await row(job_id)
    assert (r.status, r.progress, r.attempts) == ("waiting", 0, 1)
    assert (r.error_type, r.error_message) == ("TRANSIENT", "timeout")

    await stream.emit("active", job_id, a=2)
    await drain(mirror)
    assert ((await row(job_id)).status, (await row(job_id)).attempts) == ("active", 2)

    await stream.emit("failed", job_id, a=2, et="FATAL", em="model refused")
    await drain(mirror)
    r = await row(job_id)
    assert (r.status, r.attempts, r.error_type, r.error_message) == (
        "failed",
        2,
        "FATAL",
        "model refused",
    )


async def test_cancelled_jobs_end_cancelled(stream: Stream, make_mirror: MakeMirror) -> None:
    """A job a cancel stopped (failed as CANCELLED) did not fail: its row is `cancelled`; one
    removed from its queue by a run's cancel (`cancel_job_rows`) stays so after its events."""
    mirror = make_mirror([stream.queue])
    stopped, removed = uid(), uid()
    await stream.emit("added", stopped, name="stock_analysis", st="waiting")
    await stream.emit("active", stopped, a=1)
    await stream.emit("cancelling", stopped, reason="run cancelled")
    await stream.emit("failed", stopped, a=1, et="CANCELLED", em="run cancelled")
    await st.create_job_status(removed, "judge_review", "run-1")
    assert await st.cancel_job_rows([removed], "run cancelled") == 1
    await stream.emit("added", removed, name="judge_review", st="waiting")
    await stream.emit("removed", removed, prev="waiting", reason="run cancelled")
    await drain(mirror)
    r = await row(stopped)
    assert (r.status, r.error_type, r.error_message, r.finished) == (
        "cancelled",
        "CANCELLED",
        "run cancelled",
        True,
    )
    r = await row(removed)
    assert (r.status, r.error_type, r.error_message) == ("cancelled", "CANCELLED", "run cancelled")
    assert await st.cancel_job_rows([removed, stopped], "again") == 0  # finished rows stay


async def test_stalled_and_returned(stream: Stream, make_mirror: MakeMirror) -> None:
    mirror = make_mirror([stream.queue])
    requeued, dead, returned = uid(), uid(), uid()
    for job_id in (requeued, dead, returned):
        await stream.emit("added", job_id, name="judge_review", st="waiting")
        await stream.emit("active", job_id, a=1)
        await stream.emit("progress", job_id, p=50)
    await stream.emit("stalled", requeued, st="waiting")
    await stream.emit("stalled", dead, st="failed", et="STALLED", em="stalled too often")
    await stream.emit("returned", returned)
    await drain(mirror)
    r = await row(requeued)
    assert (r.status, r.progress, r.error_type) == ("waiting", 0, "STALLED")
    r = await row(dead)
    assert (r.status, r.error_type, r.error_message) == ("failed", "STALLED", "stalled too often")
    r = await row(returned)
    assert (r.status, r.progress, r.error_type) == ("waiting", 0, None)


async def test_a_flow_parent_waits_for_its_children_then_runs_again(
    stream: Stream, make_mirror: MakeMirror
) -> None:
    mirror = make_mirror([stream.queue])
    parent, added_parent = uid(), uid()
    await stream.emit("added", added_parent, name="ranking", st="waiting-children")
    await stream.emit("added", parent, name="judge_review", st="waiting")
    await stream.emit("active", parent, a=1)
    await stream.emit("progress", parent, p=90)
    await stream.emit("waiting-children", parent, step=0)  # it added children and waits
    await drain(mirror)
    r = await row(parent)
    assert (r.status, r.progress, r.attempts, r.error_type) == ("waiting", 0, 1, None)
    assert (await row(added_parent)).status == "waiting"
    await stream.emit("waiting", parent, prev="waiting-children")
    await stream.emit("active", parent, a=1)  # its next step: the same attempt
    await stream.emit("progress", parent, p=20)
    await drain(mirror)
    r = await row(parent)
    assert (r.status, r.progress, r.attempts) == ("active", 20, 1)
    await stream.emit("completed", parent, a=1)
    await stream.emit("waiting-children", parent, step=1)  # late: changes nothing
    await drain(mirror)
    assert (await row(parent)).status == "completed"


async def test_delayed_add_removed_and_unknown_jobs(
    stream: Stream, make_mirror: MakeMirror
) -> None:
    """Jobs never seen as `added` get a row; `removed` keeps rows and creates none."""
    mirror = make_mirror([stream.queue])
    delayed, unknown, removed_only, kept = uid(), uid(), uid(), uid()
    await stream.emit("added", delayed, name="format_insights", st="delayed")
    await stream.emit("active", unknown, a=1)
    await stream.emit("removed", removed_only)
    await stream.emit("added", kept, name="x", st="waiting")
    await stream.emit("removed", kept)
    await stream.emit("some-future-event", kept)
    assert await drain(mirror) == 6
    assert (await row(delayed)).status == "waiting"
    r = await row(unknown)
    assert (r.status, r.job_type, r.attempts) == ("active", st.UNKNOWN_JOB_TYPE, 1)
    assert await st.get_job_status(removed_only) is None
    assert (await row(kept)).status == "waiting"
    # The pipeline's own create fills in what the stream could not tell.
    filled = await st.create_job_status(unknown, "stock_ranking", "sub-9")
    assert (filled.job_type, filled.related_id, filled.status) == (
        "stock_ranking",
        "sub-9",
        "active",
    )


async def test_queue_level_events_are_skipped_quietly(
    stream: Stream,
    make_mirror: MakeMirror,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`paused`/`resumed` concern no job: no row, no warning; an entry without `ev` warns."""
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await redis_client.xadd(stream.key, {"ev": "paused", "ts": "1"})
    await redis_client.xadd(stream.key, {"ev": "resumed", "ts": "2"})
    await stream.emit("added", job_id, name="t", st="waiting")
    with caplog.at_level(logging.WARNING, logger="pipeline.mirror"):
        assert await drain(mirror) == 3
    assert caplog.records == []
    assert (await row(job_id)).status == "waiting"
    bad = await redis_client.xadd(stream.key, {"id": uid(), "what": "no ev"})
    with caplog.at_level(logging.WARNING, logger="pipeline.mirror"):
        assert await drain(mirror) == 1
    [record] = caplog.records
    assert "malformed" in record.getMessage() and bad.decode() in record.getMessage()
    assert await stream.pending() == 0


async def test_secrets_and_nul_never_reach_rows(stream: Stream, make_mirror: MakeMirror) -> None:
    mirror = make_mirror([stream.queue])
    job_id = uid()
    em = "POST https://api:canary-pw@host failed with sk-canary-key-123 and Bearer canarytok\x00"
    await stream.emit("failed", job_id, a=1, et="FATAL", em=em)
    await drain(mirror)
    message = (await row(job_id)).error_message or ""
    for canary in ("canary-pw", "canary-key-123", "canarytok", "\x00"):
        assert canary not in message


async def test_replay_and_duplicates_change_nothing(
    stream: Stream, make_mirror: MakeMirror, redis_client: aioredis.Redis
) -> None:
    """Delivering the whole stream again (a group reset) leaves every row as it was."""
    mirror = make_mirror([stream.queue])
    jobs = [uid() for _ in range(5)]
    for job_id in jobs:
        await stream.emit("added", job_id, name="t", st="waiting")
        await stream.emit("active", job_id, a=1)
        await stream.emit("progress", job_id, p=30)
        await stream.emit("completed", job_id, a=1)
    await drain(mirror)
    before = [await row(j) for j in jobs]
    rows_written = mirror.stats.rows
    await redis_client.xgroup_setid(stream.key, "status-mirror", "0")
    assert await drain(mirror) == 20
    assert mirror.stats.rows == rows_written  # nothing newer: no row written
    assert [await row(j) for j in jobs] == before


async def test_out_of_order_events_never_regress(
    stream: Stream, make_mirror: MakeMirror, pool: asyncpg.Pool
) -> None:
    """An older event applied after a newer one, in a later batch or the same one, is ignored."""
    mirror = make_mirror([stream.queue])
    job_id, other = uid(), uid()
    q = stream.queue
    async with pool.acquire() as conn:
        await mirror.apply([(q, "1000-5", {"ev": "completed", "id": job_id, "a": "1"})], conn)
        assert (
            await mirror.apply([(q, "1000-4", {"ev": "progress", "id": job_id, "p": "10"})], conn)
            == 0
        )
        await mirror.apply([(q, "1000-2", {"ev": "active", "id": job_id, "a": "1"})], conn)
        # Same batch, shuffled: folded in stream order per job.
        batch = [
            (q, "2000-3", {"ev": "completed", "id": other, "a": "2"}),
            (q, "2000-2", {"ev": "progress", "id": other, "p": "40"}),
            (q, "2000-1", {"ev": "active", "id": other, "a": "2"}),
            (q, "2000-0", {"ev": "added", "id": other, "name": "t"}),
        ]
        assert await mirror.apply(batch, conn) == 1
        assert await mirror.apply(batch, conn) == 0
    r = await row(job_id)
    assert (r.status, r.progress, r.event_ms, r.event_seq) == ("completed", 100, 1000, 5)
    r = await row(other)
    assert (r.status, r.progress, r.attempts, r.job_type) == ("completed", 100, 2, "t")


async def test_progress_only_grows_within_a_run(stream: Stream, make_mirror: MakeMirror) -> None:
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await stream.emit("active", job_id, a=1)
    await stream.emit("progress", job_id, p=60)
    await stream.emit("progress", job_id, p=20)
    await drain(mirror)
    assert (await row(job_id)).progress == 60


async def test_direct_final_status_survives_late_events(
    stream: Stream, make_mirror: MakeMirror
) -> None:
    """A handler finished its row directly; the mirror catching up must not undo it."""
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await st.create_job_status(job_id, "stock_analysis", "stock-1")
    await stream.emit("added", job_id, name="stock_analysis", st="waiting")
    await stream.emit("active", job_id, a=1)
    await stream.emit("progress", job_id, p=50)
    await st.update_job_status(job_id, status="completed")
    await drain(mirror)
    r = await row(job_id)
    assert (r.status, r.progress, r.attempts, r.related_id) == ("completed", 100, 1, "stock-1")
    await stream.emit("completed", job_id, a=1)
    await drain(mirror)
    assert (await row(job_id)).status == "completed"
    # The job removed and enqueued again under the same id: a new life.
    await stream.emit("removed", job_id)
    await stream.emit("added", job_id, name="stock_analysis", st="waiting")
    await drain(mirror)
    r = await row(job_id)
    assert (r.status, r.progress, r.attempts) == ("waiting", 0, 0)


async def test_batching_1000_events_in_two_transactions(
    stream: Stream, make_mirror: MakeMirror, redis_client: aioredis.Redis
) -> None:
    mirror = make_mirror([stream.queue], batch_size=500)
    jobs = [uid() for _ in range(250)]
    async with redis_client.pipeline(transaction=False) as pipe:
        for job_id in jobs:
            pipe.xadd(stream.key, {"ev": "added", "id": job_id, "name": "bulk", "st": "waiting"})
            pipe.xadd(stream.key, {"ev": "active", "id": job_id, "a": "1"})
            pipe.xadd(stream.key, {"ev": "progress", "id": job_id, "p": "50"})
            pipe.xadd(stream.key, {"ev": "completed", "id": job_id, "a": "1"})
        await pipe.execute()
    assert await drain(mirror) == 1000
    assert mirror.stats.transactions == 2
    assert mirror.stats.events == 1000
    assert await stream.pending() == 0
    rows = [await row(j) for j in jobs]
    assert {(r.status, r.progress, r.job_type) for r in rows} == {("completed", 100, "bulk")}


async def test_several_queues_one_mirror(
    redis_client: aioredis.Redis, prefix: str, make_mirror: MakeMirror
) -> None:
    a, b = Stream(redis_client, prefix, uid("qa")), Stream(redis_client, prefix, uid("qb"))
    mirror = make_mirror([a.queue, b.queue])
    ja, jb = uid(), uid()
    await a.emit("added", ja, name="one", st="waiting")
    await b.emit("added", jb, name="two", st="waiting")
    await b.emit("active", jb, a=1)
    assert await drain(mirror) == 3
    assert ((await row(ja)).queue, (await row(jb)).queue) == (a.queue, b.queue)
    assert (await row(jb)).status == "active"


@pytest.mark.parametrize("protocol", [2, 3])
async def test_resp2_and_resp3_clients(
    redis_url: str, prefix: str, make_mirror: MakeMirror, protocol: int
) -> None:
    client = aioredis.Redis.from_url(redis_url, protocol=protocol, decode_responses=protocol == 3)
    try:
        s = Stream(client, prefix, uid("q"))
        mirror = make_mirror([s.queue], redis=client)
        job_id = uid()
        await s.emit("added", job_id, name="p", st="waiting")
        await s.emit("completed", job_id, a=1)
        assert await drain(mirror) == 2
        assert (await row(job_id)).status == "completed"
        assert await s.pending() == 0
    finally:
        await client.aclose()


async def test_run_and_close(stream: Stream, make_mirror: MakeMirror) -> None:
    """run() applies events as they come and returns on close()."""
    mirror = make_mirror([stream.queue])
    task = asyncio.create_task(mirror.run())
    job_id = uid()
    await stream.emit("added", job_id, name="live", st="waiting")
    await stream.emit("active", job_id, a=1)

    async def active() -> bool:
        found = await st.get_job_status(job_id)
        return found is not None and found.status == "active"

    await wait_until(active, what="the live event to be mirrored")
    await asyncio.wait_for(mirror.close(), HANG)  # bounds a hang only
    await asyncio.wait_for(task, HANG)
    assert mirror.stats.failures == 0


def test_rejects_bad_configuration(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="queues"):
        StatusMirror(redis_client, [])
    with pytest.raises(ValueError, match="batch_size"):
        StatusMirror(redis_client, ["q"], batch_size=0)
