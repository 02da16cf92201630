"""What a run's model calls read from the prompt cache, from `llm_usage`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

__all__ = ["CacheShare", "cache_share", "cached_share_line"]

_TOTALS = """
SELECT count(*) AS calls, coalesce(sum(input_tokens), 0) AS input,
       coalesce(sum(cache_read_input_tokens), 0) AS read,
       coalesce(sum(cache_creation_input_tokens), 0) AS written
FROM llm_usage WHERE related_id = $1
"""


@dataclass(frozen=True)
class CacheShare:
    """Prompt tokens of a run's model calls, by how they were billed.

    Attributes:
        calls: Model calls recorded.
        input_tokens: Neither read from nor written to the cache (full price).
        cache_read_tokens: Read from the cache (the cheap ones).
        cache_write_tokens: Written to the cache (a premium over input).
    """

    calls: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token: input + cache reads + cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cached_share(self) -> float:
        """Cache reads as a share of all prompt tokens (0.0 when there are none)."""
        total = self.prompt_tokens
        return self.cache_read_tokens / total if total else 0.0

    def line(self) -> str:
        """One line for people, e.g. `cached input: 61.2% of 48,210 prompt tokens (...)`."""
        return (
            f"cached input: {self.cached_share:.1%} of {self.prompt_tokens:,} prompt tokens "
            f"(cache reads {self.cache_read_tokens:,}, cache writes "
            f"{self.cache_write_tokens:,}, uncached {self.input_tokens:,})"
        )


async def cache_share(conn: Any, run_id: UUID | str) -> CacheShare:
    """Sum the prompt tokens of every model call recorded for a run.

    Args:
        conn: An asyncpg pool or connection.
        run_id: The run (`sector_analysis.id`): `llm_usage.related_id`.

    Returns:
        The totals (all zero for a run without calls).
    """
    row = await conn.fetchrow(_TOTALS, str(run_id))
    return CacheShare(int(row["calls"]), int(row["input"]), int(row["read"]), int(row["written"]))


async def cached_share_line(conn: Any, run_id: UUID | str) -> str | None:
    """The cached share of a run's input tokens as one line; None for a run without calls.

    Args:
        conn: An asyncpg pool or connection.
        run_id: The run.

    Returns:
        `CacheShare.line()`, or None when no model call was recorded.
    """
    share = await cache_share(conn, run_id)
    return share.line() if share.calls else None
