"""Settings of the pipeline, from the environment (pydantic-settings).

Every value has a default that runs offline; see the README's table of environment variables.
Per-queue settings can be overridden one field at a time, e.g.
`PIPELINE_QUEUES__STOCK_ANALYSIS__CONCURRENCY=8`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobqueue import Breaker, Limiter, QueueConfig, RateLimit
from pipeline.ai.errors import JUDGE_REJECTION
from pipeline.provider_limits import model_limiter, stage_cost

__all__ = [
    "JOB_TYPES",
    "JobType",
    "ModelLimits",
    "QueueOverride",
    "QueueSettings",
    "Settings",
    "get_settings",
]

JobType = Literal[
    "sector-research", "stock-ranking", "stock-analysis", "judge-review", "format-insights"
]
JOB_TYPES: tuple[JobType, ...] = (
    "sector-research",
    "stock-ranking",
    "stock-analysis",
    "judge-review",
    "format-insights",
)

_TIERS: dict[str, str] = {
    "sector-research": "research",
    "stock-ranking": "ranking",
    "stock-analysis": "analysis",
    "judge-review": "judge",
    "format-insights": "format",
}


class QueueSettings(BaseModel):
    """One stage's queue: global concurrency, timeout per attempt, attempts, job-start rate
    limit, and what one job is estimated to cost of its model's shared limits.

    `rate_max`/`rate_per` are the seed's per-queue job starts per period: always applied with
    `PIPELINE_LIMITS=per-queue`; with `shared` only when `rate_max` is set for the queue in the
    environment. `input_tokens` is the estimated prompt of one job's calls; `output_tokens`
    its output reservation (None: the calls' `max_tokens`, as the provider counts it).
    """

    concurrency: int = Field(ge=1)
    timeout: float = Field(gt=0)
    attempts: int = Field(ge=1)
    rate_max: int = Field(ge=1)
    rate_per: float = Field(default=60.0, gt=0)
    worker_concurrency: int | None = Field(default=None, ge=1)
    input_tokens: int = Field(default=2000, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class QueueOverride(BaseModel):
    """Overrides of some fields of a stage's `QueueSettings` (from the environment)."""

    concurrency: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    attempts: int | None = Field(default=None, ge=1)
    rate_max: int | None = Field(default=None, ge=1)
    rate_per: float | None = Field(default=None, gt=0)
    worker_concurrency: int | None = Field(default=None, ge=1)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class ModelLimits(BaseModel):
    """Starting per-minute limits of one model (None: learned from the provider's headers)."""

    requests: int | None = Field(default=None, ge=1)
    input_tokens: int | None = Field(default=None, ge=1)
    output_tokens: int | None = Field(default=None, ge=1)


def _seed_queues() -> dict[str, QueueSettings]:
    # from the seed: concurrency / timeout / attempts / rate limit per minute; input_tokens:
    # the prompt of one job's calls as measured on the offline pipeline, rounded up (a real
    # model's longer research and analyses make later prompts longer; usage settles it)
    return {
        "sector_research": QueueSettings(
            concurrency=2, timeout=900, attempts=2, rate_max=5, input_tokens=1000
        ),
        "stock_ranking": QueueSettings(
            concurrency=3, timeout=300, attempts=3, rate_max=5, input_tokens=1000
        ),
        "stock_analysis": QueueSettings(
            concurrency=5, timeout=900, attempts=1, rate_max=10, input_tokens=1200
        ),
        "judge_review": QueueSettings(
            concurrency=10, timeout=300, attempts=3, rate_max=20, input_tokens=800
        ),
        "format_insights": QueueSettings(
            concurrency=10, timeout=180, attempts=3, rate_max=20, input_tokens=800
        ),
    }


class Settings(BaseSettings):
    """All settings. Env prefix `PIPELINE_`, plus `REDIS_URL`, `DATABASE_URL`,
    `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` as they are commonly named."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PIPELINE_REDIS_URL")
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PIPELINE_DATABASE_URL")
    )
    prefix: str = "jq"
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "PIPELINE_ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "PIPELINE_ANTHROPIC_BASE_URL"),
    )
    llm_mode: Literal["offline", "anthropic"] | None = None
    offline_latency: float = Field(default=0.0, ge=0)
    model_research: str = "claude-opus-5-5"
    model_ranking: str = "claude-sonnet-5-5"
    model_analysis: str = "claude-opus-5-5"
    model_judge: str = "claude-sonnet-5-5"
    model_format: str = "claude-haiku-5-5"
    queues: dict[str, QueueOverride] = Field(default_factory=dict)
    max_rejections: int = Field(default=3, ge=1)
    rejection_delay: float = Field(default=5.0, ge=0)
    infra_retry_delay: float = Field(
        default=5.0, ge=0, description="seconds a job waits when PostgreSQL or Redis is unavailable"
    )
    max_deferrals: int = Field(
        default=500,
        ge=1,
        description="deferrals (rate limits, outages) a job may take before it fails",
    )
    stocks_to_analyze: int = Field(default=5, ge=1, le=10)
    fair_groups: bool = Field(
        default=True,
        description="group every job of a run by its user (round-robin between users within "
        "a tier); off: one FIFO per priority",
    )
    retry_scale: float = Field(default=1.0, gt=0, description="multiplies every retry delay")
    lease: float = Field(default=30.0, gt=0)
    stall_interval: float | None = Field(default=None, gt=0)
    drain_delay: float = Field(default=5.0, gt=0)
    shutdown_grace: float = Field(default=25.0, ge=0)
    mirror: bool = True
    mirror_claim_idle: float = Field(
        default=60.0,
        gt=0,
        description="seconds before a dead mirror's unapplied events are taken over",
    )
    mirror_writers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="transactions the status mirror applies a batch with at once, each on "
        "its own share of the jobs",
    )
    mirror_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="stream entries the mirror reads per round trip"
    )
    run_budget_usd: float = Field(
        default=5.0,
        ge=0,
        allow_inf_nan=False,
        description="USD a sector run may spend on model calls (start_sector_research budget_usd=)",
    )
    daily_budget_usd: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="USD the organisation may spend per UTC day; None for no limit",
    )
    budget_org: str = Field(
        default="default",
        min_length=1,
        max_length=200,
        description="the organisation (one per deployment) whose daily budget applies",
    )
    budget_reservation_ttl: float = Field(
        default=3600.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds before a reservation its crashed holder never settled is reclaimed",
    )
    limits: Literal["shared", "per-queue"] = Field(
        default="shared",
        description="shared: one limiter per model (tokens, learned limits, breaker); "
        "per-queue: the seed's job-start buckets only",
    )
    slot: str = Field(
        default="pipeline",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$",
        description="the Redis Cluster hash slot of every stage queue and its model's limiter "
        "(one slot: a run's flows span the stages)",
    )
    limit_window: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds over which the provider's per-minute limits refill",
    )
    limiter_namespace: str = Field(
        default="anthropic",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,49}$",
        description="the organisation's limiters are named <namespace>.<model>",
    )
    model_limits: dict[str, ModelLimits] = Field(
        default_factory=dict,
        description="starting limits per model id (JSON); unset buckets are learned",
    )
    breaker: bool = True
    breaker_failures: int = Field(default=5, ge=1)
    breaker_window: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    breaker_cooldown: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    breaker_max_wait: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "INFO"
    webhook_url: str | None = Field(
        default=None, description="http(s) URL the run events are POSTed to; None: no webhooks"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="the Standard Webhooks signing secret, whsec_<base64>"
    )
    webhook_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    webhook_attempts: int = Field(default=10, ge=1, description="tries of one event")
    webhook_backoff: float = Field(
        default=5.0, ge=0, allow_inf_nan=False, description="first retry delay, doubled each try"
    )
    webhook_max_backoff: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    webhook_concurrency: int = Field(default=10, ge=1)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # the engine's rule for `Queue(prefix=)`: refused here, before any process starts
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,49}", value):
            shown = value if len(value) <= 80 else f"{value[:80]}..."
            raise ValueError(
                f"prefix {shown!r} is invalid: use 1-50 letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_url(cls, value: object) -> object:
        from pipeline.webhooks.settings import check_url

        return check_url(value)

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value: object) -> object:
        from pipeline.webhooks.settings import check_secret

        return check_secret(value)

    @model_validator(mode="after")
    def _webhook_signed(self) -> Settings:
        from pipeline.webhooks.settings import check_signed

        check_signed(self.webhook_url, self.webhook_secret)
        return self

    @field_validator("slot", mode="before")
    @classmethod
    def _empty_slot(cls, value: object) -> object:
        # a run's jobs form engine flows across the stage queues, and a flow lives in one slot
        if value is None or value == "":
            raise ValueError(
                "PIPELINE_SLOT cannot be empty: the stage queues of a run form one flow "
                "(the ranking's fan-out and fan-in), which lives in one Redis hash slot"
            )
        return value

    @field_validator("queues")
    @classmethod
    def _known_queues(cls, value: dict[str, QueueOverride]) -> dict[str, QueueOverride]:
        # a misspelt stage (PIPELINE_QUEUES__STOCK_ANALYSYS__...) must not be ignored silently
        unknown = sorted(set(value) - set(_seed_queues()))
        if unknown:
            raise ValueError(
                f"unknown queue(s) {unknown} in queues overrides; expected some of "
                f"{sorted(_seed_queues())}"
            )
        return value

    def queue_settings(self, job_type: str) -> QueueSettings:
        """The settings of one stage's queue (defaults merged with overrides)."""
        key = job_type.replace("-", "_")
        seed = _seed_queues()[key]
        override = self.queues.get(key)
        if override is None:
            return seed
        return seed.model_copy(update=override.model_dump(exclude_none=True))

    def limiter(self, job_type: str) -> Limiter | None:
        """The shared limiter of a stage's model; None with `limits=per-queue`."""
        if self.limits != "shared":
            return None
        model = self.models[_TIERS[job_type]]
        given = self.model_limits.get(model)
        return model_limiter(
            self.limiter_namespace,
            model,
            window=self.limit_window,
            capacities=given.model_dump() if given else None,
            breaker=Breaker(
                failures=self.breaker_failures,
                window=self.breaker_window,
                cooldown=self.breaker_cooldown,
                max_wait=self.breaker_max_wait,
            )
            if self.breaker
            else None,
        )

    def queue_config(self, job_type: str) -> QueueConfig:
        """The engine's `QueueConfig` for one stage."""
        qs = self.queue_settings(job_type)
        scale = self.retry_scale
        limiter = self.limiter(job_type)
        override = self.queues.get(job_type.replace("-", "_"))
        # beside a shared limiter, a job-start bucket only where one is asked for
        per_queue = limiter is None or (override is not None and override.rate_max is not None)
        return QueueConfig(
            job_type,
            concurrency=qs.concurrency,
            timeout=qs.timeout,
            attempts=qs.attempts,
            rate_limit=RateLimit(max=qs.rate_max, per=qs.rate_per) if per_queue else None,
            limiter=limiter,
            slot=self.slot,
            cost=stage_cost(job_type, input_tokens=qs.input_tokens, output_tokens=qs.output_tokens)
            if limiter
            else None,
            backoff=5.0 * scale,
            retry_delays={
                "RATE_LIMIT": 60.0 * scale,  # used only when the API sent no Retry-After
                "NETWORK_ERROR": 10.0 * scale,
                JUDGE_REJECTION: 5.0 * scale,
                "UNKNOWN": 5.0 * scale,
            },
            max_backoff=600.0 * scale,
            max_deferrals=self.max_deferrals,
            lease=self.lease,
            stall_interval=self.stall_interval,
            drain_delay=self.drain_delay,
        )

    @property
    def models(self) -> dict[str, str]:
        """Model id per AI tier."""
        return {
            "research": self.model_research,
            "ranking": self.model_ranking,
            "analysis": self.model_analysis,
            "judge": self.model_judge,
            "format": self.model_format,
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
