"""Server checks on connect (eviction policy, replicas, persistence) and password redaction,
each on a server the test starts itself: the shared server's config is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import pytest
from ops_helpers import child_env, run_cli, wait_for
from servers import RedisProcess, free_port

from jobqueue import Job, Queue, QueueConfig, UnsafeRedisError, Worker
from jobqueue.core.connection import connect, describe_client, redact_url

CANARY = "canary-s3cret-XYZ"
WRONG = "wrong-pw-QQQ"


@contextlib.contextmanager
def server(*extra: str) -> Iterator[RedisProcess]:
    proc = RedisProcess(extra=list(extra)).start()
    try:
        yield proc
    finally:
        proc.close()


async def test_an_evicting_server_is_refused_unless_allowed(prefix, caplog):
    with server("--maxmemory-policy", "allkeys-lru") as srv:
        queue = Queue("evict", redis=srv.url, prefix=prefix)
        try:
            with pytest.raises(UnsafeRedisError, match="allkeys-lru"):
                await queue.connect()

            async def handler(job: Job) -> None:
                return None

            with pytest.raises(UnsafeRedisError):  # a worker does not start either
                await Worker(queue, handler, handle_signals=False).run()
        finally:
            await queue.close()

        caplog.set_level(logging.WARNING, logger="jobqueue")
        allowed = Queue("evict", redis=srv.url, prefix=prefix, allow_eviction=True)
        try:
            await allowed.connect()
            await allowed.add("fine")
        finally:
            await allowed.close()
        assert any("evicts keys" in r.getMessage() for r in caplog.records)


async def test_a_replica_is_refused(prefix):
    with server() as primary, server("--replicaof", "127.0.0.1", str(primary.port)) as replica:
        queue = Queue("replica", redis=replica.url, prefix=prefix)
        try:
            with pytest.raises(UnsafeRedisError, match="replica"):
                await queue.connect()
        finally:
            await queue.close()


async def test_persistence_is_checked(prefix, caplog):
    caplog.set_level(logging.WARNING, logger="jobqueue")
    with server() as without_aof, server("--appendonly", "yes") as with_aof:
        for srv in (without_aof, with_aof):
            queue = Queue("aof", redis=srv.url, prefix=prefix)
            try:
                await queue.connect()
            finally:
                await queue.close()
        warned = [r.getMessage() for r in caplog.records if "append-only" in r.getMessage()]
        assert len(warned) == 1 and f":{without_aof.port}/" in warned[0]


def test_urls_and_clients_are_described_without_password():
    url = f"redis://:{CANARY}@127.0.0.1:6390/2"
    assert redact_url(url) == "redis://:***@127.0.0.1:6390/2"
    assert redact_url(f"redis://user:{CANARY}@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    client = connect(url)
    assert describe_client(client) == "redis://:***@127.0.0.1:6390/2"
    assert CANARY not in repr(client)
    assert CANARY not in repr(Queue("q", redis=client))


async def test_password_never_appears_in_logs(prefix, caplog):
    caplog.set_level(logging.DEBUG)
    with server("--requirepass", CANARY) as srv:
        url = f"redis://:{CANARY}@127.0.0.1:{srv.port}/0"
        queue = Queue(QueueConfig("secret", lease=0.5, drain_delay=0.2), redis=url, prefix=prefix)
        try:
            assert CANARY not in repr(queue)

            async def handler(job: Job) -> None:
                raise RuntimeError(f"handler saw {url}")  # redacted before it is stored

            worker = Worker(queue, handler, handle_signals=False, shutdown_grace=0.1)
            task = asyncio.create_task(worker.run())
            job = await queue.add("x")

            async def failed() -> bool:
                return await queue.get_job_state(job.id) in ("failed", "delayed")

            await wait_for(failed, what="the job to fail")
            stored = await queue.get_job(job.id)
            assert stored is not None and CANARY not in (stored.error_message or "")
            await worker.close()
            await task
        finally:
            await queue.close()

        # the wrong password, and a closed port, with the worker retrying
        for bad_url in (
            f"redis://:{WRONG}@127.0.0.1:{srv.port}/0",
            f"redis://:{CANARY}@127.0.0.1:{free_port()}/0",
        ):
            bad = Queue(QueueConfig("secret", lease=0.5), redis=bad_url, prefix=prefix)
            worker = Worker(bad, handler, handle_signals=False, reconnect_backoff=(0.05, 0.1))
            before = len(caplog.records)
            task = asyncio.create_task(worker.run())

            async def retried(before: int = before) -> bool:
                return any("redis error" in r.getMessage() for r in caplog.records[before:])

            await wait_for(retried, what="a reconnect attempt")
            await worker.close()
            with contextlib.suppress(Exception):
                await task
            with pytest.raises(Exception) as info:
                await bad.add("x")
            assert CANARY not in str(info.value) and WRONG not in str(info.value)
            await bad.close()

    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "redis://:***@127.0.0.1" in text
    assert CANARY not in text and WRONG not in text


async def test_password_never_appears_in_cli_output(prefix):
    with server("--requirepass", CANARY) as srv:
        url = f"redis://:{CANARY}@127.0.0.1:{srv.port}/0"
        queue = Queue("secret", redis=url, prefix=prefix)
        try:
            await queue.add("x")
        finally:
            await queue.close()
        outputs = []
        ok = await run_cli("--redis", url, "--prefix", prefix)
        assert ok.code == 0 and "redis://:***@127.0.0.1" in ok.stdout
        outputs.append(ok)
        as_env = await run_cli("--prefix", prefix, "--json", env=child_env(REDIS_URL=url))
        assert as_env.code == 0 and "***" in as_env.stdout
        outputs.append(as_env)
        outputs.append(await run_cli("--redis", url, "-v", "--prefix", prefix, "--check"))
        wrong = await run_cli("--redis", f"redis://:{WRONG}@127.0.0.1:{srv.port}/0")
        assert wrong.code == 2 and "redis://:***@" in wrong.stderr
        outputs.append(wrong)
        closed = await run_cli("--redis", f"redis://:{CANARY}@127.0.0.1:{free_port()}/0")
        assert closed.code == 2 and "cannot reach Redis at redis://:***@" in closed.stderr
        outputs.append(closed)
        for result in outputs:
            assert "Traceback" not in result.stderr
            for secret in (CANARY, WRONG):
                assert secret not in result.stdout and secret not in result.stderr
