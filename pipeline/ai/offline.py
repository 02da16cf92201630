"""`OfflineLLM`: a deterministic stand-in for the model, with no network and no key.

Outputs are seeded by `sha256(schema name + seed_key + prompt)` (`"complete"` in place of the
schema name for free text), so the same call always gives the same answer and a different
`seed_key` gives a different one. Stages register domain fixtures with `register_fixture`;
other schemas get generic, constraint-respecting content from `pipeline.ai.generate`.

Faults (`Fault`, or `PIPELINE_OFFLINE_FAULTS` via `OfflineLLM.from_env`) make the first N
matching calls raise the `LLMError` a real outage would, for retry tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel

from jobqueue import ErrorType
from pipeline.ai._prefix_cache import PrefixCache
from pipeline.ai.base import Effort, LLMError, LLMResult, PromptBlock, Tier, Usage
from pipeline.ai.generate import GenerationError, generate_instance, research_text

__all__ = [
    "FAULTS_ENV",
    "LATENCY_ENV",
    "Fault",
    "FaultKind",
    "FixtureFactory",
    "OfflineLLM",
    "fixture_for",
    "offline_rejections_enabled",
    "offline_rng",
    "offline_should_reject",
    "parse_faults",
    "register_fixture",
    "unregister_fixture",
]

T = TypeVar("T", bound=BaseModel)

FAULTS_ENV = "PIPELINE_OFFLINE_FAULTS"
LATENCY_ENV = "PIPELINE_OFFLINE_LATENCY"
OFFLINE_MODEL = "offline"

FaultKind = Literal["rate_limit", "overloaded", "timeout", "server_error", "auth"]

FixtureFactory = Callable[[str, str, random.Random], BaseModel | Mapping[str, Any]]
"""`(prompt, seed_key, rng) -> instance` (or a dict the schema validates)."""

_FIXTURES: dict[type[BaseModel], FixtureFactory] = {}
_REJECT_FIRST_ATTEMPT: ContextVar[bool] = ContextVar("offline_reject_first_attempt", default=True)


def register_fixture(schema: type[T], factory: FixtureFactory) -> FixtureFactory:
    """Make `OfflineLLM.structured(schema=schema)` answer with `factory(prompt, seed_key, rng)`.

    Args:
        schema: The pydantic model the fixture produces (matched exactly, not by subclass).
        factory: Called with the prompt, the seed key and a seeded `random.Random`.

    Returns:
        The factory, so this can also be used as a decorator's body.
    """
    _FIXTURES[schema] = factory
    return factory


def unregister_fixture(schema: type[BaseModel]) -> None:
    """Remove the fixture for `schema`, if any (generic generation applies again).

    Args:
        schema: The pydantic model whose fixture to drop.
    """
    _FIXTURES.pop(schema, None)


def fixture_for(schema: type[BaseModel]) -> FixtureFactory | None:
    """Look up the fixture registered for `schema`.

    Args:
        schema: A pydantic model class.

    Returns:
        The factory, or None when the generic generator applies.
    """
    return _FIXTURES.get(schema)


def offline_rng(*parts: str) -> random.Random:
    """Build the offline model's random source.

    Args:
        *parts: Strings concatenated and hashed, e.g. schema name, seed key, prompt.

    Returns:
        A `random.Random` seeded by their `sha256` (stable across processes and runs).
    """
    digest = hashlib.sha256("".join(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def offline_should_reject(ticker: str, attempt: int) -> bool:
    """Whether the offline judge rejects this analysis: the first attempt of ~1/3 of tickers.

    Uses `sha256` (stable across processes), never the salted built-in `hash()`.

    Args:
        ticker: The stock's ticker.
        attempt: 1 for the first analysis, 2 for the first re-run, ...

    Returns:
        True when `attempt == 1` and `sha256(ticker) % 3 == 0`.
    """
    return attempt == 1 and int(hashlib.sha256(ticker.encode("utf-8")).hexdigest(), 16) % 3 == 0


def offline_rejections_enabled() -> bool:
    """Whether the `OfflineLLM` now running a fixture wants first-attempt rejections.

    A judge fixture should reject only when this and `offline_should_reject` are both true;
    it reflects the `reject_first_attempt` flag of the calling `OfflineLLM` (True elsewhere).
    """
    return _REJECT_FIRST_ATTEMPT.get()


@dataclass(frozen=True)
class Fault:
    """Make the first `times` matching calls fail like a real outage.

    Attributes:
        kind: rate_limit (RATE_LIMIT, 429), overloaded (NETWORK_ERROR, 529), timeout
            (NETWORK_ERROR), server_error (NETWORK_ERROR, 500) or auth (API_ERROR, 401).
        times: How many matching calls fail.
        retry_after: The `retry_after` the error carries (rate_limit/overloaded/server_error).
        tiers: Only calls for these tiers match; None matches every tier.
    """

    kind: FaultKind
    times: int = 1
    retry_after: float | None = None
    tiers: frozenset[str] | set[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {get_args(FaultKind)}")
        if self.times < 0:
            raise ValueError(f"fault times must be >= 0, got {self.times!r}")
        if self.tiers is not None:
            object.__setattr__(self, "tiers", frozenset(self.tiers))

    def matches(self, tier: str) -> bool:
        """Tell whether a call for `tier` is subject to this fault.

        Args:
            tier: The calling stage.

        Returns:
            True when `tiers` is None or contains it.
        """
        return self.tiers is None or tier in self.tiers

    def error(self, tier: str) -> LLMError:
        """Build the error this fault raises.

        Args:
            tier: The calling stage (named in the message).

        Returns:
            The `LLMError` a real outage of this kind would produce.
        """
        where = f"offline fault on tier {tier!r}"
        if self.kind == "rate_limit":
            return LLMError(
                f"{where}: 429 rate_limit_error",
                error_type=ErrorType.RATE_LIMIT,
                retry_after=self.retry_after,
                status_code=429,
            )
        if self.kind == "auth":
            return LLMError(
                f"{where}: 401 authentication_error",
                error_type=ErrorType.API_ERROR,
                retryable=False,
                status_code=401,
            )
        status = {"overloaded": 529, "server_error": 500}.get(self.kind)
        return LLMError(
            f"{where}: {self.kind}",
            error_type=ErrorType.NETWORK_ERROR,
            retry_after=None if self.kind == "timeout" else self.retry_after,
            status_code=status,
        )


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse `kind[:times[:retry_after[:tier|tier]]]` entries separated by commas.

    Example: `"rate_limit:1:0.2,overloaded:2,auth:1::judge"`.

    Args:
        spec: The specification (empty → no faults).

    Returns:
        The faults, in order.

    Raises:
        ValueError: On an unknown kind or a malformed number.
    """
    faults: list[Fault] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split(":")]
        try:
            if len(parts) > 4:
                raise ValueError("too many ':' fields")
            times = int(parts[1]) if len(parts) > 1 and parts[1] else 1
            retry_after = float(parts[2]) if len(parts) > 2 and parts[2] else None
            tiers = frozenset(parts[3].split("|")) if len(parts) > 3 and parts[3] else None
            faults.append(Fault(parts[0], times, retry_after, tiers))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"bad {FAULTS_ENV} entry {item!r}: {exc}") from None
    return tuple(faults)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class OfflineLLM:
    """Deterministic `LLM` for tests, demos and machines without an API key.

    Answers are steered and seeded by the per-call `prompt` only. The prompt cache is
    simulated (`PrefixCache`): a call whose blocks up to a breakpoint were already sent by an
    earlier call of this instance reports them as `cache_read_tokens`, the first as
    `cache_write_tokens`.

    Args:
        latency: Seconds each call sleeps (asyncio) to simulate the model.
        faults: Failures injected into the first matching calls.
        reject_first_attempt: Read by judge fixtures through `offline_rejections_enabled()`.

    Attributes:
        calls: Calls made so far (including those that faulted).
        calls_by_tier: The same, per tier.
    """

    model = OFFLINE_MODEL

    def __init__(
        self,
        *,
        latency: float = 0.0,
        faults: Sequence[Fault] = (),
        reject_first_attempt: bool = True,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        self.latency = float(latency)
        self.faults: tuple[Fault, ...] = tuple(faults)
        self.reject_first_attempt = reject_first_attempt
        self._remaining = [f.times for f in self.faults]
        self._lock = threading.Lock()
        self.calls = 0
        self.calls_by_tier: Counter[str] = Counter()
        self.prompt_cache = PrefixCache()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        latency: float = 0.0,
        faults: Iterable[Fault] = (),
        reject_first_attempt: bool = True,
    ) -> OfflineLLM:
        """Build from `PIPELINE_OFFLINE_FAULTS` and `PIPELINE_OFFLINE_LATENCY` (for subprocesses).

        Args:
            environ: The environment to read (default `os.environ`).
            latency: Used when `PIPELINE_OFFLINE_LATENCY` is unset or empty.
            faults: Extra faults, checked before the environment's.
            reject_first_attempt: Passed through.

        Returns:
            The configured model.

        Raises:
            ValueError: On a malformed variable.
        """
        env = os.environ if environ is None else environ
        raw_latency = env.get(LATENCY_ENV, "").strip()
        try:
            chosen = float(raw_latency) if raw_latency else latency
        except ValueError:
            raise ValueError(f"bad {LATENCY_ENV} {raw_latency!r}: not a number") from None
        return cls(
            latency=chosen,
            faults=(*faults, *parse_faults(env.get(FAULTS_ENV, ""))),
            reject_first_attempt=reject_first_attempt,
        )

    def __repr__(self) -> str:
        return f"OfflineLLM(latency={self.latency!r}, faults={list(self.faults)!r})"

    @property
    def faults_remaining(self) -> list[int]:
        """How many more times each fault will fire, in order."""
        with self._lock:
            return list(self._remaining)

    async def aclose(self) -> None:
        """Nothing to release; present for symmetry with `AnthropicLLM`."""

    async def _begin(self, tier: str) -> None:
        fault: Fault | None = None
        with self._lock:
            self.calls += 1
            self.calls_by_tier[tier] += 1
            for i, candidate in enumerate(self.faults):
                if self._remaining[i] > 0 and candidate.matches(tier):
                    self._remaining[i] -= 1
                    fault = candidate
                    break
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None:
            raise fault.error(tier)

    async def complete(
        self,
        *,
        tier: Tier,
        system: str | PromptBlock,
        prompt: str,
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 16000,
        effort: Effort | None = None,
        web_search: bool = False,
        seed_key: str = "",
    ) -> LLMResult:
        """Return seeded multi-paragraph research prose (see `LLM.complete`)."""
        await self._begin(tier)
        rng = offline_rng("complete", seed_key, prompt)
        text = research_text(rng, prompt)
        usage = self.prompt_cache.usage(tier, system, context, prompt) + Usage(
            output_tokens=min(max_tokens, _tokens(text)),
            web_searches=rng.randint(1, 5) if web_search else 0,
        )
        return LLMResult(
            text=text, model=OFFLINE_MODEL, usage=usage, cost_usd=0.0, stop_reason="end_turn"
        )

    async def structured(
        self,
        *,
        tier: Tier,
        system: str | PromptBlock,
        prompt: str,
        schema: type[T],
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 8000,
        effort: Effort | None = None,
        seed_key: str = "",
    ) -> tuple[T, LLMResult]:
        """Return a seeded valid `schema` instance from its fixture or the generic generator."""
        await self._begin(tier)
        rng = offline_rng(schema.__name__, seed_key, prompt)
        factory = _FIXTURES.get(schema)
        token = _REJECT_FIRST_ATTEMPT.set(self.reject_first_attempt)
        try:
            if factory is not None:
                produced = factory(prompt, seed_key, rng)
                instance = (
                    produced if isinstance(produced, schema) else schema.model_validate(produced)
                )
            else:
                instance = generate_instance(schema, rng, prompt)
        except GenerationError as exc:
            raise LLMError(
                str(exc), error_type=ErrorType.VALIDATION_ERROR, retryable=False
            ) from exc
        finally:
            _REJECT_FIRST_ATTEMPT.reset(token)
        text = instance.model_dump_json()
        usage = self.prompt_cache.usage(tier, system, context, prompt) + Usage(
            output_tokens=_tokens(text)
        )
        result = LLMResult(
            text=text, model=OFFLINE_MODEL, usage=usage, cost_usd=0.0, stop_reason="end_turn"
        )
        return instance, result
