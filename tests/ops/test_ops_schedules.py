"""`python -m jobqueue.inspect schedules` and `remove-schedule`, as a subprocess on real Redis."""

from __future__ import annotations

import json

from ops_helpers import run_cli


async def test_inspect_lists_and_removes_schedules(make_queue, redis_url, prefix):
    reports = make_queue("reports")
    other = make_queue("other")
    await reports.upsert_scheduler(
        "weekday-6am", cron="0 6 * * 1-5", tz="America/New_York", name="report", data={"k": 1}
    )
    await other.upsert_scheduler("pulse", every=90, name="ping")
    base = ["--redis", redis_url, "--prefix", prefix]

    shown = await run_cli(*base, "schedules")
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["QUEUE", "ID", "SCHEDULE", "JOB"]
    assert any("weekday-6am" in ln and "0 6 * * 1-5 (America/New_York)" in ln for ln in lines)
    assert any("pulse" in ln and "every 90s" in ln and "ping" in ln for ln in lines)

    one = await run_cli(*base, "schedules", "reports", "--json")
    assert one.code == 0, one.stderr
    [row] = json.loads(one.stdout)
    assert row["id"] == "weekday-6am" and row["queue"] == "reports" and row["data"] == {"k": 1}
    assert row["next_run"] and row["last_run"] is None

    refused = await run_cli(*base, "remove-schedule", "reports", "weekday-6am")
    assert refused.code == 2 and "--yes" in refused.stderr
    assert len(await reports.get_schedulers()) == 1

    done = await run_cli(*base, "remove-schedule", "reports", "weekday-6am", "--yes")
    assert done.code == 0, done.stderr
    assert "removed" in done.stdout
    assert await reports.get_schedulers() == []

    missing = await run_cli(*base, "remove-schedule", "reports", "weekday-6am", "--yes")
    assert missing.code == 2 and "no schedule 'weekday-6am'" in missing.stderr
    assert (await run_cli(*base, "schedules", "reports")).stdout.strip() == "no schedules"
