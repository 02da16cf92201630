"""Pure unit tests: configuration validation, key names, job encoding."""

from __future__ import annotations

import pytest

from jobqueue import ConfigError, ErrorType, InvalidJobError, QueueConfig, QueueKeys, RateLimit
from jobqueue.core.codec import decode_envelope, dumps
from jobqueue.core.keys import validate_prefix, validate_queue_name


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"attempts": 0}, "attempts"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": -1}, "timeout"),
        ({"lease": 0.001}, "lease"),
        ({"jitter": 2.0}, "jitter"),
        ({"retry_delays": {"NOPE": 1.0}}, "NOPE"),
        ({"keep_completed": (1,)}, "keep_completed"),
        ({"backoff": float("nan")}, "backoff"),
        ({"max_stalls": -1}, "max_stalls"),
    ],
)
def test_bad_config_names_the_value(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        QueueConfig("q", **options)  # type: ignore[arg-type]


def test_config_defaults_and_derived_values() -> None:
    cfg = QueueConfig("q", retry_delays={ErrorType.NETWORK_ERROR: 0.01}, backoff=2.0)
    assert cfg.attempts == 3 and cfg.lease == 30.0
    assert cfg.stall_check_every == 15.0
    assert cfg.effective_retry_delays[ErrorType.NETWORK_ERROR] == 0.01
    assert cfg.effective_retry_delays[ErrorType.UNKNOWN] == 2.0
    assert cfg.retention_ms == (1000, 86_400_000, 200, 604_800_000)
    assert QueueConfig("q", keep_completed=(None, None)).retention_ms[:2] == (-1, -1)
    with pytest.raises(TypeError):
        QueueConfig("q", 5)  # type: ignore[misc]  # options are keyword-only


def test_rate_limit_validation() -> None:
    assert RateLimit(max=5, per=60.0).max == 5
    with pytest.raises(ConfigError, match="max"):
        RateLimit(max=0, per=1.0)
    with pytest.raises(ConfigError, match="per"):
        RateLimit(max=1, per=0)


@pytest.mark.parametrize("name", ["", "a b", "{x}", "a:b", "x" * 101, "-lead"])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_queue_name(name)


def test_keys_share_one_hash_tag() -> None:
    k = QueueKeys("jq", "emails")
    assert validate_prefix("jq") == "jq"
    names = [
        k.wait,
        k.prio,
        k.delayed,
        k.active,
        k.completed,
        k.failed,
        k.events,
        k.meta,
        k.limiter,
        k.limited,
        k.marker,
        k.jobs,
        k.legacy_job("1"),
        k.wake("host:1:ab"),
        k.state("1"),
        k.logs("1"),
    ]
    assert all(n.startswith("jq:{emails}:") for n in names)
    assert len(set(names)) == len(names)


def test_strict_json() -> None:
    assert dumps({"a": [1, "é"]}, limit=100, what="x") == '{"a":[1,"é"]}'
    for bad in (float("nan"), {1}, object()):
        with pytest.raises(InvalidJobError):
            dumps(bad, limit=100, what="x")
    with pytest.raises(InvalidJobError):
        decode_envelope(b"[1, 2]")
    assert decode_envelope('{"n": "x", "d": 1}')["d"] == 1
