"""Engine fixtures: contract tests run on the primary test Redis, on an embedded Valkey, and on
fakeredis (in memory, no server: what users of `jobqueue.testing.fake_redis` get).

A test that cannot run on fakeredis (it needs a real socket, a server process, INFO...) carries
`@pytest.mark.real_redis("why")` and is skipped on that backend with the reason.

With `JQ_TEST_CLUSTER=1` the whole directory runs on a local Redis Cluster instead (3 masters
with a replica each, started once for the session: `redis_url` is its `redis+cluster://` URL,
every test's queues on it, the process tests' workers too). A test that needs one server
(MONITOR, a server it restarts...) carries `@pytest.mark.not_cluster("why")`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jobqueue import Queue, QueueConfig
from jobqueue.core.connection import connect
from jobqueue.testing import fake_redis

sys.path.insert(0, str(Path(__file__).parent))

from engine_helpers import FLOW_SLOT, WorkerProcess
from servers import RedisProcess, delete_prefix, unique

CLUSTER = os.environ.get("JQ_TEST_CLUSTER", "").strip() not in ("", "0")
"""Whether this run is the cluster run (`JQ_TEST_CLUSTER=1`)."""

BACKENDS = ("redis",) if CLUSTER else ("redis", "valkey", "fakeredis")

FAKE_URL = "fakeredis://in-memory"
"""What `any_redis` gives as the URL on fakeredis: redis-py refuses the scheme, so a test that
would open a socket with it fails loudly instead of reaching a real server."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_redis(reason): runs on real servers only, skipped on fakeredis"
    )
    config.addinivalue_line(
        "markers", "not_cluster(reason): needs one server, skipped on the cluster run"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not CLUSTER:
        return
    for item in items:
        marker = item.get_closest_marker("not_cluster")
        if marker is not None:
            reason = marker.args[0] if marker.args else "needs one server"
            item.add_marker(pytest.mark.skip(reason=f"not on Redis Cluster: {reason}"))


if CLUSTER:

    @pytest.fixture(scope="session")
    def cluster_servers() -> Iterator[object]:
        """The session's local Redis Cluster (3 masters, 3 replicas)."""
        from jobqueue.testing import ClusterServers

        with ClusterServers() as servers:
            yield servers

    @pytest.fixture(scope="session")
    def redis_url(cluster_servers: object) -> str:
        """On the cluster run: the cluster's `redis+cluster://` URL."""
        return str(cluster_servers.url)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def own_server() -> Iterator[RedisProcess]:
    """A server of the module's own: MONITOR and CLIENT LIST see its tests' clients only."""
    with RedisProcess() as server:
        yield server


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The server the test runs on: "redis", "valkey" or "fakeredis"."""
    name: str = request.param
    marker = request.node.get_closest_marker("real_redis")
    if name == "fakeredis" and marker is not None:
        pytest.skip(f"not on fakeredis: {marker.args[0] if marker.args else 'needs a server'}")
    return name


@pytest.fixture
def fake_server() -> object:
    """The fresh in-memory server of a test on fakeredis (each test gets its own)."""
    import fakeredis

    return fakeredis.FakeServer()


@pytest.fixture
def any_redis(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(url, prefix) on the primary Redis, the embedded Valkey, or fakeredis (`FAKE_URL`: make
    clients with `backend_client`); keys under the prefix are removed after."""
    p = unique("jqt")
    if backend == "fakeredis":
        yield FAKE_URL, p  # the test's own fake server goes away with it
        return
    url = request.getfixturevalue("redis_url" if backend == "redis" else "valkey_url")
    yield url, p
    delete_prefix(url, p)


@pytest.fixture
async def backend_client(
    any_redis: tuple[str, str], backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[Redis]:
    """A client of the test's backend (bytes replies), closed after the test."""
    if backend == "fakeredis":
        client = fake_redis(server=request.getfixturevalue("fake_server"))
    else:
        client = connect(any_redis[0])
    yield client
    await client.aclose()


@pytest.fixture
async def make_queue(
    any_redis: tuple[str, str], backend_client: Redis, backend: str
) -> AsyncIterator[object]:
    url, prefix = any_redis
    made: list[Queue] = []

    def make(name: str = "q", **options: object) -> Queue:
        redis: str | Redis = backend_client if backend == "fakeredis" else url
        q = Queue(QueueConfig(name, **options), redis=redis, prefix=prefix)  # type: ignore[arg-type]
        made.append(q)
        return q

    yield make
    for q in made:
        await q.close()


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; closed at teardown."""
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        p.close()


@pytest.fixture
async def side(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test's Redis beside the queues' own (reads logs the workers write)."""
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def flow_queues(redis_url: str, prefix: str) -> AsyncIterator[tuple[Queue, Queue]]:
    """Two queues, `top` and `low`, in one hash slot (`FLOW_SLOT`): a flow may span them."""
    from jobqueue import Limiter

    limiter = Limiter(str(FLOW_SLOT["name"]), {})
    top = Queue(QueueConfig("top", limiter=limiter), redis=redis_url, prefix=prefix)
    low = Queue(QueueConfig("low", limiter=limiter), redis=redis_url, prefix=prefix)
    yield top, low
    await top.close()
    await low.close()
