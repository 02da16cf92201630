"""pipeline.status: typed rows, CRUD, the never-regress rules, transactions, cleanup."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import pydantic
import pytest
from status_helpers import uid

from pipeline import status as st
from pipeline.db import Connection


async def test_create_and_get_typed_row(pool: asyncpg.Pool) -> None:
    job_id, related = uid(), uid("sector")
    row = await st.create_job_status(job_id, "sector_research", related, queue="research")
    assert isinstance(row, st.JobStatusRow)
    assert (row.job_id, row.job_type, row.related_id, row.queue) == (
        job_id,
        "sector_research",
        related,
        "research",
    )
    assert (row.status, row.progress, row.attempts, row.finished) == ("waiting", 0, 0, False)
    assert (row.event_ms, row.event_seq) == (0, 0)
    assert isinstance(row.created_at, datetime) and row.created_at.tzinfo is not None
    assert await st.get_job_status(job_id) == row
    assert await st.get_job_status(uid()) is None
    with pytest.raises(pydantic.ValidationError):
        row.status = "failed"  # type: ignore[misc]  # rows are frozen


async def test_create_is_idempotent_and_fills_blanks(pool: asyncpg.Pool) -> None:
    """A second create changes nothing set; it only fills what the mirror could not know."""
    job_id = uid()
    await st.create_job_status(job_id, "unknown")  # as if the mirror had created it
    await st.update_job_status(job_id, status="active", progress=30)
    row = await st.create_job_status(job_id, "stock_ranking", "sub-1", queue="ranking")
    assert (row.job_type, row.related_id, row.queue) == ("stock_ranking", "sub-1", "ranking")
    assert (row.status, row.progress) == ("active", 30)
    again = await st.create_job_status(job_id, "other", "sub-2", queue="other")
    assert (again.job_type, again.related_id, again.queue) == ("stock_ranking", "sub-1", "ranking")


async def test_get_jobs_by_related_id(pool: asyncpg.Pool) -> None:
    related = uid("stock")
    ids = [uid() for _ in range(3)]
    for job_id in ids:
        await st.create_job_status(job_id, "stock_analysis", related)
    await st.create_job_status(uid(), "stock_analysis", uid("other"))
    rows = await st.get_jobs_by_related_id(related)
    assert [r.job_id for r in rows] == ids
    assert await st.get_jobs_by_related_id(uid("none")) == []


async def test_update_moves_forward(pool: asyncpg.Pool) -> None:
    job_id = uid()
    await st.create_job_status(job_id, "judge_review")
    row = await st.update_job_status(job_id, status="active", attempts=1)
    assert row is not None and (row.status, row.attempts) == ("active", 1)
    row = await st.update_job_status(job_id, progress=60)
    assert row is not None and row.progress == 60
    # Progress never decreases within one status...
    row = await st.update_job_status(job_id, progress=20)
    assert row is not None and row.progress == 60
    # ...and completing sets 100 unless told otherwise.
    row = await st.update_job_status(job_id, status="completed")
    assert row is not None and (row.status, row.progress, row.finished) == ("completed", 100, True)
    assert row.updated_at >= row.created_at
    assert await st.update_job_status(uid(), status="active") is None


async def test_finished_rows_do_not_regress_unless_forced(pool: asyncpg.Pool) -> None:
    job_id = uid()
    await st.create_job_status(job_id, "format_insights")
    await st.update_job_status(job_id, status="failed", error_type="FATAL", error_message="x")
    row = await st.update_job_status(job_id, status="active", progress=10)
    assert row is not None and (row.status, row.progress) == ("failed", 0)
    # A final status may still replace a final status.
    row = await st.update_job_status(job_id, status="completed")
    assert row is not None and row.status == "completed"
    row = await st.update_job_status(job_id, status="waiting", progress=0, force=True)
    assert row is not None and (row.status, row.progress) == ("waiting", 0)


async def test_update_validates(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="status"):
        await st.update_job_status(uid(), status="lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="progress"):
        await st.update_job_status(uid(), progress=101)
    with pytest.raises(ValueError, match="attempts"):
        await st.update_job_status(uid(), attempts=-1)


async def test_error_messages_are_redacted_and_cleaned(pool: asyncpg.Pool) -> None:
    """No secret and no NUL reaches a row; long messages are cut."""
    job_id = uid()
    await st.create_job_status(job_id, "sector_research")
    message = (
        "connect to postgresql://app:canary-pw@db/x failed; key sk-canary1234567 "
        "header Bearer canarytoken123\x00 " + "y" * 5000
    )
    row = await st.update_job_status(job_id, status="failed", error_message=message)
    assert row is not None and row.error_message is not None
    for canary in ("canary-pw", "canary1234567", "canarytoken123", "\x00"):
        assert canary not in row.error_message
    assert len(row.error_message) <= 2000


async def test_one_transaction_with_a_domain_update(pool: asyncpg.Pool) -> None:
    """A handler's domain write and its status write commit or roll back together."""
    job_id = uid()
    await st.create_job_status(job_id, "sector_research")

    class Boom(Exception):
        pass

    async def failing_handler(conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO sector_analysis (user_id, sector_name) VALUES ($1, 'Energy')", job_id
            )
            row = await st.update_job_status(job_id, status="completed", conn=conn)
            assert row is not None and row.status == "completed"  # visible inside
            raise Boom

    async with pool.acquire() as conn:
        with pytest.raises(Boom):
            await failing_handler(conn)
        count = "SELECT count(*) FROM sector_analysis WHERE user_id = $1"
        assert await conn.fetchval(count, job_id) == 0
        row = await st.get_job_status(job_id)
        assert row is not None and row.status == "waiting"

        async with conn.transaction():
            await conn.execute(
                "INSERT INTO sector_analysis (user_id, sector_name) VALUES ($1, 'Energy')", job_id
            )
            await st.update_job_status(job_id, status="completed", conn=conn)
        assert await conn.fetchval(count, job_id) == 1
        row = await st.get_job_status(job_id, conn=conn)
        assert row is not None and row.status == "completed"


async def test_cleanup_old_jobs_pg(pool: asyncpg.Pool) -> None:
    """Only finished rows older than the threshold go; running and recent ones stay."""
    old_done, old_failed, old_active, recent_done = (uid() for _ in range(4))
    for job_id in (old_done, old_failed, old_active, recent_done):
        await st.create_job_status(job_id, "stock_analysis")
    await st.update_job_status(old_done, status="completed")
    await st.update_job_status(old_failed, status="failed")
    await st.update_job_status(old_active, status="active")
    await st.update_job_status(recent_done, status="completed")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE job_status SET updated_at = now() - interval '10 days'"
            " WHERE job_id = ANY($1::text[])",
            [old_done, old_failed, old_active],
        )
    deleted = await st.cleanup_old_jobs_pg(7)
    assert deleted >= 2
    assert await st.get_job_status(old_done) is None
    assert await st.get_job_status(old_failed) is None
    assert await st.get_job_status(old_active) is not None
    assert await st.get_job_status(recent_done) is not None
    with pytest.raises(ValueError, match="negative"):
        await st.cleanup_old_jobs_pg(-1)


def test_names_stay_where_users_import_them() -> None:
    """The split (API in status, rules in status_model, folding in status_fold) moved nothing
    out of reach: `pipeline.status` and `pipeline` export what they did."""
    import importlib

    import pipeline
    from pipeline import status_fold, status_model

    assert st.__all__ == [
        "FINISHED",
        "UNKNOWN_JOB_TYPE",
        "JobStatusName",
        "JobStatusRow",
        "StatusChange",
        "apply_changes",
        "cancel_job_rows",
        "cleanup_old_jobs_pg",
        "create_job_status",
        "get_job_status",
        "get_jobs_by_related_id",
        "update_job_status",
    ]
    for name in st.__all__:
        assert hasattr(st, name), name
    assert st.StatusChange is status_fold.StatusChange
    assert st.JobStatusRow is status_model.JobStatusRow is pipeline.JobStatusRow
    for name in ("create_job_status", "get_job_status", "get_jobs_by_related_id"):
        assert getattr(pipeline, name) is getattr(st, name)
    for module in (status_fold, status_model, importlib.import_module("pipeline.mirror")):
        assert all(hasattr(module, name) for name in module.__all__), module.__name__
