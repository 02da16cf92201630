"""Several shared limiters (and plain queues) in one Redis Cluster hash slot
(`QueueConfig(slot=...)`): key names of both layouts, no collision, one CRC16 slot per script
call. No Redis needed."""

from __future__ import annotations

import fnmatch

import pytest
from redis.crc import key_slot

from jobqueue import Limiter, Queue, QueueConfig
from jobqueue.core.keys import QueueKeys, keys_from_key, queue_scan_patterns
from jobqueue.core.scripts import SPECS
from jobqueue.errors import ConfigError

_LIMITER_KEYS = ("shared_limiter", "shared_hold", "breaker", "breaker_fails")


def _crc(key: str) -> int:
    return int(key_slot(key.encode()))


def _call_keys(keys: QueueKeys, script: str) -> list[str]:
    """Every key a call of `script` on this queue passes (and the job keys it builds)."""
    out = []
    for name in SPECS[script].keys:
        value = getattr(keys, name.removesuffix("(id)"))
        out.append(value("7") if name.endswith("(id)") else value)
    return [*out, keys.jobs, keys.legacy_job("7"), keys.state("7"), keys.logs("7")]


def test_a_limiter_named_after_its_slot_keeps_its_key_names() -> None:
    # the layout before slots could be shared: no migration for existing users
    keys = QueueKeys("jq", "research", slot="anthropic.opus", limiter_name="anthropic.opus")
    assert keys == QueueKeys("jq", "research", "anthropic.opus", "anthropic.opus")
    assert keys.shared_limiter == "jq:{anthropic.opus}!limiter"
    assert keys.shared_hold == "jq:{anthropic.opus}!hold"
    assert keys.breaker == "jq:{anthropic.opus}!breaker"
    assert keys.breaker_fails == "jq:{anthropic.opus}!fails"
    assert keys.base == "jq:{anthropic.opus}research:"
    # and so do the keys built without the limiter's name (discovery, old callers)
    bare = QueueKeys("jq", "research", slot="anthropic.opus")
    assert [getattr(bare, k) for k in _LIMITER_KEYS] == [getattr(keys, k) for k in _LIMITER_KEYS]
    # a queue on its own keeps its own names
    assert QueueKeys("jq", "emails").shared_limiter == "jq:{emails}!limiter"


def test_a_limiter_in_another_slot_has_its_name_in_its_keys() -> None:
    keys = QueueKeys("jq", "research", slot="pipeline", limiter_name="anthropic.opus")
    assert keys.base == "jq:{pipeline}research:"
    assert keys.shared_limiter == "jq:{pipeline}!anthropic.opus!limiter"
    assert keys.shared_hold == "jq:{pipeline}!anthropic.opus!hold"
    assert keys.breaker == "jq:{pipeline}!anthropic.opus!breaker"
    assert keys.breaker_fails == "jq:{pipeline}!anthropic.opus!fails"


def _queue_keys(name: str, limiter: Limiter | None) -> QueueKeys:
    """The keys `Queue` builds for a queue of the `pipeline` slot."""
    config = QueueConfig(name, limiter=limiter, slot="pipeline")
    return Queue(config, redis="redis://127.0.0.1:1/0").keys


def _every_key(keys: QueueKeys) -> set[str]:
    names = {s for s in SPECS.values() for s in s.keys}
    out = set()
    for name in names:
        value = getattr(keys, name.removesuffix("(id)"))
        out.add(value("7") if name.endswith("(id)") else value)
    return out | {
        keys.jobs,
        keys.legacy_job("7"),
        keys.state("7"),
        keys.logs("7"),
        keys.dependencies("7"),
    }


def test_queues_and_limiters_of_one_slot_never_collide() -> None:
    # queues on two limiters, one on the slot's namesake, one on none, one on a limiter named
    # like a queue: each limiter's keys are shared by its queues only, queue keys by nobody
    slot = "pipeline"
    queues = {
        "research": "opus",
        "analysis": "opus",
        "ranking": "sonnet",
        "format": None,
        "judge": "pipeline",
        "opus": "research",
    }
    all_keys = {q: QueueKeys("jq", q, slot, lim) for q, lim in queues.items()}
    own = {q: _every_key(k) - {getattr(k, n) for n in _LIMITER_KEYS} for q, k in all_keys.items()}
    for a in own:
        for b in own:
            if a != b:
                assert own[a].isdisjoint(own[b]), (a, b)
                assert not all_keys[b].base.startswith(all_keys[a].base)
    limiter_keys = {
        q: {getattr(k, n) for n in _LIMITER_KEYS} for q, k in all_keys.items() if queues[q]
    }
    for a, ka in limiter_keys.items():
        for b, kb in limiter_keys.items():
            assert (ka == kb) == (queues[a] == queues[b]), (a, b)
            assert ka.isdisjoint(own[b])
    assert all_keys["research"].shared_limiter == all_keys["analysis"].shared_limiter
    # every one of them hashes to the slot's tag
    assert {_crc(k) for ks in own.values() for k in ks} == {_crc("{pipeline}")}
    assert {_crc(k) for ks in limiter_keys.values() for k in ks} == {_crc("{pipeline}")}


@pytest.mark.parametrize("script", sorted(SPECS))
def test_every_key_of_a_call_on_two_limiters_is_in_one_cluster_slot(script: str) -> None:
    opus = _queue_keys("research", Limiter("anthropic.opus"))
    sonnet = _queue_keys("ranking", Limiter("anthropic.sonnet"))
    plain = _queue_keys("format", None)
    slots = {_crc(k) for keys in (opus, sonnet, plain) for k in _call_keys(keys, script)}
    assert slots == {_crc("jq:{pipeline}x")}
    # while the limiters keep separate buckets, holds and breakers
    for name in _LIMITER_KEYS:
        assert getattr(opus, name) != getattr(sonnet, name)


def test_queue_config_slot() -> None:
    lim = Limiter("anthropic.opus")
    assert QueueConfig("q").hash_slot is None
    assert QueueConfig("q", limiter=lim).hash_slot == "anthropic.opus"
    assert QueueConfig("q", limiter=lim, slot="pipeline").hash_slot == "pipeline"
    assert QueueConfig("q", slot="pipeline").hash_slot == "pipeline"
    for bad in ("", "a b", "{x}", "a!b", "a:b", "x" * 101, 3):
        with pytest.raises(ConfigError, match="slot"):
            QueueConfig("q", slot=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        QueueConfig("q", None, None, 3, 5.0, None, 3600.0, 0.0, None, None, "s")  # type: ignore[misc]


def test_discovery_parses_a_queue_of_a_shared_slot() -> None:
    keys = QueueKeys("jq", "research", "pipeline", "anthropic.opus")
    found = keys_from_key("jq", keys.meta)
    assert found is not None and (found.queue, found.slot) == ("research", "pipeline")
    # the limiter's keys are never taken for a queue's
    for name in _LIMITER_KEYS:
        assert keys_from_key("jq", getattr(keys, name)) is None
    assert any(fnmatch.fnmatchcase(keys.meta, p) for p in queue_scan_patterns("jq"))
    assert not any(
        fnmatch.fnmatchcase(getattr(keys, n), p)
        for n in _LIMITER_KEYS
        for p in queue_scan_patterns("jq")
    )
