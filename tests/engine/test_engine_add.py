"""Lua contract tests of adding one job: what `add` and `add_plain` store, the job `Queue.add`
returns, and the input they refuse with nothing written, on Redis 7, Valkey and fakeredis.

The scripts' other transitions (take, finish, leases, limits, retention, events) are in
test_engine_contracts.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from engine_helpers import stream_events

from jobqueue import InvalidJobError, JobState, PayloadTooLargeError

pytestmark = pytest.mark.integration

NO_JOBS = dict.fromkeys(
    ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children"), 0
)
"""`get_job_counts()` of an empty queue."""


async def test_add_get_and_counts(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("greet", {"who": "world"})
    assert job.state == JobState.WAITING
    got = await q.get_job(job.id)
    assert got is not None and got.data == {"who": "world"} and got.name == "greet"
    assert got.created_at is not None
    assert await q.get_job("nope") is None
    assert await q.get_job_counts() == {**NO_JOBS, "waiting": 1}


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({"a": [1, (2, 3)], "b": None}, {"a": [1, [2, 3]], "b": None}),
        # flat: copied as it is, not parsed back (the same keys, values and types)
        (
            {"a": 1, "b": None, "c": 2.5, "d": "é", "e": True},
            {"a": 1, "b": None, "c": 2.5, "d": "é", "e": True},
        ),
        ({1: "a", "b": None}, {"1": "a", "b": None}),
        ({"a": 1, "b": None, "t": (1,)}, {"a": 1, "b": None, "t": [1]}),
        ((1, "x"), [1, "x"]),
        ("text", "text"),
        (7, 7),
        (2.5, 2.5),
        (True, True),
        (None, None),
    ],
)
async def test_a_job_added_has_the_data_the_handler_will_read(
    make_queue: Any, data: Any, stored: Any
) -> None:
    # a name and data only (most adds) and the same with an option (the general path): the job
    # returned holds its data as JSON gives it back, a copy of what was given
    q = make_queue()
    data = copy.deepcopy(data)  # the parameter is shared by the backends: changed below
    plain = await q.add("x", data)
    general = await q.add("x", data, attempts=2)
    for job in (plain, general):
        assert job.data == stored and type(job.data) is type(stored)
        if isinstance(stored, dict):
            assert [type(v) for v in job.data.values()] == [type(v) for v in stored.values()]
        assert job.state == JobState.WAITING and job.name == "x" and job.attempts_made == 0
        got = await q.get_job(job.id)
        assert got is not None and got.data == stored
    if isinstance(data, dict):
        data["b"] = "changed later"
        assert plain.data["b"] is None
    assert (plain.max_attempts, general.max_attempts) == (q.config.attempts, 2)


async def test_a_plain_add_validates_as_any_add(make_queue: Any) -> None:
    q = make_queue()
    for bad in ("", "a\nb", 3, ["x"], "n" * 201):
        with pytest.raises(InvalidJobError, match="job name"):
            await q.add(bad, {})
    with pytest.raises(InvalidJobError, match="delay"):
        await q.add("x", {}, delay=False)
    with pytest.raises(InvalidJobError, match="priority"):
        await q.add("x", {}, priority=False)
    with pytest.raises(InvalidJobError, match="not JSON"):
        await q.add("x", {"t": {1, 2}})
    with pytest.raises(InvalidJobError, match="job name"):  # the name is checked first
        await q.add("", {"t": {1, 2}})
    assert await q.get_job_counts() == NO_JOBS


async def test_a_plain_add_writes_what_the_general_add_writes(make_queue: Any) -> None:
    # `add` with a name and data only runs add_plain.lua (its command packed once but for the
    # name and data, on the fast path), the same job in a batch runs add.lua: both leave the
    # same envelope, list entry and event
    q = make_queue()
    name, data = "café ✓", {"é": "ü", "n": [1, 2.5, None]}
    plain = await q.add(name, data)
    (general,) = await q.add_bulk([(name, data)])
    assert int(general.id) == int(plain.id) + 1
    assert await q.redis.lrange(q.keys.wait, 0, -1) == [plain.id.encode(), general.id.encode()]
    stored = [await q.redis.hget(q.keys.jobs, job.id) for job in (plain, general)]
    bodies = [json.loads(body) for body in stored]
    assert all(isinstance(body.pop("ts"), int) for body in bodies)
    assert bodies[0] == bodies[1] == {"n": name, "d": data}
    added = [e for e in await stream_events(q) if e["ev"] == "added"]
    assert [e.pop("id") for e in added] == [plain.id, general.id]
    assert all(e.pop("ts") for e in added)
    assert added == [{"ev": "added", "name": name, "st": "waiting"}] * 2
    for job in (plain, general):
        got = await q.get_job(job.id)
        assert got is not None and (got.name, got.data) == (name, data)


async def test_a_plain_add_on_a_hand_written_id_writes_nothing(make_queue: Any) -> None:
    # the counter's ids cannot be given (digits only are refused), so only a key written by
    # hand can hold the next one: the add returns that job and writes nothing of its own
    q = make_queue()
    first = await q.add("x", 1)
    taken = str(int(first.id) + 1)
    await q.redis.hset(q.keys.jobs, taken, json.dumps({"n": "by-hand", "d": 0, "ts": 1}))
    stream = await q.redis.xlen(q.keys.events)
    job = await q.add("x", 2)
    assert (job.id, job.name, job.data) == (taken, "by-hand", 0)
    assert await q.redis.lrange(q.keys.wait, 0, -1) == [first.id.encode()]
    assert await q.redis.xlen(q.keys.events) == stream
    assert (await q.add("x", 3)).id == str(int(taken) + 1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"job_id": "bad id"}, InvalidJobError),
        ({"job_id": "123"}, InvalidJobError),
        ({"job_id": "x" * 201}, InvalidJobError),
        ({"delay": -1}, InvalidJobError),
        ({"delay": float("nan")}, InvalidJobError),
        ({"priority": 2**21}, InvalidJobError),
        ({"attempts": 0}, InvalidJobError),
    ],
)
async def test_bad_options_write_nothing(
    make_queue: Any, kwargs: dict[str, Any], error: type
) -> None:
    q = make_queue()
    with pytest.raises(error):
        await q.add("x", {"ok": 1}, **kwargs)
    assert await q.redis.keys(q.keys.base + "*") == []


@pytest.mark.parametrize(
    "data",
    [float("nan"), {1, 2}, object(), {"x": float("inf")}, "lone \udc80", {"\ud800": 1}],
)
async def test_bad_data_writes_nothing(make_queue: Any, data: Any) -> None:
    q = make_queue()
    with pytest.raises(InvalidJobError):
        await q.add("x", data)
    with pytest.raises(InvalidJobError):
        await q.add_bulk([("ok", 1), ("x", data)])
    assert await q.redis.keys(q.keys.base + "*") == []


async def test_payload_limit(make_queue: Any) -> None:
    q = make_queue(max_payload=100)
    await q.add("x", "a" * 98)  # 100 bytes of JSON with the quotes: at the limit
    with pytest.raises(PayloadTooLargeError):
        await q.add("x", "a" * 99)
