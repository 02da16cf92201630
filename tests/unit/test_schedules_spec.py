"""Schedules without Redis: validation of ids, intervals, cron expressions and time zones, and
the run times a spec gives (first run, the following run, the missed-ticks policy, DST)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from jobqueue import ConfigError
from jobqueue.schedules._spec import make_spec, validate_scheduler_id


def ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


@pytest.mark.parametrize(
    ("every", "cron", "tz", "match"),
    [
        (None, None, "UTC", "exactly one"),
        (1.0, "* * * * *", "UTC", "exactly one"),
        (0, None, "UTC", "at least"),
        (0.0004, None, "UTC", "at least"),
        (-5, None, "UTC", "-5"),
        (float("inf"), None, "UTC", "inf"),
        (float("nan"), None, "UTC", "nan"),
        (True, None, "UTC", "True"),
        ("10", None, "UTC", "'10'"),
        (None, "61 * * * *", "UTC", "61"),
        (None, "* * *", "UTC", r"\* \* \*"),
        (None, "", "UTC", "''"),
        (None, "@hourly please", "UTC", "hourly"),
        (None, "* * * * *", "Mars/Olympus", "Mars/Olympus"),
        (None, "* * * * *", "", "''"),
        (1.0, None, "Not/AZone", "Not/AZone"),
    ],
)
def test_bad_specs_are_refused_naming_the_value(
    every: object, cron: object, tz: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        make_spec(every, cron, tz)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a b", "x:y", "-lead", "é", "a" * 101, 7])
def test_bad_scheduler_ids_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="scheduler id"):
        validate_scheduler_id(bad)  # type: ignore[arg-type]


def test_good_ids_pass() -> None:
    for good in ("a", "watch.technology", "daily-report_2", "A" * 100):
        assert validate_scheduler_id(good) == good


def test_canonical_spec_names_the_schedule() -> None:
    assert make_spec(0.2, None, "UTC").canonical == "every:200"
    # whitespace does not make another schedule
    a = make_spec(None, "0  6 * *   1-5", "America/New_York")
    assert a.canonical == "cron:0 6 * * 1-5@America/New_York"
    assert make_spec(None, "0 6 * * 1-5", "UTC").canonical != a.canonical


def test_interval_runs_stay_on_their_grid_and_coalesce_missed_ticks() -> None:
    spec = make_spec(0.2, None, "UTC")
    assert spec.first_run(1_000) == 1_200
    # produced on time (or a bit late): the next tick
    assert spec.following(1_200, 1_200) == 1_400
    assert spec.following(1_200, 1_399) == 1_400
    # produced late by more than an interval: the missed ticks are not produced one by one,
    # the schedule resumes at its first run after now, on the grid
    assert spec.following(1_200, 1_400) == 1_600
    assert spec.following(1_200, 2_250) == 2_400
    assert spec.following(1_200, 1_000_000) == 1_000_200


def test_cron_runs_in_its_time_zone() -> None:
    spec = make_spec(None, "0 6 * * 1-5", "America/New_York")
    ny = ZoneInfo("America/New_York")
    friday_noon = ms(datetime(2026, 3, 6, 12, 0, tzinfo=ny))
    monday = spec.first_run(friday_noon)
    assert datetime.fromtimestamp(monday / 1000, ny) == datetime(2026, 3, 9, 6, 0, tzinfo=ny)
    # across the DST change (8 March 2026): still 06:00 local, now UTC-4
    assert datetime.fromtimestamp(monday / 1000, UTC).hour == 10
    tuesday = spec.following(monday, monday + 5)
    assert tuesday - monday == 24 * 3_600_000
    # missed a whole week: one tick, then the next weekday morning after now
    later = ms(datetime(2026, 3, 18, 7, 0, tzinfo=ny))  # a Wednesday, after 06:00
    nxt = spec.following(monday, later)
    assert datetime.fromtimestamp(nxt / 1000, ny) == datetime(2026, 3, 19, 6, 0, tzinfo=ny)


def test_cron_with_seconds() -> None:
    spec = make_spec(None, "* * * * * */10", "UTC")
    assert spec.first_run(1_700_000_001_500) == 1_700_000_010_000
    assert spec.following(1_700_000_010_000, 1_700_000_010_003) == 1_700_000_020_000
