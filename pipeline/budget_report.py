"""How much a run and the organisation spent against their budgets, for `status` and the
end-of-run summary (the money itself is held and spent by `pipeline.budget`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

__all__ = ["DayBudget", "RunBudget", "get_day_budget", "get_run_budget"]


def _share(spent: float, budget: float) -> float:
    if budget > 0:
        return spent / budget
    return 1.0 if spent > 0 else 0.0


@dataclass(frozen=True)
class RunBudget:
    """A run's budget and spend.

    Attributes:
        status: The run's status.
        budget_usd: Its budget, None for none.
        spent_usd: What its finished calls cost.
        reserved_usd: What its calls in flight hold.
        exceeded: Whether a call of it was refused.
    """

    status: str
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float
    exceeded: bool

    def line(self) -> str:
        """`spent $x.xx of $y.yy budget (z%)`, with what is reserved and whether it ran out."""
        if self.budget_usd is None:
            text = f"spent ${self.spent_usd:.2f} (no budget)"
        else:
            share = _share(self.spent_usd, self.budget_usd)
            text = f"spent ${self.spent_usd:.2f} of ${self.budget_usd:.2f} budget ({share:.0%})"
        if self.reserved_usd > 0:
            text += f", ${self.reserved_usd:.2f} reserved"
        if self.exceeded:
            text += "; budget exceeded: calls were refused"
        return text


async def get_run_budget(conn: Any, run_id: UUID) -> RunBudget | None:
    """Read a run's budget and spend.

    Args:
        conn: A pool or connection.
        run_id: The run.

    Returns:
        The budget, or None when there is no such run.
    """
    row = await conn.fetchrow(
        "SELECT status, budget_usd, spent_usd, reserved_usd, budget_exceeded_at "
        "FROM sector_analysis WHERE id = $1",
        run_id,
    )
    if row is None:
        return None
    return RunBudget(
        status=row["status"],
        budget_usd=None if row["budget_usd"] is None else float(row["budget_usd"]),
        spent_usd=float(row["spent_usd"]),
        reserved_usd=float(row["reserved_usd"]),
        exceeded=row["budget_exceeded_at"] is not None,
    )


@dataclass(frozen=True)
class DayBudget:
    """The organisation's spend today (UTC) against its daily budget.

    Attributes:
        org: The organisation.
        day: The UTC day.
        budget_usd: The daily budget, None for none.
        spent_usd: Spent today.
        reserved_usd: Held by calls in flight.
    """

    org: str
    day: date
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float

    def line(self) -> str:
        """`today (UTC): spent $x.xx of $y.yy daily budget (z%)`."""
        text = f"today ({self.day} UTC): spent ${self.spent_usd:.2f}"
        if self.budget_usd is not None:
            share = _share(self.spent_usd, self.budget_usd)
            text += f" of ${self.budget_usd:.2f} daily budget ({share:.0%})"
        if self.reserved_usd > 0:
            text += f", ${self.reserved_usd:.2f} reserved"
        return text


async def get_day_budget(conn: Any, org: str, budget_usd: float | None) -> DayBudget:
    """Read the organisation's spend today (UTC).

    Args:
        conn: A pool or connection.
        org: The organisation.
        budget_usd: Its daily budget (a setting), None for none.

    Returns:
        Today's spend; zeros when nothing was spent yet.
    """
    row = await conn.fetchrow(
        "SELECT d.day, coalesce(b.spent_usd, 0) AS spent, coalesce(b.reserved_usd, 0) AS held "
        "FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS day) d "
        "LEFT JOIN budget_day b ON b.org = $1 AND b.day = d.day",
        org,
    )
    return DayBudget(org, row["day"], budget_usd, float(row["spent"]), float(row["held"]))
