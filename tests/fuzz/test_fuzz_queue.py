"""Bad input to `Queue` on a real Redis: odd queue names and job ids (colons, braces, spaces,
unicode, 10 KB), payloads that are not JSON, too large, NaN/inf or nested too deep, bad
delays and priorities, odd ids looked up, bad schedulers, flows and dedup keys. Each gets a
typed error whose message names the value (cut short), and the queue's keys are unchanged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fuzz_helpers import (
    BAD_NUMBERS,
    BIG,
    NOT_STR,
    ODD_TEXT,
    Unchanged,
    check_message,
    deeply_nested,
)
from fuzz_helpers_strategies import bad_job_ids, bad_job_names
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from jobqueue import (
    Child,
    ConfigError,
    Dedup,
    InvalidJobError,
    JobNotFoundError,
    PayloadTooLargeError,
    Queue,
    QueueConfig,
    Worker,
)
from jobqueue.core.keys import QUEUE_NAME_RE

pytestmark = pytest.mark.integration


@pytest.fixture
async def queue(redis_client: Redis, prefix: str) -> AsyncIterator[Queue]:
    """A queue with a few jobs in it already (a rejected call must not touch them either)."""
    q = Queue(QueueConfig("fuzz", max_payload=4096), redis=redis_client, prefix=prefix)
    await q.add("seed", {"n": 1})
    await q.add("seed", {"n": 2}, job_id="seed-2", delay=60)
    await q.upsert_scheduler("seed-sched", every=3600, name="seed")
    yield q
    await q.close()


@given(
    name=st.one_of(ODD_TEXT, NOT_STR).filter(
        lambda n: not (isinstance(n, str) and QUEUE_NAME_RE.match(n))
    )
)
def test_queue_names_are_refused(name: Any) -> None:
    with pytest.raises(ConfigError) as info:
        QueueConfig(name)
    check_message(info.value, name)
    with pytest.raises(ConfigError):
        Queue(name, redis="redis://127.0.0.1:1/0")  # refused before any connection


@given(
    prefix=st.one_of(ODD_TEXT, NOT_STR).filter(
        lambda p: not (isinstance(p, str) and QUEUE_NAME_RE.match(p) and len(p) <= 50)
    )
)
def test_prefixes_are_refused(prefix: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Queue("q", redis="redis://127.0.0.1:1/0", prefix=prefix)
    check_message(info.value, prefix)


@pytest.mark.parametrize(
    "url", ["http://x", "", "redis://h:notaport/0", BIG, "redis://:@/x?db=abc"]
)
def test_bad_redis_urls_are_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Queue("q", redis=url)
    check_message(info.value)


@given(job_id=bad_job_ids())
async def test_add_refuses_bad_job_ids(
    queue: Queue, redis_client: Redis, prefix: str, job_id: Any
) -> None:
    async with Unchanged(redis_client, prefix):
        with pytest.raises(InvalidJobError) as info:
            await queue.add("n", {}, job_id=job_id)
    check_message(info.value, job_id)


@given(name=bad_job_names())
async def test_add_refuses_bad_job_names(
    queue: Queue, redis_client: Redis, prefix: str, name: Any
) -> None:
    async with Unchanged(redis_client, prefix):
        with pytest.raises(InvalidJobError) as info:
            await queue.add(name, {})
    check_message(info.value, name)


NOT_JSON = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, {1, 2}, b"bytes", object(), {(1, 2): 3}]),
    st.lists(st.one_of(st.integers(), st.sampled_from([math.nan, math.inf])), min_size=1).map(
        lambda xs: [*xs, math.nan]
    ),
    st.dictionaries(st.text(max_size=5), st.just(math.inf), min_size=1),
    st.binary(min_size=1).map(lambda b: {"raw": b}),
    st.just(None).map(lambda _: deeply_nested()),
)


@given(data=NOT_JSON)
async def test_add_refuses_data_that_is_not_json(
    queue: Queue, redis_client: Redis, prefix: str, data: Any
) -> None:
    async with Unchanged(redis_client, prefix):
        with pytest.raises(InvalidJobError) as info:
            await queue.add("n", data)
    assert "job data" in str(info.value)
    check_message(info.value)


@given(size=st.integers(min_value=4097, max_value=200_000), text=st.text(min_size=1, max_size=3))
async def test_add_refuses_data_over_max_payload(
    queue: Queue, redis_client: Redis, prefix: str, size: int, text: str
) -> None:
    data = {"blob": (text * size)[:size]}
    async with Unchanged(redis_client, prefix):
        with pytest.raises(PayloadTooLargeError) as info:
            await queue.add("n", data)
    assert "4096" in str(info.value)
    check_message(info.value)


@given(
    option=st.sampled_from(["delay", "priority", "attempts", "group_concurrency"]),
    value=st.one_of(
        BAD_NUMBERS, st.integers(min_value=2**20 + 1), st.floats(min_value=4e8, allow_infinity=True)
    ),
)
async def test_add_refuses_bad_delays_priorities_and_attempts(
    queue: Queue, redis_client: Redis, prefix: str, option: str, value: Any
) -> None:
    kwargs: dict[str, Any] = {option: value}
    if option == "group_concurrency":
        kwargs["group"] = "g"
    if (
        option == "delay"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= 10 * 365 * 86400
    ):
        return  # a valid delay
    if option == "priority" and type(value) is int and abs(value) <= 2**20:
        return  # a valid priority
    if option in ("attempts", "group_concurrency") and (
        value is None or (type(value) is int and value >= 1)
    ):
        return  # valid
    async with Unchanged(redis_client, prefix):
        with pytest.raises(InvalidJobError) as info:
            await queue.add("n", {}, **kwargs)
    assert option.split("_")[0] in str(info.value)
    check_message(info.value)


@given(
    good=st.lists(st.tuples(st.just("ok"), st.integers()), min_size=1, max_size=5),
    bad=st.one_of(
        st.fixed_dictionaries({"name": st.just("n"), "data": st.just(math.nan)}),
        st.fixed_dictionaries({"name": st.just("n"), "job_id": st.just("a b")}),
        st.fixed_dictionaries({"name": st.just("n"), "delay": st.just(-1)}),
        st.fixed_dictionaries({"name": st.just("n"), "bogus": st.just(BIG)}),
        st.fixed_dictionaries({"data": st.just(1)}),
        st.just(("a", "b", "c")),
        st.just(5),
        st.just("a string"),
    ),
    where=st.integers(min_value=0, max_value=5),
)
async def test_add_bulk_is_all_or_nothing(
    queue: Queue, redis_client: Redis, prefix: str, good: list[Any], bad: Any, where: int
) -> None:
    specs: list[Any] = list(good)
    specs.insert(min(where, len(specs)), bad)
    async with Unchanged(redis_client, prefix):
        with pytest.raises(InvalidJobError) as info:
            await queue.add_bulk(specs)
    check_message(info.value)


@pytest.mark.parametrize("jobs", [None, 5, "abc", {"name": "n"}])
async def test_add_bulk_refuses_what_is_not_a_list_of_specs(queue: Queue, jobs: Any) -> None:
    with pytest.raises(InvalidJobError) as info:
        await queue.add_bulk(jobs)
    check_message(info.value)


@given(job_id=st.one_of(ODD_TEXT, st.sampled_from(["seed-2x", "999999", "j:1", "{fuzz}:1"])))
async def test_odd_ids_looked_up_are_not_found(
    queue: Queue, redis_client: Redis, prefix: str, job_id: str
) -> None:
    if job_id in ("seed-2", "1"):
        return
    async with Unchanged(redis_client, prefix):
        assert await queue.get_job(job_id) is None
        assert await queue.get_job_state(job_id) is None
        assert await queue.remove(job_id) is False
        assert await queue.cancel(job_id) == "not_found"
        assert await queue.cancel(job_id, children=True) == "not_found"
        assert await queue.get_job_logs(job_id) == []
        for op in (queue.retry_job, queue.promote, lambda i: queue.add_job_log(i, "line")):
            with pytest.raises(JobNotFoundError) as info:
                await op(job_id)
            check_message(info.value)


@given(job_id=NOT_STR)
async def test_ids_that_are_not_str_are_refused(
    queue: Queue, redis_client: Redis, prefix: str, job_id: Any
) -> None:
    async with Unchanged(redis_client, prefix):
        for op in (
            queue.get_job,
            queue.get_job_state,
            queue.remove,
            queue.cancel,
            queue.retry_job,
            queue.promote,
            queue.get_job_logs,
        ):
            with pytest.raises(InvalidJobError) as info:
                await op(job_id)
            assert "job_id" in str(info.value)


SCHEDULES = st.one_of(
    st.fixed_dictionaries({"every": st.one_of(BAD_NUMBERS, st.floats(min_value=4e8), st.just(0))}),
    st.fixed_dictionaries(
        {
            "cron": st.one_of(
                ODD_TEXT,
                NOT_STR,
                st.sampled_from(["0 0 30 2 *", "61 * * * *", "* * *", "0 0 31 4 *"]),
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "cron": st.just("0 6 * * *"),
            "tz": st.one_of(
                ODD_TEXT, NOT_STR, st.sampled_from(["Nope/X", "../../etc/passwd", "UTC\x00"])
            ),
        }
    ),
    st.fixed_dictionaries({"every": st.just(1), "cron": st.just("* * * * *")}),
    st.just({}),
)


@given(spec=SCHEDULES, scheduler_id=st.sampled_from(["s-ok", "a b", "{x}", "é", BIG, "", "a:b"]))
async def test_upsert_scheduler_refuses_bad_schedules(
    queue: Queue, redis_client: Redis, prefix: str, spec: dict[str, Any], scheduler_id: str
) -> None:
    if scheduler_id == "s-ok":
        tz = spec.get("tz", "UTC")
        if set(spec) == {"cron", "tz"} and tz in ("UTC",):
            return
        if "cron" in spec and set(spec) == {"cron"} and isinstance(spec["cron"], str):
            from croniter import croniter

            if (
                croniter.is_valid(spec["cron"])
                and spec["cron"] not in ("0 0 30 2 *", "0 0 31 4 *")
                and len(spec["cron"].split()) in (5, 6)
            ):
                return  # a valid expression
    async with Unchanged(redis_client, prefix):
        with pytest.raises(ConfigError) as info:
            await queue.upsert_scheduler(scheduler_id, name="n", **spec)
    check_message(info.value)


@given(
    bad=st.sampled_from(
        [
            {"children": []},
            {"children": "nope"},
            {"children": [5]},
            {"children": [Child(queue="fuzz", name="c", data=math.nan)]},
            {"children": [Child(queue="fuzz", name="c", job_id="a b")]},
            {
                "children": [
                    Child(queue="fuzz", name="c", job_id="dup"),
                    Child(queue="fuzz", name="c", job_id="dup"),
                ]
            },
            {"children": [Child(queue="fuzz", name="c", delay=-1)]},
            {"children": [Child(queue="fuzz", name="c", priority=2**30)]},
            {"children": [Child(queue="fuzz", name="c", on_failure="explode")]},  # type: ignore[arg-type]
            {"children": [Child(queue="fuzz", name=BIG)]},
            {"children": [Child(queue="other queue", name="c")]},
            {"children": [Child(queue="fuzz", name="c")], "job_id": "{p}"},
            {
                "children": [
                    Child(
                        queue="fuzz",
                        name="c",
                        children=[Child(queue="fuzz", name="g", data={"x": math.inf})],
                    )
                ]
            },
        ]
    )
)
async def test_add_flow_refuses_bad_trees_writing_nothing(
    queue: Queue, redis_client: Redis, prefix: str, bad: dict[str, Any]
) -> None:
    async with Unchanged(redis_client, prefix):
        with pytest.raises((InvalidJobError, ConfigError)) as info:
            await queue.add_flow("parent", {}, **bad)
    check_message(info.value)


@given(
    key=st.one_of(NOT_STR, st.sampled_from(["", BIG, "a\nb"])),
    ttl=st.one_of(st.none(), BAD_NUMBERS),
)
def test_dedup_refuses_bad_keys_and_windows(key: Any, ttl: Any) -> None:
    with pytest.raises(InvalidJobError) as info:
        Dedup(key, ttl=ttl)
    check_message(info.value)


@given(ttl=st.one_of(BAD_NUMBERS.filter(lambda v: v is not None), st.floats(min_value=4e8)))
def test_dedup_refuses_bad_windows(ttl: Any) -> None:
    with pytest.raises(InvalidJobError) as info:
        Dedup("key", ttl=ttl)
    check_message(info.value)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("get_job_ids", {"state": "bogus"}),
        ("get_job_ids", {"state": BIG}),
        ("get_job_ids", {"state": "waiting", "limit": -1}),
        ("get_job_logs", {"job_id": "seed-2", "start": "a"}),
        ("get_failed_jobs", {"limit": 0}),
        ("clean", {"state": "bogus", "grace": 1}),
        ("clean", {"state": "failed", "grace": math.nan}),
        ("retry_failed", {"limit": "all"}),
        ("cancel", {"job_id": "seed-2", "reason": 5}),
    ],
)
async def test_reads_and_operations_refuse_bad_options(
    queue: Queue, redis_client: Redis, prefix: str, method: str, kwargs: dict[str, Any]
) -> None:
    async with Unchanged(redis_client, prefix):
        with pytest.raises(ConfigError) as info:
            await getattr(queue, method)(**kwargs)
    check_message(info.value)


BAD_CHILDREN: list[Any] = [
    [],
    "nope",
    [5],
    [Child(queue="fuzz", name="c", data=math.nan)],
    [Child(queue="fuzz", name="c", job_id="a b")],
    [Child(queue="fuzz", name=BIG)],
    [Child(queue="fuzz", name="c", delay=-1)],
    [Child(queue="other queue", name="c")],
    [Child(queue="fuzz", name="c", children=[Child(queue="fuzz", name="g", data={"x": math.inf})])],
]


async def test_add_children_from_a_handler_refuses_bad_children(
    redis_client: Redis, prefix: str
) -> None:
    """`Job.add_children`, reachable only from a running handler: each bad list a typed error
    the handler sees, and no child written."""
    queue = Queue(QueueConfig("fuzz", drain_delay=0.05), redis=redis_client, prefix=prefix)
    seen: list[tuple[str, int]] = []

    async def handler(job: Any) -> str:
        for children in BAD_CHILDREN:
            try:
                await job.add_children(children)
            except (InvalidJobError, ConfigError) as exc:
                seen.append((type(exc).__name__, len(str(exc))))
            # anything else escapes: the job fails and the test with it
        return "done"

    worker = Worker(queue, handler, handle_signals=False)
    running = asyncio.create_task(worker.run())
    try:
        job = await queue.add("parent", {})
        assert await job.wait_until_finished(timeout=120) == "done"  # the bound: a hang
    finally:
        await worker.close()
        await asyncio.wait_for(running, 120)
        await queue.close()
    assert len(seen) == len(BAD_CHILDREN), seen
    assert all(size <= 1100 for _, size in seen), seen
    jobs = [k async for k in redis_client.scan_iter(match=f"{prefix}:*:jobs")]
    assert len(jobs) == 1, jobs
    fields = await redis_client.hkeys(jobs[0])
    assert fields == [job.id.encode()], fields  # the parent alone: no child written
    counts = await queue.get_job_counts()
    assert counts["waiting"] == counts["delayed"] == counts["waiting-children"] == 0, counts
