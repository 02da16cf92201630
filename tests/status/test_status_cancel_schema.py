"""schema.sql version 4 (cancelling a run) on an older database (version 2): `cancelled_at` and the
`cancelled` statuses of runs and job rows are added in place, and migrating again changes
nothing."""

from __future__ import annotations

import asyncpg
import pytest

from pipeline import db

V2_RUN_STATUSES = (
    "('researching', 'awaiting_approval', 'in_progress', 'completed', 'failed', 'budget_exceeded')"
)
V2_JOB_STATUSES = "('waiting', 'active', 'completed', 'failed')"


async def make_version_2(conn: asyncpg.Connection) -> None:
    """Turn a current database back into what version 2 left."""
    await conn.execute(
        f"""
        ALTER TABLE sector_analysis DROP CONSTRAINT sector_analysis_status_check;
        ALTER TABLE sector_analysis ADD CONSTRAINT sector_analysis_status_check
            CHECK (status IN {V2_RUN_STATUSES});
        ALTER TABLE job_status DROP CONSTRAINT job_status_status_check;
        ALTER TABLE job_status ADD CONSTRAINT job_status_status_check
            CHECK (status IN {V2_JOB_STATUSES});
        ALTER TABLE sector_analysis DROP COLUMN cancelled_at;
        DELETE FROM schema_version;
        INSERT INTO schema_version (version) VALUES (2);
        """
    )


async def test_version_2_is_upgraded_in_place(fresh_database: str) -> None:
    assert db.SCHEMA_VERSION >= 3
    await db.migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await make_version_2(conn)
        run = await conn.fetchval(
            "INSERT INTO sector_analysis (user_id, sector_name) VALUES ('u', 'Tech') RETURNING id"
        )
        await conn.execute("INSERT INTO job_status (job_id, job_type) VALUES ('j', 't')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE sector_analysis SET status = 'cancelled' WHERE id = $1", run)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE job_status SET status = 'cancelled' WHERE job_id = 'j'")
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
        assert await db.migrate(fresh_database) == db.SCHEMA_VERSION  # nothing changes
        await conn.execute(
            "UPDATE sector_analysis SET status = 'cancelled', cancelled_at = now() WHERE id = $1",
            run,
        )
        await conn.execute("UPDATE job_status SET status = 'cancelled' WHERE job_id = 'j'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE job_status SET status = 'gone' WHERE job_id = 'j'")
        # the statuses of before are all still allowed
        await conn.execute(
            "UPDATE sector_analysis SET status = 'budget_exceeded' WHERE id = $1", run
        )
        versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [v["version"] for v in versions] == [2, db.SCHEMA_VERSION]
    finally:
        await conn.close()
