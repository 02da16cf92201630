"""What a schedule means: an interval or a cron expression in a time zone, validated, and the
run times it gives (the missed-ticks policy lives in `following`).

Cron expressions are parsed and iterated by `croniter` (5 fields, or 6 with seconds last),
time zones by `zoneinfo`; nothing here parses cron by hand.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..core._inputs import finite, shown
from ..errors import ConfigError

__all__ = ["SCHEDULER_ID_RE", "ScheduleSpec", "make_spec", "validate_scheduler_id"]

SCHEDULER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_MIN_EVERY_MS = 1
_MAX_EVERY = 10 * 365 * 86400.0  # seconds: a run time past that is a mistake
_MAX_TZ_CHARS = 100


def validate_scheduler_id(scheduler_id: str) -> str:
    """Return `scheduler_id` if valid, else raise `ConfigError` naming it."""
    if not isinstance(scheduler_id, str) or not SCHEDULER_ID_RE.match(scheduler_id):
        raise ConfigError(
            f"scheduler id {shown(scheduler_id)} is invalid: "
            "use 1-100 letters, digits, '_', '.', '-'"
        )
    return scheduler_id


def _zone(tz: str) -> ZoneInfo:
    # checked before the cache: an unhashable or huge value is refused, not cached
    if not isinstance(tz, str) or not 0 < len(tz) <= _MAX_TZ_CHARS:
        raise ConfigError(f"tz must be an IANA time zone name such as 'UTC', got {shown(tz)}")
    return _load_zone(tz)


@lru_cache(maxsize=256)
def _load_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name no file can have
        raise ConfigError(f"tz {shown(tz)} is not a known IANA time zone") from None


def _check_cron(cron: str) -> str:
    from croniter import croniter

    if not isinstance(cron, str) or not cron.strip():
        raise ConfigError(
            f"cron must be a cron expression such as '0 6 * * 1-5', got {shown(cron)}"
        )
    expr = " ".join(cron.split())
    if len(expr.split()) not in (5, 6) or not croniter.is_valid(expr):
        raise ConfigError(
            f"cron {shown(cron)} is not a valid cron expression (5 fields, or 6 with seconds last)"
        )
    return expr


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """An interval (`every_ms`) or a cron expression (`cron`, in the time zone `tz`).

    Run times are ms on the Redis clock. An interval's runs are its first run plus whole
    intervals; a cron's are the expression's matches in `tz` (DST as `croniter` handles it).
    """

    every_ms: int | None
    cron: str | None
    tz: str

    @property
    def canonical(self) -> str:
        """The spec as one string: equal strings are the same schedule."""
        if self.every_ms is not None:
            return f"every:{self.every_ms}"
        return f"cron:{self.cron}@{self.tz}"

    def _cron_after(self, after_ms: int) -> int:
        from croniter import CroniterBadDateError, croniter

        start = datetime.fromtimestamp(after_ms / 1000, _zone(self.tz))
        try:
            nxt: datetime = croniter(self.cron, start).get_next(datetime)
        except (CroniterBadDateError, ValueError, OverflowError):
            # a valid expression that never matches (`0 0 30 2 *`: February 30)
            raise ConfigError(f"cron {shown(self.cron)} has no run time after now") from None
        return math.floor(nxt.timestamp() * 1000)

    def first_run(self, now_ms: int) -> int:
        """The first run of a new (or changed) schedule made at `now_ms`: one interval from
        now, or the cron's first match after now."""
        if self.every_ms is not None:
            return now_ms + self.every_ms
        return self._cron_after(now_ms)

    def following(self, tick_ms: int, now_ms: int) -> int:
        """The run after the tick at `tick_ms`, produced at `now_ms` (>= tick_ms).

        The missed-ticks policy: the first run time strictly after both the tick and now.
        Ticks that fell between them (a downtime with no worker) are not produced one by one:
        the tick being produced stands for all of them (coalesced, one job), and the schedule
        resumes at its next future run, on its grid (interval runs stay at first run + k
        intervals).
        """
        if self.every_ms is not None:
            every = self.every_ms
            missed = max(0, now_ms - tick_ms) // every
            return tick_ms + (missed + 1) * every
        return self._cron_after(max(tick_ms, now_ms))


def make_spec(every: float | None, cron: str | None, tz: str) -> ScheduleSpec:
    """Validate exactly one of `every` (seconds) and `cron`, and `tz`.

    Raises:
        ConfigError: both or neither given, a bad interval, cron expression or time zone (the
            message names the value).
    """
    if (every is None) == (cron is None):
        raise ConfigError(
            f"give exactly one of every= and cron= (got every={shown(every)}, cron={shown(cron)})"
        )
    _zone(tz)
    if every is not None:
        if (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not finite(every)
            or every > _MAX_EVERY
        ):
            raise ConfigError(
                f"every must be a finite number of seconds in (0, 10 years], got {shown(every)}"
            )
        every_ms = round(every * 1000)
        if every_ms < _MIN_EVERY_MS:
            raise ConfigError(f"every must be at least 0.001 seconds, got {every!r}")
        return ScheduleSpec(every_ms, None, tz)
    assert cron is not None
    return ScheduleSpec(None, _check_cron(cron), tz)
