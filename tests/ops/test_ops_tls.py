"""TLS to Redis (`rediss://`) against a local TLS-enabled redis-server with a CA generated for
the test: the fast path speaks TLS itself (it is not dropped for redis-py), a worker drains a
queue through it, and a server whose certificate the CA did not sign is refused."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import make_ca
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.core.fastconn import FastConnection
from jobqueue.testing import RedisServer, free_port

pytestmark = pytest.mark.integration

HANG = 60.0


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """A redis-server with a TLS port (clients need no certificate): (tls port, its CA, a CA
    that did not sign it)."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs the redis-server binary (built with TLS) and openssl")
    root = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca(root / "ca", "jobqueue test CA")
    other_ca, _, _ = make_ca(root / "other", "another CA")
    port = free_port()
    extra = [
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ]  # fmt: skip
    server = RedisServer(binary, extra=extra)
    try:
        server.start()
    except Exception as exc:  # a build without TLS refuses the options
        server.close()
        pytest.skip(f"redis-server without TLS support ({type(exc).__name__})")
    yield port, ca, other_ca
    server.close()


async def test_the_fast_path_speaks_tls_and_a_worker_drains(
    tls_server: tuple[int, Path, Path],
) -> None:
    port, ca, _ = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    queue = Queue(QueueConfig("tls", drain_delay=0.05), redis=url, prefix="tls")
    try:
        fast = queue.scripts.fast
        assert isinstance(fast, FastConnection) and fast.tls is not None  # not redis-py's
        await queue.add_bulk([("n", {"i": i}) for i in range(50)])
        seen: list[int] = []

        async def handler(job: Job) -> int:
            seen.append(int(job.data["i"]))
            return int(job.data["i"])

        worker = Worker(queue, handler, concurrency=5)
        task = asyncio.create_task(worker.run())

        async def drained() -> None:
            while (await queue.get_job_counts())["completed"] < 50:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(drained(), HANG)  # bounds a hang only
        await worker.close()
        await asyncio.wait_for(task, HANG)
        assert sorted(seen) == list(range(50))
    finally:
        await queue.obliterate(force=True)
        await queue.close()


async def test_a_server_the_ca_did_not_sign_is_refused(tls_server: tuple[int, Path, Path]) -> None:
    port, _, other_ca = tls_server
    fast = FastConnection.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_ca}")
    assert fast is not None and fast.tls is not None
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        await fast.execute("PING")
    fast.close()
