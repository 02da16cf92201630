"""`ProviderLimitGuard` on real Redis, a real worker and the real SDK against the local fake
Messages API: each call settles its job's reservation with the real usage, then the limiter
learns the provider's limits from the response headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fake_anthropic import API_KEY, HANG, FakeAnthropic
from pydantic import BaseModel

from jobqueue import Bucket, Job, JobState, Limiter, Queue, QueueConfig, Worker
from jobqueue.limits.state import LimiterState
from pipeline.ai import AnthropicLLM
from pipeline.ai.guard import GuardedLLM, job_scope
from pipeline.limit_guard import ProviderLimitGuard

pytestmark = pytest.mark.integration

# a bucket that refills so slowly (1 token in ~3 hours) that the test reads exact amounts
SLOW = 10_000_000.0
# the fake's usage: 1000 fresh input + 100 written to the cache (reads are free), 500 output
USED_INPUT, USED_OUTPUT = 1100, 500


class Verdict(BaseModel):
    approved: bool


def _limiter(**capacities: float | None) -> Limiter:
    return Limiter(
        "llm.guard-test",
        buckets={
            name: Bucket(capacities.get(name), per=SLOW)
            for name in ("requests", "input_tokens", "output_tokens")
        },
    )


async def _run_one(
    queue: Queue,
    llm: AnthropicLLM,
    call: Callable[[GuardedLLM], Awaitable[Any]],
) -> Job:
    """Add one job, run it with a handler that makes `call` through the guard, wait for its
    end."""
    guarded = GuardedLLM(llm, [ProviderLimitGuard({queue.config.name: queue})])

    async def handler(job: Job) -> str:
        with job_scope(None, job_id=job.id, attempt=job.attempts_made, stage=job.queue.name):
            await call(guarded)
        return "ok"

    job = await queue.add("call", {})
    worker = Worker(queue, handler, concurrency=1, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(HANG):
            while (await queue.get_job_state(job.id)) in (
                JobState.WAITING,
                JobState.ACTIVE,
                None,
            ):
                await asyncio.sleep(0.02)
    finally:
        await worker.close()
        await task
    return job


def _tokens(state: LimiterState) -> dict[str, tuple[float | None, float | None]]:
    return {b.name: (b.capacity, b.tokens) for b in state.buckets}


def _near(got: float | None, want: float) -> bool:
    # the buckets refill by a fraction of a token during the test
    return got is not None and want <= got < want + 1


@pytest.fixture
async def make_queue(redis_url: str, prefix: str) -> Any:
    """Queues under the test's prefix, obliterated at teardown."""
    made: list[Queue] = []

    def make(name: str, **options: Any) -> Queue:
        queue = Queue(QueueConfig(name, **options), redis=redis_url, prefix=prefix)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.obliterate(force=True)
        await queue.close()


@pytest.fixture
async def client(fake_anthropic: FakeAnthropic) -> Any:
    llm = AnthropicLLM(API_KEY, base_url=fake_anthropic.base_url, timeout=HANG)
    yield llm
    await llm.aclose()


async def test_a_call_settles_its_reservation_with_the_real_usage(
    make_queue: Any, client: AnthropicLLM
) -> None:
    cost = {"requests": 1, "input_tokens": 5000, "output_tokens": 16000}
    queue = make_queue(
        "settle-q",
        limiter=_limiter(requests=50, input_tokens=30000, output_tokens=32000),
        cost=cost,
    )
    await _run_one(queue, client, lambda llm: llm.complete(tier="research", system="s", prompt="p"))
    state = _tokens(await queue.get_limiter_state())
    # the reservation (5000 in, 16000 out) came back; the call's real usage was charged
    assert _near(state["input_tokens"][1], 30000 - USED_INPUT), state
    assert _near(state["output_tokens"][1], 32000 - USED_OUTPUT), state
    assert _near(state["requests"][1], 49), state


async def test_the_limiter_learns_capacities_and_remaining_from_the_headers(
    make_queue: Any, fake_anthropic: FakeAnthropic, client: AnthropicLLM
) -> None:
    fake_anthropic.ratelimit_headers = {
        "anthropic-ratelimit-requests-limit": "40",
        "anthropic-ratelimit-requests-remaining": "39",
        "anthropic-ratelimit-input-tokens-limit": "20000",
        "anthropic-ratelimit-input-tokens-remaining": "12000",  # someone else spends the key
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "7500",
    }
    fake_anthropic.structured_json = '{"approved": true}'
    queue = make_queue("learn-q", limiter=_limiter(), cost={"requests": 1, "input_tokens": 900})
    before = _tokens(await queue.get_limiter_state())
    assert before["input_tokens"] == (None, None)  # nothing configured: unknown
    await _run_one(
        queue,
        client,
        lambda llm: llm.structured(tier="judge", system="s", prompt="p", schema=Verdict),
    )
    state = await queue.get_limiter_state()
    got = _tokens(state)
    assert got["requests"][0] == 40 and got["input_tokens"][0] == 20000
    assert got["output_tokens"][0] == 8000
    assert _near(got["input_tokens"][1], 12000), got  # lowered to the provider's count
    assert _near(got["requests"][1], 39), got
    assert all(b.learned for b in state.buckets)


async def test_a_429_gives_the_reservation_back_and_teaches_what_is_left(
    make_queue: Any, fake_anthropic: FakeAnthropic, client: AnthropicLLM
) -> None:
    fake_anthropic.ratelimit_headers = {
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "25000",
    }
    fake_anthropic.enqueue("429")
    queue = make_queue(
        "limited-q",
        limiter=_limiter(requests=50, input_tokens=30000, output_tokens=32000),
        cost={"requests": 1, "input_tokens": 2000, "output_tokens": 16000},
    )
    job = await _run_one(
        queue, client, lambda llm: llm.complete(tier="research", system="s", prompt="p")
    )
    assert await queue.get_job_state(job.id) == JobState.DELAYED  # deferred, not failed
    got = _tokens(await queue.get_limiter_state())
    assert _near(got["output_tokens"][1], 32000), got  # refunded: nothing was used
    assert _near(got["requests"][1], 50), got
    assert _near(got["input_tokens"][1], 25000), got  # then lowered to the provider's


async def test_a_dropped_call_keeps_its_reservation(
    make_queue: Any, fake_anthropic: FakeAnthropic, client: AnthropicLLM
) -> None:
    # the provider may have counted a call whose answer never came: nothing is given back
    fake_anthropic.enqueue("drop")
    queue = make_queue(
        "dropped-q",
        limiter=_limiter(requests=50, input_tokens=30000, output_tokens=32000),
        cost={"requests": 1, "input_tokens": 2000, "output_tokens": 16000},
        attempts=1,
    )
    await _run_one(queue, client, lambda llm: llm.complete(tier="research", system="s", prompt="p"))
    got = _tokens(await queue.get_limiter_state())
    assert _near(got["input_tokens"][1], 28000), got
    assert _near(got["output_tokens"][1], 16000), got


async def test_a_prompt_bigger_than_the_reservation_waits_for_the_buckets(
    make_queue: Any,
    fake_anthropic: FakeAnthropic,
    client: AnthropicLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 2,000 characters are ~572 tokens; the job reserved none, and the bucket is empty: the
    # guard holds them and the call waits until they have flowed in (1,000 a second)
    queue = make_queue(
        "hold-q",
        limiter=Limiter("llm.hold", buckets={"input_tokens": Bucket(1000, per=1.0)}),
        cost={"input_tokens": 0},
    )
    await queue.learn_limit("input_tokens", remaining=0)
    caplog.set_level("INFO", logger="pipeline.limit_guard")
    job = await _run_one(
        queue,
        client,
        lambda llm: llm.complete(tier="format", system="s", prompt="p" * 2000),
    )
    assert await queue.get_job_state(job.id) == JobState.COMPLETED
    assert any("waits" in r.getMessage() for r in caplog.records)
    assert len(fake_anthropic.requests) == 1


async def test_a_prompt_that_can_never_fit_is_not_sent(
    make_queue: Any, fake_anthropic: FakeAnthropic, client: AnthropicLLM
) -> None:
    queue = make_queue(
        "never-q",
        limiter=Limiter("llm.never", buckets={"input_tokens": Bucket(100, per=60.0)}),
        cost={"input_tokens": 10},
    )
    job = await _run_one(
        queue,
        client,
        lambda llm: llm.complete(tier="format", system="s", prompt="p" * 2000),
    )
    assert await queue.get_job_state(job.id) == JobState.FAILED
    failed = await queue.get_job(job.id)
    assert failed is not None and failed.error_type == "VALIDATION_ERROR"
    assert "can never fit" in (failed.error_message or "")
    assert fake_anthropic.requests == []  # nothing was sent


def test_expected_input_leaves_out_a_prefix_cached_recently() -> None:
    from pipeline.ai.base import PromptBlock
    from pipeline.ai.guard import LLMCall
    from pipeline.limit_guard import _prefixes, expected_input

    call = LLMCall(
        kind="complete",
        tier="analysis",
        model="claude-opus-5-5",
        system=PromptBlock("s" * 350, cache="1h"),
        context=(PromptBlock("r" * 3500, cache="5m"),),
        prompt="p" * 70,
        max_tokens=100,
    )
    assert expected_input(call, {}, now=0.0) == 100 + 1000 + 20  # nothing cached: all of it
    [(system_key, system_tokens, ttl_1h), (research_key, tokens, ttl_5m)] = _prefixes(call)
    assert (system_tokens, tokens, ttl_1h, ttl_5m) == (100, 1100, 3600.0, 300.0)
    assert expected_input(call, {research_key: 10.0}, now=5.0) == 20  # read from the cache
    assert expected_input(call, {system_key: 10.0}, now=5.0) == 1000 + 20
    assert expected_input(call, {research_key: 10.0}, now=11.0) == 1120  # expired
