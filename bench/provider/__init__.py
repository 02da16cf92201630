"""A provider simulator: a local Anthropic Messages API with real rate limits, for the benchmark.

    async with ProviderSimulator(ProviderConfig(minute_seconds=10, limits=Limits(...))) as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="sk-sim", max_retries=0)
        ...
        stats = sim.stats()

It serves `POST /v1/messages` (JSON and SSE, structured output) and
`POST /v1/messages/count_tokens` to the real `anthropic` SDK. Per API key and model it keeps
RPM, ITPM and OTPM buckets that replenish continuously over a scaled minute
(`minute_seconds`); a request that does not fit gets 429 `rate_limit_error` with `retry-after`;
every answer carries the `anthropic-ratelimit-*` headers and `request-id`. Replies take a
seeded lognormal latency; an outage window answers 529 `overloaded_error` (or drops the
connection). `stats()` (or `GET /_sim/stats`) counts requests, tokens, 429s and 529s per scaled
window and model. `bench.provider.report` turns those counts into the benchmark's table.

Standalone: `python -m bench.provider --port 8123 --minute-seconds 10 --rpm 30 --itpm 1200`.
"""

from ._buckets import Bucket, KeyModelLimits
from ._cli import config_from_args
from ._cli import parser as cli_parser
from ._config import DEFAULT_LIMITS, Limits, ManualClock, ProviderConfig
from ._content import estimate_input_tokens
from ._schema import SchemaError, fake_value
from ._server import ProviderSimulator, rfc3339
from ._stats import ModelStats, Stats, WindowStats

__all__ = [
    "DEFAULT_LIMITS",
    "Bucket",
    "KeyModelLimits",
    "Limits",
    "ManualClock",
    "ModelStats",
    "ProviderConfig",
    "ProviderSimulator",
    "SchemaError",
    "Stats",
    "WindowStats",
    "cli_parser",
    "config_from_args",
    "estimate_input_tokens",
    "fake_value",
    "rfc3339",
]
