"""schema.sql version 2 (cost budgets) on a database of version 1: the columns, the tables and
the new run status are added in place (with what later versions add), and migrating again
changes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from pipeline import db

V1_STATUSES = "('researching', 'awaiting_approval', 'in_progress', 'completed', 'failed')"


async def make_version_1(conn: asyncpg.Connection) -> None:
    """Turn a current database back into what version 1 left: no budget columns or tables,
    the old status CHECK, only version 1 recorded."""
    await conn.execute(
        f"""
        DROP TABLE budget_reservation;
        DROP TABLE budget_day;
        ALTER TABLE sector_analysis DROP CONSTRAINT sector_analysis_budget_check;
        ALTER TABLE sector_analysis DROP CONSTRAINT sector_analysis_status_check;
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_status_check
            CHECK (status IN {V1_STATUSES});
        ALTER TABLE sector_analysis DROP COLUMN budget_usd, DROP COLUMN spent_usd,
            DROP COLUMN reserved_usd, DROP COLUMN budget_exceeded_at,
            DROP COLUMN IF EXISTS user_tier, DROP COLUMN cancelled_at;
        ALTER TABLE job_status DROP CONSTRAINT job_status_status_check;
        ALTER TABLE job_status ADD CONSTRAINT job_status_status_check
            CHECK (status IN ('waiting', 'active', 'completed', 'failed'));
        DELETE FROM schema_version;
        INSERT INTO schema_version (version) VALUES (1);
        """
    )


async def test_version_1_is_upgraded_in_place(fresh_database: str) -> None:
    assert db.SCHEMA_VERSION >= 2
    await db.migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await make_version_1(conn)
        old = await conn.fetchval(
            "INSERT INTO sector_analysis (user_id, sector_name) VALUES ('u', 'Tech') RETURNING id"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE sector_analysis SET status = 'budget_exceeded' WHERE id = $1", old
            )
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
        # and once more: nothing changes
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
        row = await conn.fetchrow(
            "SELECT budget_usd, spent_usd, reserved_usd FROM sector_analysis WHERE id = $1", old
        )
        assert tuple(row) == (None, 0, 0)  # a run of before has no budget
        await conn.execute(
            "UPDATE sector_analysis SET status = 'budget_exceeded' WHERE id = $1", old
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE sector_analysis SET reserved_usd = -1 WHERE id = $1", old)
        checks = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'sector_analysis'::regclass "
            "AND conname IN ('sector_analysis_status_check', 'sector_analysis_budget_check')"
        )
        assert checks == 2
        versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [v["version"] for v in versions] == [1, db.SCHEMA_VERSION]
        await conn.execute("INSERT INTO budget_day (org, day) VALUES ('o', current_date)")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO budget_reservation (org, day, model, estimate_usd, expires_at, "
                "state) VALUES ('o', current_date, 'm', 0.1, now(), 'lost')"
            )
    finally:
        await conn.close()


async def test_version_2_gets_user_tiers_in_place(fresh_database: str) -> None:
    await db.migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute(
            "ALTER TABLE sector_analysis DROP COLUMN user_tier; DELETE FROM schema_version "
            "WHERE version > 2"
        )
        old = await conn.fetchval(
            "INSERT INTO sector_analysis (user_id, sector_name) VALUES ('u', 'Tech') RETURNING id"
        )
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
        assert await conn.fetchval("SELECT user_tier FROM sector_analysis WHERE id = $1", old) == (
            "free"
        )
        await conn.execute("UPDATE sector_analysis SET user_tier = 'enterprise' WHERE id = $1", old)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE sector_analysis SET user_tier = 'gold' WHERE id = $1", old)
    finally:
        await conn.close()
