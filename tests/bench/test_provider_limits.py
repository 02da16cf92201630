"""Past a limit the next call is a `RateLimitError` whose `retry-after` is honoured: waiting it
makes the call succeed (the wait is the test's input, success the assertion). Outages answer
`OverloadedError` or drop the connection. The counters see all of it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import pytest
from provider_helpers import HANG, MODEL, MakeSim, retry_after, sdk, user, wait_until

from bench.provider import Limits, ManualClock, Stats

pytestmark = pytest.mark.integration

BIG = 1_000_000


async def test_past_the_rpm_a_429_whose_retry_after_is_exact(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(clock=clock, minute_seconds=60.0, limits=Limits(rpm=3, itpm=BIG, otpm=BIG))
    async with sdk(sim) as client:
        for i in range(3):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(f"q{i}"))
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("q3"))
        err = caught.value
        assert err.type == "rate_limit_error"
        assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert "(short: requests)" in str(err)
        wait = retry_after(err)
        assert wait == 20  # one request refills in 60 s / 3
        clock.advance(wait - 1)  # a second short: still limited
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("q3"))
        clock.advance(1)
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("q3"))
    stats = sim.stats()
    assert stats.rate_limited == 2
    assert stats.admitted == 4
    assert stats.models[MODEL].windows[0].requests == 4


async def test_retry_after_honoured_in_real_time(make_sim: MakeSim) -> None:
    # a scaled minute of 2 s with 2 requests: one comes back every second
    sim = await make_sim(minute_seconds=2.0, limits=Limits(rpm=2, itpm=BIG, otpm=BIG))
    async with sdk(sim) as client:
        limited = None
        for i in range(50):  # the bucket empties long before this bound on a hang
            try:
                await client.messages.create(model=MODEL, max_tokens=10, messages=user(f"{i}"))
            except anthropic.RateLimitError as exc:
                limited = exc
                break
        assert limited is not None
        await asyncio.sleep(retry_after(limited))
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("after"))


async def test_past_the_itpm_a_429_then_success_after_retry_after(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(
        clock=clock, minute_seconds=60.0, limits=Limits(rpm=100, itpm=300, otpm=BIG)
    )
    prompt = user("x" * 800)  # 200 input tokens
    async with sdk(sim) as client:
        await client.messages.create(model=MODEL, max_tokens=10, messages=prompt)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=prompt)
        assert "(short: input-tokens)" in str(caught.value)
        assert caught.value.response.headers["anthropic-ratelimit-input-tokens-remaining"] == "100"
        wait = retry_after(caught.value)
        assert wait == 20  # 100 tokens missing at 300 per 60 s
        clock.advance(wait)
        await client.messages.create(model=MODEL, max_tokens=10, messages=prompt)


async def test_output_is_reserved_at_max_tokens_and_settled_at_the_end(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(
        clock=clock,
        minute_seconds=60.0,
        limits=Limits(rpm=100, itpm=BIG, otpm=1000),
        output_median=20,
        output_sigma=0.0,
    )
    async with sdk(sim) as client:
        sim.hold()  # admitted replies wait: the first call stays in flight
        first = asyncio.create_task(
            client.messages.create(model=MODEL, max_tokens=600, messages=user("first"))
        )
        await wait_until(lambda: sim.stats().in_flight == 1, what="the first call in flight")
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=600, messages=user("second"))
        headers = caught.value.response.headers
        assert headers["anthropic-ratelimit-output-tokens-remaining"] == "400"
        assert "(short: output-tokens)" in str(caught.value)
        sim.release()
        done = await asyncio.wait_for(first, HANG)
        assert done.usage.output_tokens == 20
        # the unused 580 came back: the same call fits now, with no time passed
        await client.messages.create(model=MODEL, max_tokens=600, messages=user("second"))
        with pytest.raises(anthropic.RateLimitError, match="can never fit") as never:
            await client.messages.create(model=MODEL, max_tokens=1001, messages=user("huge"))
        assert retry_after(never.value) == 60
    stats = sim.stats()
    assert stats.never_fit == 1
    assert stats.models[MODEL].windows[0].output_tokens == 40


async def test_an_outage_answers_overloaded_then_ends(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(clock=clock, outage=(0.0, 30.0), outage_retry_after=5.0)
    async with sdk(sim) as client:
        with pytest.raises(anthropic.OverloadedError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
        assert caught.value.status_code == 529
        assert caught.value.type == "overloaded_error"
        assert retry_after(caught.value) == 5
        assert "anthropic-ratelimit-requests-remaining" in caught.value.response.headers
        clock.advance(28)  # 2 s left: retry-after says so
        with pytest.raises(anthropic.OverloadedError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
        wait = retry_after(caught.value)
        assert wait == 2
        clock.advance(wait)
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
        # an outage set while running, in the simulator's own time
        sim.set_outage(sim.now(), 10.0)
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("b"))
        sim.clear_outage()
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("b"))
    stats = sim.stats()
    assert stats.overloaded == 3
    assert stats.admitted == 2
    assert stats.models[MODEL].windows[0].overloaded == 3


async def test_an_outage_can_drop_connections(make_sim: MakeSim) -> None:
    sim = await make_sim(outage=(0.0, 3600.0), outage_drop_share=1.0)
    async with sdk(sim) as client:
        with pytest.raises(anthropic.APIConnectionError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
    assert sim.stats().dropped == 1
    assert sim.stats().overloaded == 0


async def test_outage_over_http_and_stats_over_http(make_sim: MakeSim, clock: ManualClock) -> None:
    sim = await make_sim(clock=clock, minute_seconds=10.0, limits=Limits(rpm=2, itpm=BIG, otpm=BIG))
    async with sdk(sim) as client, aiohttp.ClientSession() as http:
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("w0"))
        clock.advance(10.0)  # window 1
        for i in range(2):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user(f"w1 {i}"))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("w1 late"))
        async with http.post(f"{sim.base_url}/_sim/outage", json={"in": 0, "duration": 5}) as r:
            assert r.status == 200
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("w1 down"))
        async with http.post(f"{sim.base_url}/_sim/outage", json={"duration": -1}) as r:
            assert r.status == 400
        clock.advance(25.0)  # window 3 (window 2 saw nothing)
        async with http.get(f"{sim.base_url}/_sim/stats") as r:
            data = await r.json()
    stats = Stats.from_dict(data)
    assert stats.to_dict() == json.loads(json.dumps(sim.stats().to_dict()))
    assert stats.calls == 5
    assert (stats.admitted, stats.rate_limited, stats.overloaded) == (3, 1, 1)
    assert stats.full_windows == 3
    w = stats.models[MODEL].windows
    assert [x.requests for x in w] == [1, 2]
    assert [x.rate_limited for x in w] == [0, 1]
    assert [x.overloaded for x in w] == [0, 1]
    assert stats.models[MODEL].limits == Limits(rpm=2, itpm=BIG, otpm=BIG)
    assert w[1].input_tokens > 0 and w[1].output_tokens > 0


async def test_reset_starts_time_buckets_and_counters_over(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(clock=clock, minute_seconds=10.0, limits=Limits(rpm=1, itpm=BIG, otpm=BIG))
    async with sdk(sim) as client:
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("b"))
        clock.advance(25.0)
        sim.reset()
        assert sim.now() == 0.0
        assert sim.stats().calls == 0 and sim.stats().models == {}
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("b"))
    stats = sim.stats()
    assert (stats.calls, stats.admitted, stats.full_windows) == (1, 1, 0)
    assert stats.models[MODEL].windows[0].requests == 1


async def test_time_can_start_at_the_first_request(make_sim: MakeSim, clock: ManualClock) -> None:
    sim = await make_sim(clock=clock, minute_seconds=10.0, outage=(5.0, 10.0))
    sim.reset(at_first_request=True)
    clock.advance(30.0)  # clients starting up: no window passes, the outage has not begun
    async with sdk(sim) as client:
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("first"))
        assert sim.now() == 0.0
        clock.advance(5.0)
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("second"))
    assert [w.requests for w in sim.stats().models[MODEL].windows] == [1]
