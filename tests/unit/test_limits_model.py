"""Shared limiters as values: validation with errors that name the bad value, and the encoding
the scripts read (and `decode_limiter`, its inverse, used by inspect)."""

from __future__ import annotations

import pytest

from jobqueue import Breaker, Bucket, ConfigError, Limiter, QueueConfig
from jobqueue.limits.model import encode_cost, parse_cost
from jobqueue.limits.state import decode_limiter


def test_encoding_round_trips() -> None:
    limiter = Limiter(
        "llm.opus",
        {"requests": Bucket(50, per=60), "input_tokens": Bucket(None, per=60)},
        Breaker(failures=3, window=10, cooldown=2.5, max_wait=600),
    )
    assert limiter.encode_buckets() == "input_tokens=/60000,requests=50/60000"
    assert limiter.encode_breaker() == "3/10000/2500/600000"
    back = decode_limiter(limiter.name, limiter.encode_buckets(), limiter.encode_breaker())
    assert back == limiter
    assert parse_cost(encode_cost({"requests": 1, "input_tokens": 812.5})) == {
        "requests": 1.0,
        "input_tokens": 812.5,
    }


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Limiter("bad name"), "bad name"),
        (lambda: Limiter("x", {"Requests": Bucket(1)}), "Requests"),
        (lambda: Limiter("x", {"r": 5}), "r"),  # type: ignore[dict-item]
        (lambda: Bucket(-1), "-1"),
        (lambda: Bucket(1, per=0), "per"),
        (lambda: Breaker(failures=0), "failures"),
        (lambda: Breaker(cooldown=float("inf")), "cooldown"),
        (lambda: Limiter("x", {f"b{i}": Bucket(1) for i in range(9)}), "at most 8"),
        (lambda: encode_cost({"r": -2}), "-2"),
        (lambda: QueueConfig("q", cost={"r": 1}), "needs a limiter"),
        (lambda: QueueConfig("q", limiter=Limiter("l", {"r": Bucket(1)}), cost={"s": 1}), "'s'"),
    ],
)
def test_bad_values_are_refused_naming_them(make: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        make()  # type: ignore[operator]


def test_a_queue_on_a_limiter_lives_in_its_slot() -> None:
    from jobqueue import Queue

    q = Queue(QueueConfig("emails", limiter=Limiter("llm")), redis="redis://127.0.0.1:1/0")
    assert q.keys.slot == "llm" and q.keys.meta == "jq:{llm}emails:meta"
    limits = q.config.take_limits("w1")
    assert (limits.limiter, limits.buckets, limits.breaker) == ("llm", "", "")
