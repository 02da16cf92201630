"""The provider's budget as the job queue spends it: one shared limiter per API key and model.

Anthropic limits an organisation per model in requests, input tokens and output tokens per
minute. Every stage queue whose calls go to the same model attaches to that model's `Limiter`
(`<namespace>.<model>`, e.g. `anthropic.claude-opus-5-5`), with three buckets named as the
limits (`requests`, `input_tokens`, `output_tokens`) and a circuit breaker. A job reserves its
stage's estimated cost when it starts (`stage_cost`); the call's real usage settles it and the
response's rate-limit headers correct the buckets (`pipeline.limit_guard.ProviderLimitGuard`).

Capacities need no configuration: a bucket left at None is learned from the first response's
`anthropic-ratelimit-*-limit` header (and re-learned when the organisation's tier changes);
configured values (`PIPELINE_MODEL_LIMITS`) are only where the limiter starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobqueue import Breaker, Bucket, Limiter

__all__ = [
    "BUCKETS",
    "COMPLETE_MAX_TOKENS",
    "STAGE_CALLS",
    "STRUCTURED_MAX_TOKENS",
    "limiter_name",
    "model_limiter",
    "stage_cost",
]

BUCKETS = ("requests", "input_tokens", "output_tokens")
"""The buckets of every model's limiter, named as the provider's limits."""

COMPLETE_MAX_TOKENS = 16_000
"""`LLM.complete`'s default `max_tokens` (the stages use the defaults)."""

STRUCTURED_MAX_TOKENS = 8_000
"""`LLM.structured`'s default `max_tokens`."""

STAGE_CALLS: dict[str, tuple[str, ...]] = {
    "sector-research": ("complete", "structured"),
    "stock-ranking": ("structured",),
    "stock-analysis": ("complete",),
    "judge-review": ("structured",),
    "format-insights": ("structured",),
}
"""The model calls one job of each stage makes (`complete` or `structured`), in order."""

_MAX_TOKENS = {"complete": COMPLETE_MAX_TOKENS, "structured": STRUCTURED_MAX_TOKENS}


def limiter_name(namespace: str, model: str) -> str:
    """The shared limiter's name for one model: `<namespace>.<model>`.

    Args:
        namespace: The API key's (organisation's) namespace, e.g. `anthropic`.
        model: The model id.

    Returns:
        The name.
    """
    return f"{namespace}.{model}"


def model_limiter(
    namespace: str,
    model: str,
    *,
    window: float,
    capacities: Mapping[str, int | None] | None = None,
    breaker: Breaker | None = None,
) -> Limiter:
    """The limiter every queue calling `model` shares.

    Args:
        namespace: The organisation's namespace (queues of one namespace share limits).
        model: The model id.
        window: Seconds over which the per-minute limits refill (60; less in a benchmark
            whose "minute" is scaled).
        capacities: Starting capacity per bucket; missing or None ones are learned from the
            provider's headers.
        breaker: The circuit breaker, or None for none.

    Returns:
        The `Limiter`.

    Raises:
        ConfigError: A bad name, window or capacity (the engine's message names it).
    """
    given = dict(capacities or {})
    return Limiter(
        limiter_name(namespace, model),
        buckets={b: Bucket(given.get(b), per=window) for b in BUCKETS},
        breaker=breaker,
    )


def stage_cost(
    job_type: str, *, input_tokens: int, output_tokens: int | None = None
) -> dict[str, float]:
    """What one job of a stage reserves of its model's limiter when it starts.

    The provider counts a request's output as its `max_tokens` while it runs (and gives the
    unused part back when it ends), so the output reservation is the stage's calls'
    `max_tokens` unless a smaller estimate is configured. Usage settles it after each call.

    Args:
        job_type: The stage.
        input_tokens: The estimated prompt tokens of all the stage's calls.
        output_tokens: The output reservation; None for the calls' `max_tokens`.

    Returns:
        Bucket name -> amount.

    Raises:
        KeyError: An unknown stage.
    """
    calls = STAGE_CALLS[job_type]
    output = sum(_MAX_TOKENS[c] for c in calls) if output_tokens is None else output_tokens
    return {"requests": len(calls), "input_tokens": input_tokens, "output_tokens": output}
