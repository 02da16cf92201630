"""Cost budgets: per run (`sector_analysis.budget_usd`) and per organisation and UTC day.

`BudgetGuard` is a `pipeline.ai.guard.Guard`: before a model call it reserves the call's
estimated worst-case cost (`pipeline.ai.estimate`) in PostgreSQL, on the run's row and on the
day's row in one transaction, each with a conditional update
(`... SET reserved = reserved + x WHERE spent + reserved + x <= budget`), so concurrent calls in
any number of processes never hold more than the budget. A call that does not fit is refused
with `LLMError(error_type=BUDGET_EXCEEDED, retryable=False)` before anything is sent, and the
run is marked (`budget_exceeded_at`). After the call the reservation is settled: the estimate
is given back and the real cost is spent; a failed call only gives the estimate back.

Each reservation is a row (`budget_reservation`) with the job, attempt and call index that
made it and an expiry (`PIPELINE_BUDGET_RESERVATION_TTL`, longer than any call). A holder that
crashed between reserving and settling cannot hold money forever: its job's next delivery
reclaims the reservation of the same call at once, and any reservation past its expiry is
reclaimed when a call would otherwise be refused (or by `reclaim_expired_reservations`). A
reclaimed reservation that is settled later still records its cost.

Lock order is always reservation row, then run row, then day row, so reservers and settlers
never deadlock each other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import asyncpg

from jobqueue import ConfigError, register_error_type
from pipeline.ai.base import LLMError, LLMResult
from pipeline.ai.estimate import actual_cost, estimate_call
from pipeline.ai.guard import LLMCall
from pipeline.cli_args import shown

__all__ = [
    "BUDGET_EXCEEDED",
    "BudgetGuard",
    "Reservation",
    "check_usd",
    "end_run_if_stopped",
    "reclaim_expired_reservations",
    "release",
    "reserve",
    "settle",
]

log = logging.getLogger(__name__)

BUDGET_EXCEEDED: Final = register_error_type("BUDGET_EXCEEDED", retryable=False)
"""A model call did not fit its run's or the organisation's daily budget: never retried."""

MAX_USD = 999_999
"""Largest amount of USD accepted (a budget): the database's `numeric(14, 8)` columns hold
less than a million, and a bigger budget is a mistake anyway."""

_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"


def check_usd(value: object, name: str) -> float:
    """Validate an amount of USD.

    Args:
        value: The amount.
        name: The option's name, for the error.

    Returns:
        The amount as a float.

    Raises:
        ConfigError: Not a finite number within [0, `MAX_USD`].
    """
    try:  # a huge int does not fit a float; a signalling Decimal NaN refuses comparisons
        good = (
            not isinstance(value, bool)
            and isinstance(value, int | float | Decimal)
            and 0 <= value <= MAX_USD
            and math.isfinite(value)
        )
    except (ArithmeticError, ValueError):
        good = False
    if not good:
        raise ConfigError(
            f"{name} must be a finite number of USD within [0, {MAX_USD}], got {shown(value)}"
        )
    assert isinstance(value, int | float | Decimal)  # checked above
    return float(value)


def _usd(value: float) -> Decimal:
    return Decimal(f"{value:.8f}")


@dataclass(frozen=True)
class Reservation:
    """Money held for one call until it is settled.

    Attributes:
        id: The `budget_reservation` row.
        estimate_usd: The amount held.
    """

    id: int
    estimate_usd: Decimal


class _Refused(Exception):
    pass


async def _move(
    conn: Any,
    run_id: UUID | None,
    org: str,
    day: date,
    reserved: Decimal,
    spent: Decimal,
) -> None:
    if run_id is not None:
        await conn.execute(
            "UPDATE sector_analysis SET reserved_usd = reserved_usd + $2, "
            "spent_usd = spent_usd + $3 WHERE id = $1",
            run_id,
            reserved,
            spent,
        )
    await conn.execute(
        "UPDATE budget_day SET reserved_usd = reserved_usd + $3, spent_usd = spent_usd + $4, "
        "updated_at = now() WHERE org = $1 AND day = $2",
        org,
        day,
        reserved,
        spent,
    )


async def _hold(
    conn: Any,
    call: LLMCall,
    estimate: Decimal,
    *,
    org: str,
    daily_budget_usd: float | None,
    ttl: float,
) -> int:
    """Inside a transaction: hold `estimate` on the run and the day, or raise `_Refused`."""
    run_id = call.run_id
    if run_id is not None:
        held = await conn.fetchval(
            "UPDATE sector_analysis SET reserved_usd = reserved_usd + $2 WHERE id = $1 "
            "AND (budget_usd IS NULL OR spent_usd + reserved_usd + $2 <= budget_usd) "
            "RETURNING true",
            run_id,
            estimate,
        )
        if not held:
            row = await conn.fetchrow(
                "SELECT budget_usd, spent_usd, reserved_usd FROM sector_analysis WHERE id = $1",
                run_id,
            )
            if row is not None:
                raise _Refused(
                    f"run budget exhausted: ${row['spent_usd']:.4f} spent + "
                    f"${row['reserved_usd']:.4f} reserved + ${estimate:.4f} for this "
                    f"{call.tier} call > budget ${row['budget_usd']:.4f}"
                )
            run_id = None  # the run is gone: nothing of it to hold
    day = await conn.fetchval(_TODAY)
    await conn.execute(
        "INSERT INTO budget_day (org, day) VALUES ($1, $2) ON CONFLICT DO NOTHING", org, day
    )
    limit = None if daily_budget_usd is None else _usd(daily_budget_usd)
    held = await conn.fetchval(
        "UPDATE budget_day SET reserved_usd = reserved_usd + $4, updated_at = now() "
        "WHERE org = $1 AND day = $2 "
        "AND ($3::numeric IS NULL OR spent_usd + reserved_usd + $4 <= $3) RETURNING true",
        org,
        day,
        limit,
        estimate,
    )
    if not held:
        row = await conn.fetchrow(
            "SELECT spent_usd, reserved_usd FROM budget_day WHERE org = $1 AND day = $2", org, day
        )
        raise _Refused(
            f"daily budget exhausted (organisation {org!r}, {day} UTC): "
            f"${row['spent_usd']:.4f} spent + ${row['reserved_usd']:.4f} reserved + "
            f"${estimate:.4f} for this {call.tier} call > budget ${limit:.4f}"
        )
    reservation_id: int = await conn.fetchval(
        """
        INSERT INTO budget_reservation (run_id, org, day, job_id, attempt, call_index, stage,
            model, estimate_usd, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))
        RETURNING id
        """,
        run_id,
        org,
        day,
        call.job_id,
        call.attempt,
        call.call_index,
        call.stage,
        call.model,
        estimate,
        ttl,
    )
    return reservation_id


async def _reserve_once(
    pool: asyncpg.Pool,
    call: LLMCall,
    estimate: Decimal,
    *,
    org: str,
    daily_budget_usd: float | None,
    ttl: float,
) -> int | str:
    """One attempt: the reservation's id, or why it was refused."""
    async with pool.acquire() as conn, conn.transaction():
        if call.job_id is not None:
            # the same call of the same job attempt is still held: its earlier delivery died
            # (or could not settle), so that money is given back before this one is held
            stale = await conn.fetch(
                "UPDATE budget_reservation SET state = 'expired', finished_at = now() "
                "WHERE job_id = $1 AND attempt = $2 AND call_index = $3 AND state = 'held' "
                "RETURNING run_id, org, day, estimate_usd",
                call.job_id,
                call.attempt,
                call.call_index,
            )
            for s in stale:
                await _move(conn, s["run_id"], s["org"], s["day"], -s["estimate_usd"], Decimal(0))
        try:
            async with conn.transaction():  # a savepoint: a refusal undoes only the holds
                return await _hold(
                    conn, call, estimate, org=org, daily_budget_usd=daily_budget_usd, ttl=ttl
                )
        except _Refused as refused:
            return str(refused)


async def reserve(
    pool: asyncpg.Pool,
    call: LLMCall,
    estimate_usd: float,
    *,
    org: str = "default",
    daily_budget_usd: float | None = None,
    ttl: float = 3600.0,
) -> Reservation:
    """Hold `estimate_usd` for a call on its run and on today's row of the organisation.

    Args:
        pool: The PostgreSQL pool.
        call: The call (its `run_id` selects the run; None: only the daily budget applies).
        estimate_usd: The amount to hold.
        org: The organisation whose daily budget applies.
        daily_budget_usd: The organisation's budget per UTC day; None for no limit.
        ttl: Seconds after which a reservation not settled is reclaimed.

    Returns:
        The reservation, to `settle` or `release`.

    Raises:
        LLMError: `BUDGET_EXCEEDED`, not retryable: the call does not fit (the run is marked).
    """
    estimate = _usd(estimate_usd)
    kwargs: dict[str, Any] = {"org": org, "daily_budget_usd": daily_budget_usd, "ttl": ttl}
    outcome = await _reserve_once(pool, call, estimate, **kwargs)
    if isinstance(outcome, str) and await reclaim_expired_reservations(pool):
        outcome = await _reserve_once(pool, call, estimate, **kwargs)
    if isinstance(outcome, str):
        if call.run_id is not None:
            await pool.execute(
                "UPDATE sector_analysis SET budget_exceeded_at = "
                "COALESCE(budget_exceeded_at, now()) WHERE id = $1",
                call.run_id,
            )
        log.warning("model call refused: %s (job %s)", outcome, call.job_id)
        raise LLMError(outcome, error_type=BUDGET_EXCEEDED, retryable=False)
    return Reservation(outcome, estimate)


async def _finish(pool: asyncpg.Pool, reservation_id: int, cost: Decimal | None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, run_id, org, day, estimate_usd FROM budget_reservation "
            "WHERE id = $1 FOR UPDATE",
            reservation_id,
        )
        if row is None or row["state"] in ("settled", "released"):
            return
        held = row["state"] == "held"
        if not held and cost is None:
            return  # reclaimed already, and nothing was spent
        await conn.execute(
            "UPDATE budget_reservation SET state = $2, cost_usd = $3, finished_at = now() "
            "WHERE id = $1",
            reservation_id,
            "released" if cost is None else "settled",
            cost,
        )
        await _move(
            conn,
            row["run_id"],
            row["org"],
            row["day"],
            -row["estimate_usd"] if held else Decimal(0),
            cost or Decimal(0),
        )


async def settle(pool: asyncpg.Pool, reservation_id: int, cost_usd: float) -> None:
    """Give back a call's reservation and spend what it really cost (once; later calls no-op).

    Args:
        pool: The PostgreSQL pool.
        reservation_id: `Reservation.id`.
        cost_usd: The call's real cost.
    """
    await _finish(pool, reservation_id, _usd(max(0.0, cost_usd)))


async def release(pool: asyncpg.Pool, reservation_id: int) -> None:
    """Give back a reservation whose call failed or was never made (once).

    Args:
        pool: The PostgreSQL pool.
        reservation_id: `Reservation.id`.
    """
    await _finish(pool, reservation_id, None)


async def reclaim_expired_reservations(pool: asyncpg.Pool, *, limit: int = 100) -> int:
    """Give back reservations held past their expiry (their holders crashed).

    Args:
        pool: The PostgreSQL pool.
        limit: The most to reclaim in this call.

    Returns:
        How many were reclaimed.
    """
    reclaimed = 0
    while reclaimed < limit:
        # one per transaction, in the same lock order as settling
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE budget_reservation SET state = 'expired', finished_at = now()
                WHERE id = (SELECT id FROM budget_reservation
                            WHERE state = 'held' AND expires_at <= now()
                            ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING run_id, org, day, estimate_usd
                """
            )
            if row is None:
                break
            await _move(
                conn, row["run_id"], row["org"], row["day"], -row["estimate_usd"], Decimal(0)
            )
        reclaimed += 1
    if reclaimed:
        log.info("reclaimed %d expired budget reservation(s)", reclaimed)
    return reclaimed


class BudgetGuard:
    """The `Guard` that keeps model calls within the run's and the day's budget.

    Args:
        pool: The PostgreSQL pool.
        org: The organisation (one per deployment) whose daily budget applies.
        daily_budget_usd: Its budget per UTC day; None for no limit (spend is still counted).
        reservation_ttl: Seconds a reservation may stay unsettled before it is reclaimed; longer
            than any call.

    Raises:
        ConfigError: A bad `org`, budget or TTL.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        org: str = "default",
        daily_budget_usd: float | None = None,
        reservation_ttl: float = 3600.0,
    ) -> None:
        if not isinstance(org, str) or not org.strip() or len(org) > 200:
            raise ConfigError(f"org must be a non-blank name of at most 200 characters: {org!r}")
        if isinstance(reservation_ttl, bool) or not (
            isinstance(reservation_ttl, int | float)
            and math.isfinite(reservation_ttl)
            and reservation_ttl > 0
        ):
            raise ConfigError(
                f"reservation_ttl must be a finite number of seconds > 0, got {reservation_ttl!r}"
            )
        self.pool = pool
        self.org = org
        self.daily_budget_usd = (
            None if daily_budget_usd is None else check_usd(daily_budget_usd, "daily_budget_usd")
        )
        self.reservation_ttl = float(reservation_ttl)

    async def before(self, call: LLMCall) -> Reservation:
        """Reserve the call's estimated worst case (see `reserve`)."""
        return await reserve(
            self.pool,
            call,
            estimate_call(call).cost_usd,
            org=self.org,
            daily_budget_usd=self.daily_budget_usd,
            ttl=self.reservation_ttl,
        )

    async def after(
        self, call: LLMCall, reservation: Reservation, outcome: LLMResult | BaseException
    ) -> None:
        """Settle with the real cost, or release when the call did not succeed."""
        if isinstance(outcome, LLMResult):
            await settle(self.pool, reservation.id, actual_cost(call, outcome))
        else:
            await release(self.pool, reservation.id)


async def end_run_if_stopped(pool: asyncpg.Pool, run_id: UUID) -> bool:
    """After a job refused for budget failed for good: end its run as `budget_exceeded` once
    nothing of it is left running (a refused ranking of its only sub-sector in progress).
    A refused research's own hook ends the run so; a run with stocks still being analysed is
    left to the fan-in, which ends it the same way.

    Args:
        pool: The PostgreSQL pool.
        run_id: The run.

    Returns:
        True when this call ended the run.
    """
    ended = await pool.fetchval(
        """
        UPDATE sector_analysis SET status = 'budget_exceeded',
            completed_at = COALESCE(completed_at, now())
        WHERE id = $1 AND budget_exceeded_at IS NOT NULL
          AND status IN ('researching', 'in_progress', 'completed', 'failed')
          AND NOT EXISTS (SELECT 1 FROM sub_sector WHERE sector_analysis_id = $1
                          AND status IN ('approved', 'ranking', 'analyzing'))
        RETURNING true
        """,
        run_id,
    )
    return bool(ended)
