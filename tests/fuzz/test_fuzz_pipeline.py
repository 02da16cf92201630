"""Bad input to the pipeline's entries on the real servers: `enqueue` / `enqueue_many`,
`start_sector_research`, `approve_subsector`, `cancel_run`, and `Settings` from a bad
environment. Each gets a typed error (PayloadError, ConfigError, CancelRefusedError, or
pydantic's ValidationError for settings, all ValueErrors) naming the bad value, cut short,
and writes nothing: the test's Redis keys and the rows of every pipeline table are unchanged."""

from __future__ import annotations

import math
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fuzz_helpers import BAD_NUMBERS, BIG, NOT_STR, ODD_TEXT, Unchanged, check_message
from fuzz_helpers_strategies import bad_job_ids
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from jobqueue import ConfigError, InvalidJobError
from pipeline.cancel import CancelRefusedError, cancel_run
from pipeline.flow import (
    PayloadError,
    approve_subsector,
    enqueue,
    enqueue_many,
    start_sector_research,
)
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings

sys.path.insert(0, str(Path(__file__).parents[1] / "pipeline"))

pytestmark = pytest.mark.integration

TABLES = (
    "job_status", "sector_analysis", "sub_sector", "stock", "stock_analysis", "llm_usage",
    "budget_day", "budget_reservation", "webhook_delivery",
)  # fmt: skip


@pytest.fixture
async def guard(runtime: Runtime, redis_client: Redis, prefix: str) -> Unchanged:
    return Unchanged(redis_client, prefix, runtime.pool, TABLES)


def _bad_text(value: Any) -> bool:
    """Not a sector name or user id: not a str, blank, unprintable or over 200 characters."""
    return (
        not isinstance(value, str)
        or not value.strip()
        or not value.isprintable()
        or len(value.strip()) > 200
        or len(value) > 200
    )


@given(
    sector=st.one_of(st.just("Technology"), ODD_TEXT, NOT_STR),
    user=st.one_of(st.just("user-1"), ODD_TEXT, NOT_STR),
    budget=st.one_of(
        st.none(), st.just(1.5), BAD_NUMBERS, st.floats(min_value=1e6, allow_infinity=True)
    ),
    tier=st.one_of(st.just("free"), ODD_TEXT, NOT_STR),
)
async def test_start_sector_research_refuses_bad_input(
    runtime: Runtime, guard: Unchanged, sector: Any, user: Any, budget: Any, tier: Any
) -> None:
    budget_ok = budget is None or budget == 1.5
    if not (_bad_text(sector) or _bad_text(user) or not budget_ok or tier != "free"):
        return  # valid: would start a run
    async with guard:
        with pytest.raises((PayloadError, ConfigError)) as info:
            await start_sector_research(
                sector, user, budget_usd=budget, user_tier=tier, runtime=runtime
            )
    check_message(info.value)


PAYLOADS = st.one_of(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=10), st.none()), max_size=3
    ),
    st.fixed_dictionaries(
        {
            "sector_analysis_id": st.one_of(ODD_TEXT, NOT_STR),
            "user_id": st.just("u"),
            "sector_name": st.just("Tech"),
        }
    ),
    st.fixed_dictionaries({"sub_sector_id": st.one_of(ODD_TEXT, NOT_STR)}),
    st.fixed_dictionaries({"stock_id": st.one_of(ODD_TEXT, NOT_STR)}),
    st.fixed_dictionaries(
        {
            "sector_analysis_id": st.just(str(uuid.UUID(int=1))),
            "user_id": ODD_TEXT,
            "sector_name": st.just(BIG),
        }
    ),
    st.just(
        {
            "sector_analysis_id": str(uuid.UUID(int=1)),
            "user_id": "u",
            "sector_name": "T",
            "extra": math.nan,
        }
    ),
    NOT_STR,
)


@given(job_type=st.one_of(st.sampled_from(JOB_TYPES), ODD_TEXT), payload=PAYLOADS)
async def test_enqueue_refuses_payloads_that_do_not_fit(
    runtime: Runtime, guard: Unchanged, job_type: str, payload: Any
) -> None:
    async with guard:
        with pytest.raises(PayloadError) as info:
            await enqueue(job_type, payload, runtime=runtime)
    check_message(info.value)


GOOD = (
    "sector-research",
    {"sector_analysis_id": str(uuid.UUID(int=7)), "user_id": "u", "sector_name": "Tech"},
)


@given(
    options=st.one_of(
        st.fixed_dictionaries({"delay": st.one_of(BAD_NUMBERS, st.floats(min_value=4e8))}),
        st.fixed_dictionaries({"job_ids": st.lists(bad_job_ids(), min_size=2, max_size=2)}),
    ),
    bad_first=st.booleans(),
)
async def test_enqueue_many_refuses_bad_ids_and_delays_writing_nothing(
    runtime: Runtime, guard: Unchanged, options: dict[str, Any], bad_first: bool
) -> None:
    if "delay" in options and options["delay"] is None:
        return
    items = [GOOD, ("sector-research", {**GOOD[1], "sector_name": "Energy"})]
    async with guard:
        with pytest.raises(InvalidJobError) as info:
            await enqueue_many(items if bad_first else items[::-1], runtime=runtime, **options)
    check_message(info.value)


@given(sub_sector_id=st.one_of(ODD_TEXT, NOT_STR, st.uuids().map(str)))
async def test_approve_refuses_ids_that_are_no_sub_sector(
    runtime: Runtime, guard: Unchanged, sub_sector_id: Any
) -> None:
    async with guard:
        with pytest.raises(PayloadError) as info:
            await approve_subsector(sub_sector_id, runtime=runtime)
    check_message(info.value)


@given(run_id=st.one_of(ODD_TEXT, NOT_STR, st.uuids().map(str)))
async def test_cancel_refuses_ids_that_are_no_run(
    runtime: Runtime, guard: Unchanged, run_id: Any
) -> None:
    async with guard:
        with pytest.raises(CancelRefusedError) as info:
            await cancel_run(run_id, runtime=runtime)
    assert info.value.status is None
    check_message(info.value)


SETTINGS_ENV = [
    "PIPELINE_LEASE", "PIPELINE_STOCKS_TO_ANALYZE", "PIPELINE_MAX_REJECTIONS", "PIPELINE_RUN_BUDGET_USD",
    "PIPELINE_PREFIX", "PIPELINE_LIMITS", "PIPELINE_QUEUES__JUDGE_REVIEW__CONCURRENCY", "PIPELINE_DRAIN_DELAY",
    "PIPELINE_LLM_MODE", "PIPELINE_QUEUES",
]  # fmt: skip


@given(
    name=st.sampled_from(SETTINGS_ENV),
    value=st.sampled_from(
        ["-1", "0", "nan", "inf", "abc", "{bad json", "a:b", "", " ", BIG, "1e400", "🙂"]
    ),
)
def test_settings_refuse_bad_environment_values_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    error: ValueError | None = None
    with monkeypatch.context() as env:  # undone after each example
        env.setenv(name, value)
        try:
            Settings()
        except ValueError as exc:  # pydantic's ValidationError, pydantic-settings' SettingsError
            error = exc
    if error is not None:
        field = name.removeprefix("PIPELINE_").split("__")[-1 if "__" in name else 0].lower()
        assert field in str(error).lower(), str(error)[:300]
        check_message(error)


@pytest.mark.parametrize("job_ids", [[], ["a"], ["a", "b", "c"]])
async def test_enqueue_many_refuses_job_ids_not_one_per_job(
    runtime: Runtime, guard: Unchanged, job_ids: list[str]
) -> None:
    items = [GOOD, ("sector-research", {**GOOD[1], "sector_name": "Energy"})]
    async with guard:
        with pytest.raises(InvalidJobError) as info:
            await enqueue_many(items, job_ids=job_ids, runtime=runtime)
    assert "job_ids" in str(info.value)
