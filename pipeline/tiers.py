"""Subscription tiers and fair share: a run's user tier sets the priority of every job of
the run, and its user is the run's group in the engine (`Queue.add(group=...)`), so within a
tier the workers serve users in turn: a user with 20 sectors queued delays another user's
first analysis by at most one job per worker slot, not by their whole backlog.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Literal, get_args
from uuid import UUID

import asyncpg

__all__ = [
    "DEFAULT_TIER",
    "TIER_PRIORITY",
    "RunFairness",
    "UserTier",
    "check_tier",
    "fairness_of_runs",
    "user_group",
]

UserTier = Literal["free", "pro", "enterprise"]
"""A user's subscription tier, stored on the run (`sector_analysis.user_tier`)."""

DEFAULT_TIER: UserTier = "free"

TIER_PRIORITY: Mapping[str, int] = {"free": 0, "pro": 10, "enterprise": 20}
"""The engine priority of every job of a run of each tier (higher is taken first)."""

_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.:\-]{1,96}$")

RunFairness = tuple[str, int]
"""(group, priority) of the jobs of one run."""


def check_tier(tier: object) -> UserTier:
    """The tier if it is one of `UserTier`, else ValueError naming it and the choices."""
    if tier not in get_args(UserTier):
        shown = repr(tier) if len(repr(tier)) <= 80 else f"{repr(tier)[:80]}..."
        raise ValueError(f"user_tier {shown} is not one of {list(get_args(UserTier))}")
    return tier  # type: ignore[return-value]


def user_group(user_id: str) -> str:
    """The engine group of a user: `u:<user id>`, or `h:<sha1>` for an id a group name cannot
    hold (group names are 1-100 of letters, digits, `_ . : -`)."""
    if _GROUP_SAFE.match(user_id):
        return f"u:{user_id}"
    return "h:" + hashlib.sha1(user_id.encode()).hexdigest()


async def fairness_of_runs(
    pool: asyncpg.Pool, run_ids: Iterable[UUID | str]
) -> dict[str, RunFairness]:
    """(group, priority) of each run that still exists, by run id (text), in one query."""
    ids = sorted({UUID(str(r)) for r in run_ids})
    if not ids:
        return {}
    rows = await pool.fetch(
        "SELECT id, user_id, user_tier FROM sector_analysis WHERE id = ANY($1::uuid[])", ids
    )
    return {
        str(r["id"]): (user_group(r["user_id"]), TIER_PRIORITY.get(r["user_tier"], 0)) for r in rows
    }
