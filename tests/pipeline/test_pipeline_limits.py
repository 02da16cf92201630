"""The pipeline's shared limits: one limiter per model from the settings, every stage's cost,
and what a whole offline run reserves and settles."""

from __future__ import annotations

import os
from typing import Any

import pydantic
import pytest
from pipeline_helpers import wait_row

from jobqueue import Breaker, Bucket, Queue, RateLimit
from pipeline.ai.guard import LLMCall
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.provider_limits import (
    BUCKETS,
    COMPLETE_MAX_TOKENS,
    STAGE_CALLS,
    STRUCTURED_MAX_TOKENS,
    stage_cost,
)
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings
from pipeline.stages.base import STEP_CALLS


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What these tests set is all the environment says about the pipeline."""
    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)


def test_by_default_every_stage_spends_its_models_shared_limiter() -> None:
    settings = Settings()
    configs = {t: settings.queue_config(t) for t in JOB_TYPES}
    names = {t: c.limiter.name for t, c in configs.items() if c.limiter is not None}
    assert names == {
        "sector-research": "anthropic.claude-opus-5-5",
        "stock-ranking": "anthropic.claude-sonnet-5-5",
        "stock-analysis": "anthropic.claude-opus-5-5",
        "judge-review": "anthropic.claude-sonnet-5-5",
        "format-insights": "anthropic.claude-haiku-5-5",
    }
    analysis = configs["stock-analysis"]
    assert analysis.limiter is not None
    # nothing configured: the capacities are learned from the provider's headers
    assert dict(analysis.limiter.buckets) == {b: Bucket(None, per=60.0) for b in BUCKETS}
    assert analysis.limiter.breaker == Breaker(failures=5, window=30, cooldown=30, max_wait=3600)
    assert analysis.rate_limit is None  # no per-queue job-start bucket beside it
    assert dict(analysis.cost or {}) == {
        "requests": 1,
        "input_tokens": 1200,
        "output_tokens": COMPLETE_MAX_TOKENS,
    }
    research = configs["sector-research"]
    assert dict(research.cost or {})["requests"] == 2
    assert dict(research.cost or {})["output_tokens"] == COMPLETE_MAX_TOKENS + STRUCTURED_MAX_TOKENS
    # one limiter value per model: queues on it agree on its buckets and breaker
    assert research.limiter == analysis.limiter


def test_every_stage_queue_shares_one_hash_slot_with_one_limiter_per_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one slot, so one flow may span the stages; each model keeps its own limiter (buckets,
    # 429 hold, breaker) in it
    queues = {
        t: Queue(Settings().queue_config(t), redis="redis://127.0.0.1:1/0") for t in JOB_TYPES
    }
    assert {q.config.slot for q in queues.values()} == {"pipeline"}
    assert {_crc(k) for q in queues.values() for k in (q.keys.wait, q.keys.breaker)} == {
        _crc("{pipeline}")
    }
    breakers = {t: q.keys.breaker for t, q in queues.items()}
    assert breakers["sector-research"] == breakers["stock-analysis"]
    assert breakers["stock-ranking"] == breakers["judge-review"]
    assert len(set(breakers.values())) == 3
    assert breakers["sector-research"].endswith(":{pipeline}!anthropic.claude-opus-5-5!breaker")
    # per-queue mode: the same slot, no limiter
    monkeypatch.setenv("PIPELINE_LIMITS", "per-queue")
    configs = [Settings().queue_config(t) for t in JOB_TYPES]
    assert {(c.slot, c.limiter) for c in configs} == {("pipeline", None)}
    # another slot; never none: a run's flows span the stage queues, and a flow is one slot
    monkeypatch.setenv("PIPELINE_SLOT", "sectors-2")
    assert Settings().queue_config("judge-review").hash_slot == "sectors-2"
    monkeypatch.setenv("PIPELINE_SLOT", "")
    with pytest.raises(pydantic.ValidationError, match="PIPELINE_SLOT cannot be empty"):
        Settings()


def _crc(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


def test_per_queue_mode_keeps_the_seeds_job_start_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_LIMITS", "per-queue")
    config = Settings().queue_config("judge-review")
    assert config.limiter is None and config.cost is None
    assert config.rate_limit == RateLimit(max=20, per=60.0)


def test_a_job_start_bucket_asked_for_runs_beside_the_shared_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_QUEUES__JUDGE_REVIEW__RATE_MAX", "7")
    monkeypatch.setenv("PIPELINE_QUEUES__JUDGE_REVIEW__INPUT_TOKENS", "3000")
    monkeypatch.setenv("PIPELINE_QUEUES__JUDGE_REVIEW__OUTPUT_TOKENS", "900")
    settings = Settings()
    judge = settings.queue_config("judge-review")
    assert judge.limiter is not None and judge.rate_limit == RateLimit(max=7, per=60.0)
    assert dict(judge.cost or {}) == {"requests": 1, "input_tokens": 3000, "output_tokens": 900}
    assert settings.queue_config("format-insights").rate_limit is None


def test_limits_window_breaker_and_starting_capacities_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_LIMIT_WINDOW", "10")
    monkeypatch.setenv("PIPELINE_LIMITER_NAMESPACE", "org-2")
    monkeypatch.setenv(
        "PIPELINE_MODEL_LIMITS", '{"claude-haiku-5-5": {"requests": 50, "input_tokens": 50000}}'
    )
    monkeypatch.setenv("PIPELINE_BREAKER_FAILURES", "3")
    monkeypatch.setenv("PIPELINE_BREAKER_COOLDOWN", "2.5")
    settings = Settings()
    limiter = settings.queue_config("format-insights").limiter
    assert limiter is not None and limiter.name == "org-2.claude-haiku-5-5"
    assert dict(limiter.buckets) == {
        "requests": Bucket(50, per=10.0),
        "input_tokens": Bucket(50000, per=10.0),
        "output_tokens": Bucket(None, per=10.0),
    }
    assert limiter.breaker == Breaker(failures=3, window=30, cooldown=2.5, max_wait=3600)
    monkeypatch.setenv("PIPELINE_BREAKER", "false")
    assert Settings().queue_config("format-insights").limiter.breaker is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPELINE_LIMITS", "global"),
        ("PIPELINE_LIMIT_WINDOW", "0"),
        ("PIPELINE_LIMITER_NAMESPACE", "a b"),
        ("PIPELINE_MODEL_LIMITS", '{"claude-haiku-5-5": {"requests": 0}}'),
        ("PIPELINE_BREAKER_MAX_WAIT", "-1"),
        ("PIPELINE_SLOT", "a!b"),
        ("PIPELINE_SLOT", "{x}"),
        ("PIPELINE_QUEUES__STOCK_ANALYSIS__INPUT_TOKENS", "-5"),
    ],
)
def test_bad_limit_settings_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError) as info:
        Settings()
    field = name.removeprefix("PIPELINE_").lower().split("__")[0]
    assert field in str(info.value).lower()


def test_stage_cost_of_an_unknown_stage_is_refused() -> None:
    with pytest.raises(KeyError):
        stage_cost("nope", input_tokens=1)


class CallKinds:
    """A guard that records each stage's calls (kind and max_tokens) per job run (a step of a
    job numbers its calls from `step * STEP_CALLS`; each step is a take, with its reservation)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str | None, int], list[tuple[str, str, int]]] = {}

    async def before(self, call: LLMCall) -> None:
        self.calls.setdefault((call.job_id, call.call_index // STEP_CALLS), []).append(
            (call.stage or "", call.kind, call.max_tokens)
        )

    async def after(self, call: LLMCall, reservation: None, outcome: Any) -> None:
        del call, reservation, outcome


@pytest.mark.integration
async def test_stage_calls_are_what_each_stage_really_makes(
    make_runtime: Any, workers: Any
) -> None:
    # the costs reserved at start rest on STAGE_CALLS: a stage that changes its calls must
    # change the table too
    rt: Runtime = await make_runtime()
    kinds = CallKinds()
    guarded = rt.llm
    guarded.guards = (*guarded.guards, kinds)  # type: ignore[attr-defined]
    await workers()
    run_id = await start_sector_research("Energy", "limits-user", runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await rt.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=rt)
    await wait_row(rt.pool, "SELECT status = 'completed' FROM sector_analysis WHERE id=$1", run_id)
    per_stage: dict[str, set[tuple[str, ...]]] = {}
    for calls in kinds.calls.values():
        stage = calls[0][0]
        per_stage.setdefault(stage, set()).add(tuple(kind for _, kind, _ in calls))
        for _, kind, max_tokens in calls:
            want = COMPLETE_MAX_TOKENS if kind == "complete" else STRUCTURED_MAX_TOKENS
            assert max_tokens == want, (stage, kind)
    assert per_stage == {stage: {calls} for stage, calls in STAGE_CALLS.items()}
