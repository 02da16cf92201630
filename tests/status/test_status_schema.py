"""schema.sql and pipeline.db: idempotent and concurrent migration, pool, CLI, redaction."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from servers import free_port
from status_helpers import uid

from pipeline import db

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "schema_version",
    "job_status",
    "sector_analysis",
    "sub_sector",
    "stock",
    "stock_analysis",
    "llm_usage",
}


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_schema_applies_twice(fresh_database: str) -> None:
    """A second run changes nothing and reports the same version."""
    assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
    assert await db.migrate(fresh_database) == db.SCHEMA_VERSION
    assert await tables(fresh_database) >= TABLES
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == 1
    finally:
        await conn.close()


async def test_concurrent_migrations_are_safe(fresh_database: str) -> None:
    """Several processes migrating an empty database at once all succeed (advisory lock)."""
    results = await asyncio.gather(*(db.migrate(fresh_database) for _ in range(4)))
    assert results == [db.SCHEMA_VERSION] * 4
    assert await tables(fresh_database) >= TABLES


async def test_migrate_through_a_pool(pool: asyncpg.Pool) -> None:
    """`migrate` accepts a pool, or uses the process-wide one."""
    assert await db.migrate(pool) == db.SCHEMA_VERSION
    assert await db.migrate() == db.SCHEMA_VERSION


async def test_constraints(pool: asyncpg.Pool) -> None:
    """Check constraints reject impossible statuses and progress, and ranks outside 1..10."""
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO job_status (job_id, job_type, status) VALUES ($1, 't', 'lost')", uid()
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO job_status (job_id, job_type, status, progress)"
                " VALUES ($1, 't', 'active', 101)",
                uid(),
            )
        sector = await conn.fetchval(
            "INSERT INTO sector_analysis (user_id, sector_name) VALUES ('u', 'Tech') RETURNING id"
        )
        sub = await conn.fetchval(
            "INSERT INTO sub_sector (sector_analysis_id, name) VALUES ($1, 'AI') RETURNING id",
            sector,
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO stock (sub_sector_id, ticker, rank) VALUES ($1, 'NVDA', 11)", sub
            )
        await conn.execute(
            "INSERT INTO stock (sub_sector_id, ticker, rank, final_reasons)"
            " VALUES ($1, 'NVDA', 1, $2)",
            sub,
            {"reasons": ["moat"]},
        )
        # jsonb goes in and out as Python objects (codec installed by the pool's init).
        reasons = await conn.fetchval(
            "SELECT final_reasons FROM stock WHERE sub_sector_id = $1", sub
        )
        assert reasons == {"reasons": ["moat"]}
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO stock (sub_sector_id, ticker, rank) VALUES ($1, 'NVDA', 2)", sub
            )
        # updated_at is stamped by the trigger; children go with their parent.
        before = await conn.fetchval("SELECT updated_at FROM sub_sector WHERE id = $1", sub)
        await conn.execute("UPDATE sub_sector SET status = 'approved' WHERE id = $1", sub)
        after = await conn.fetchval("SELECT updated_at FROM sub_sector WHERE id = $1", sub)
        assert after > before
        await conn.execute("DELETE FROM sector_analysis WHERE id = $1", sector)
        assert await conn.fetchval("SELECT count(*) FROM stock WHERE sub_sector_id = $1", sub) == 0


async def test_get_pool_from_env(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process-wide pool comes from DATABASE_URL on first use and is reused."""
    db.set_pool(None)
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    try:
        first = await db.get_pool()
        assert await db.get_pool() is first
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close_pool()
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        await db.get_pool()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.db", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # bounds a hang only
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_cli_migrate(migrated_url: str) -> None:
    """`python -m pipeline.db migrate` prints the version, from the flag or DATABASE_URL."""
    done = run_cli("migrate", "--database-url", migrated_url)
    assert done.returncode == 0, done.stderr
    assert f"schema version {db.SCHEMA_VERSION}" in done.stdout
    done = run_cli("migrate", env={"DATABASE_URL": migrated_url})
    assert done.returncode == 0, done.stderr


def test_cli_cannot_connect_redacts_password() -> None:
    """Exit code 2 and a clear message that never shows the password."""
    url = f"postgresql://alice:canary-s3cret@127.0.0.1:{free_port()}/nowhere"
    done = run_cli("migrate", "--database-url", url)
    assert done.returncode == 2
    assert "cannot connect" in done.stderr
    assert "alice:***@127.0.0.1" in done.stderr
    assert "canary-s3cret" not in done.stderr + done.stdout
    done = run_cli("migrate", env={"DATABASE_URL": ""})
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://user:hunter2@db:5432/x", "hunter2"),
        ("redis://:p4ss@cache:6379/0", "p4ss"),
        ("host=db password=hunter2 user=x", "hunter2"),
        ("anthropic error for key sk-ant-api03-abcdefghijkl", "abcdefghijkl"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
        ('{"api_key": "k-123456789"}', "k-123456789"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    """Secrets are masked; the rest of the text stays readable."""
    masked = db.redact(text)
    assert secret not in masked
    assert "***" in masked


def test_redact_dsn_keeps_user_and_host() -> None:
    assert db.redact_dsn("postgresql://bob:pw@h:1/d") == "postgresql://bob:***@h:1/d"
    assert db.redact_dsn("postgresql://bob@h/d") == "postgresql://bob@h/d"


def test_schema_records_the_declared_version() -> None:
    sql = db.SCHEMA_PATH.read_text()
    assert f"VALUES ({db.SCHEMA_VERSION}) ON CONFLICT" in sql
