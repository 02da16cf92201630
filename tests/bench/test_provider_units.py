"""The simulator's pieces without a server: settings, buckets, seeded draws, token estimates,
values generated from a JSON schema, and the report's arithmetic."""

from __future__ import annotations

import ast
import json
import random
import re
import statistics
from pathlib import Path

import anthropic
import pytest
from pydantic import BaseModel, Field, field_validator

from bench.provider import (
    Bucket,
    Limits,
    ModelStats,
    ProviderConfig,
    SchemaError,
    Stats,
    WindowStats,
    estimate_input_tokens,
    fake_value,
    rfc3339,
)
from bench.provider._content import draw_latency, make_reply, request_rng
from bench.provider._schema import constraints, regex_sample
from bench.provider.report import RunResult, model_shares, render_markdown, rows, summary
from jobqueue import ConfigError

HERE = Path(__file__).parent


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"minute_seconds": 0}, "minute_seconds"),
        ({"latency_median": 2.0}, "latency_median"),
        ({"outage": (5.0, 0.0)}, "outage duration"),
        ({"outage_drop_share": 1.5}, "outage_drop_share"),
        ({"output_median": 0}, "output_median"),
        ({"port": 70000}, "port"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(options: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ProviderConfig(**options)


def test_limits_are_positive_integers_and_parse() -> None:
    assert Limits.parse("30, 1200,16000") == Limits(rpm=30, itpm=1200, otpm=16000)
    with pytest.raises(ConfigError, match="rpm"):
        Limits(rpm=0, itpm=1, otpm=1)
    with pytest.raises(ConfigError, match="RPM,ITPM,OTPM"):
        Limits.parse("30,1200")


def test_a_bucket_replenishes_continuously_up_to_its_capacity() -> None:
    b = Bucket(60, minute_seconds=10.0, now=0.0)  # 6 per second
    b.take(60)
    assert b.wait_for(3) == pytest.approx(0.5)
    b.refill(0.5)
    assert b.remaining == 3
    assert b.full_in() == pytest.approx(57 / 6)
    b.refill(100.0)
    assert b.remaining == 60
    assert b.wait_for(61) == float("inf")
    b.give(10)
    assert b.level == 60


def test_rfc3339_rounds_up_to_the_millisecond() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1.0001) == "1970-01-01T00:00:01.001Z"


def test_latency_is_seeded_lognormal_within_bounds() -> None:
    config = ProviderConfig(latency_median=0.6, latency_min=0.3, latency_max=1.2)
    draws = [
        draw_latency(request_rng({"messages": [i]}, 0, "latency"), config) for i in range(2000)
    ]
    assert min(draws) >= 0.3 and max(draws) <= 1.2
    assert statistics.median(draws) == pytest.approx(0.6, rel=0.1)
    assert len({round(d, 6) for d in draws}) > 1000, "a spread, not a constant"
    again = draw_latency(request_rng({"messages": [7]}, 0, "latency"), config)
    assert again == draws[7], "the same request gets the same latency"
    assert draw_latency(random.Random(1), ProviderConfig(latency_median=0.0)) == 0.0


def test_output_tokens_drawn_within_max_tokens_and_deterministic() -> None:
    config = ProviderConfig(output_median=300)
    outs = []
    for i in range(300):
        body = {
            "model": "claude-sonnet-5-5",
            "max_tokens": 500,
            "messages": [{"role": "user", "content": f"q{i}"}],
        }
        reply = make_reply(body, config)
        assert reply == make_reply(body, config)
        assert 1 <= reply.output_tokens <= 500
        text = reply.content[-1]["text"]
        assert len(text) == pytest.approx(reply.output_tokens * 4, abs=4)
        outs.append(reply.output_tokens)
    assert 250 <= statistics.median(outs) <= 350
    assert max(outs) == 500, "the long tail is cut at max_tokens"


def test_input_estimate_counts_tools_schema_system_and_messages() -> None:
    body = {
        "system": [{"type": "text", "text": "s" * 40, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "u" * 30},
            {"role": "assistant", "content": [{"type": "text", "text": "a" * 10}]},
        ],
    }
    assert estimate_input_tokens(body) == 20
    with_tool = {**body, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    assert estimate_input_tokens(with_tool) > 20
    assert estimate_input_tokens({"messages": []}) == 1


class Item(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{2}-\d{3}$")
    rank: int = Field(ge=1, le=5)
    weight: float = Field(gt=0.0, lt=1.0)
    kind: str = Field(min_length=3, max_length=8)


class Doc(BaseModel):
    items: list[Item] = Field(min_length=5, max_length=5)
    tags: list[str] = Field(min_length=2, max_length=6)
    when: str | None = None
    flag: bool
    level: int = Field(ge=10, le=12)

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: list[Item]) -> list[Item]:
        assert sorted(i.rank for i in items) == [1, 2, 3, 4, 5]
        assert len({i.code for i in items}) == 5
        return items


def test_fake_values_validate_against_the_sdk_transformed_schema() -> None:
    schema = anthropic.transform_schema(Doc)
    assert "{pattern:" in json.dumps(schema), "the SDK moved constraints to the description"
    for seed in range(200):
        Doc.model_validate_json(json.dumps(fake_value(schema, random.Random(seed))))
    rejected = [fake_value(schema, random.Random(s), false_share=1.0)["flag"] for s in range(5)]
    assert rejected == [False] * 5


def test_constraints_are_read_back_from_the_description() -> None:
    sub = {
        "type": "string",
        "description": "A ticker.\n\n{pattern: ^[A-Z]{1,3}, [0-9]$, maxLength: 9}",
    }
    assert constraints(sub) == {"pattern": "^[A-Z]{1,3}, [0-9]$", "maxLength": 9}
    assert constraints({"type": "integer", "minimum": 2, "description": "{maximum: 4}"}) == {
        "maximum": 4,
        "minimum": 2,
    }


@pytest.mark.parametrize(
    "pattern", [r"^[A-Z][A-Z0-9.\-]{0,9}$", r"^(buy|sell)-\d+$", r"[^a-z]x?\w"]
)
def test_regex_samples_match(pattern: str) -> None:
    rng = random.Random(3)
    for _ in range(50):
        assert re.search(pattern, regex_sample(pattern, rng))


def test_unsupported_schemas_are_refused() -> None:
    with pytest.raises(SchemaError):
        fake_value({"$ref": "https://example.com/schema"}, random.Random(0))
    with pytest.raises(SchemaError):
        fake_value({"type": "integer", "minimum": 5, "maximum": 4}, random.Random(0))


# -- the report ---------------------------------------------------------------------------


def _stats(per_window: list[tuple[int, int, int, int]], elapsed: float) -> Stats:
    """Windows of (requests, input tokens, output tokens, 429s) of one model, 10 s each."""
    model = ModelStats(Limits(rpm=20, itpm=1000, otpm=4000))
    for i, (req, tin, tout, limited) in enumerate(per_window):
        model.windows.append(WindowStats(i, req, tin, 0, tout, limited))
    calls = sum(w[0] + w[3] for w in per_window)
    limited = sum(w[3] for w in per_window)
    return Stats(
        minute_seconds=10.0,
        elapsed=elapsed,
        calls=calls,
        admitted=calls - limited,
        rate_limited=limited,
        models={"claude-opus-5-5": model},
    )


def test_shares_count_full_windows_after_the_first() -> None:
    # window 0 (burst) and window 4 (partial: 45 s elapsed) are left out
    stats = _stats(
        [
            (20, 1900, 100, 5),
            (10, 950, 400, 0),
            (10, 900, 2000, 1),
            (10, 1000, 400, 0),
            (1, 5, 5, 0),
        ],
        elapsed=45.0,
    )
    shares = model_shares(stats)["claude-opus-5-5"]
    assert shares["windows"] == 3
    assert shares["input"] == pytest.approx((0.95 + 0.9 + 1.0) / 3)
    assert shares["output"] == pytest.approx((0.1 + 0.5 + 0.1) / 3)
    assert shares["binding"] == pytest.approx((0.95 + 0.9 + 1.0) / 3)
    assert shares["requests"] == pytest.approx(0.5)
    s = summary(RunResult("x", stats))
    assert s["late_429s"] == 1 and s["first_window_429s"] == 5
    assert s["late_429_share"] == pytest.approx(1 / 57)


def test_shares_leave_the_outage_windows_out() -> None:
    stats = _stats(
        [(20, 1900, 100, 0), (10, 950, 400, 0), (1, 10, 10, 0), (10, 900, 400, 0), (1, 5, 5, 0)],
        elapsed=45.0,
    )
    stats.models["claude-opus-5-5"].windows[2].overloaded = 7  # the provider was down
    shares = model_shares(stats)["claude-opus-5-5"]
    assert shares["windows"] == 2
    assert shares["input"] == pytest.approx((0.95 + 0.9) / 2)


def test_rows_put_configurations_side_by_side_with_goals() -> None:
    good = RunResult(
        "shared limiter",
        _stats([(20, 1900, 100, 0), (10, 950, 400, 0), (10, 980, 400, 0)], elapsed=30.0),
        stocks_failed=0,
        stocks_total=50,
        sectors_completed=10,
        sectors_total=10,
        wall_seconds=121.4,
        cost_usd=3.2,
        extra={"note": "20 s outage"},
    )
    bad = RunResult(
        "per-queue buckets",
        _stats([(20, 1900, 100, 9), (6, 500, 400, 30), (6, 560, 400, 20)], elapsed=30.0),
        stocks_failed=5,
        stocks_total=50,
    )
    table = rows([bad, good])
    by_metric = {r.metric: r for r in table}
    util = by_metric["tokens used per window / limit (busiest model, binding bucket)"]
    assert util.met == [False, True]
    assert util.cells[1].startswith("96.5 %")
    late = by_metric["429s after the first window / calls"]
    assert late.met == [False, True]
    assert late.cells[1] == "0 of 40 (0.0 %)"
    assert by_metric["stocks failed"].cells == ["5 of 50", "0 of 50"]
    assert by_metric["stocks failed"].met == [False, True]
    assert by_metric["wall time"].cells == ["-", "121 s"]
    assert by_metric["cost"].cells == ["-", "$3.20"]
    assert by_metric["note"].cells == ["-", "20 s outage"]
    text = render_markdown([bad, good])
    lines = text.splitlines()
    assert lines[0].split("|")[3].strip() == "per-queue buckets"
    assert "(MISSED)" in text and "(met)" in text
    assert len({len(line) for line in lines}) == 1, "aligned columns"


def test_provider_tests_and_bench_never_import_the_application() -> None:
    for path in [*HERE.glob("*.py"), *(HERE.parents[1] / "bench" / "provider").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] == "pipeline"], path
