"""The fast connection: order, pipelining, errors, drops, timeouts, AUTH, unix sockets, and
`Scripts` on top of it (NOSCRIPT reload, opt-out, settings taken from a redis-py client)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, wait_for
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    DataError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from servers import RedisProcess

from jobqueue import Queue, QueueConfig
from jobqueue.core._loader import load_script
from jobqueue.core.fastconn import FastConnection
from jobqueue.core.keys import QueueKeys
from jobqueue.core.scripts import Scripts

pytestmark = [
    pytest.mark.not_cluster("the single-server FastConnection (tests/cluster covers routing)"),
    pytest.mark.integration,
    pytest.mark.real_redis("the fast connection opens sockets to a real server"),
]


@pytest.fixture
async def fast(any_redis: tuple[str, str]) -> AsyncIterator[tuple[FastConnection, str]]:
    url, prefix = any_redis
    conn = FastConnection.from_url(url)
    assert conn is not None
    yield conn, prefix
    await conn.aclose()


@pytest.fixture(scope="module")
def private_server() -> Iterator[RedisProcess]:
    """A server of our own: SCRIPT FLUSH and INFO counters are ours alone here."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.close()


@contextlib.asynccontextmanager
async def fake_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server on a free port that answers as `handler` says."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


# -- replies and order ---------------------------------------------------------------------


async def test_replies_stay_in_order_under_concurrency(fast: tuple[FastConnection, str]) -> None:
    conn, prefix = fast
    n = 300
    await asyncio.gather(*(conn.execute("SET", f"{prefix}:k{i}", f"v{i}") for i in range(n)))
    got = await asyncio.gather(*(conn.execute("GET", f"{prefix}:k{i}") for i in range(n)))
    assert got == [f"v{i}".encode() for i in range(n)]
    counts = await asyncio.gather(*(conn.execute("INCR", f"{prefix}:c") for _ in range(n)))
    assert counts == list(range(1, n + 1))


async def test_reply_types_match_redis_py(fast: tuple[FastConnection, str]) -> None:
    conn, prefix = fast
    key = f"{prefix}:h"
    assert await conn.execute("HSET", key, "a", 1, "b", 2.5) == 2
    assert await conn.execute("HGET", key, "missing") is None
    assert await conn.execute("HGETALL", key) == [b"a", b"1", b"b", b"2.5"]
    assert await conn.execute("HMGET", key, "a", "b") == [b"1", b"2.5"]
    assert await conn.execute("EVAL", "return {1, 'x', {2}}", 0) == [1, b"x", [2]]


async def test_many_commands_in_one_iteration_are_pipelined(
    private_server: RedisProcess,
) -> None:
    conn = FastConnection(port=private_server.port)
    info = aioredis.Redis.from_url(private_server.url)
    try:
        await conn.execute("PING")
        before = int((await info.info("stats"))["total_reads_processed"])
        n = 200
        got = await asyncio.gather(*(conn.execute("ECHO", str(i)) for i in range(n)))
        after = int((await info.info("stats"))["total_reads_processed"])
        assert got == [str(i).encode() for i in range(n)]
        # one write for the lot (plus the INFO calls): far fewer reads than commands
        assert after - before < n // 4
    finally:
        await conn.aclose()
        await info.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies(
    fast: tuple[FastConnection, str],
) -> None:
    conn, prefix = fast
    await conn.execute("SET", f"{prefix}:a", "A")
    await conn.execute("SET", f"{prefix}:b", "B")
    first = asyncio.ensure_future(conn.execute("GET", f"{prefix}:a"))
    second = asyncio.ensure_future(conn.execute("GET", f"{prefix}:b"))
    await asyncio.sleep(0)  # both written
    first.cancel()
    assert await second == b"B"
    assert await conn.execute("GET", f"{prefix}:a") == b"A"


async def test_commands_sent_together_give_each_reply_or_error_in_order(
    fast: tuple[FastConnection, str],
) -> None:
    conn, prefix = fast
    await conn.execute("SET", f"{prefix}:s", "text")
    got = await conn.execute_many(
        ("GET", f"{prefix}:s"), ("INCR", f"{prefix}:s"), ("ECHO", "after")
    )
    assert got[0] == b"text" and got[2] == b"after"
    assert isinstance(got[1], ResponseError) and "not an integer" in str(got[1])


async def test_a_cancelled_batch_does_not_shift_the_replies(
    fast: tuple[FastConnection, str],
) -> None:
    # the batch waits on a block: cancelled meanwhile, the replies it still had to come are
    # dropped as they arrive, and the next caller gets its own
    conn, prefix = fast
    batch = asyncio.ensure_future(
        conn.execute_many(("BZPOPMIN", f"{prefix}:z", 0.2), ("ECHO", "behind"))
    )
    await asyncio.sleep(0)  # written: the block holds the connection
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert await conn.execute("ECHO", "next") == b"next"


# -- errors ----------------------------------------------------------------------------------


async def test_errors_are_redis_py_exceptions(fast: tuple[FastConnection, str]) -> None:
    conn, prefix = fast
    await conn.execute("SET", f"{prefix}:s", "text")
    with pytest.raises(ResponseError, match="not an integer"):
        await conn.execute("INCR", f"{prefix}:s")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await conn.execute("LPUSH", f"{prefix}:s", "x")
    with pytest.raises(NoScriptError):
        await conn.execute("EVALSHA", "0" * 40, 0)
    with pytest.raises(ResponseError):
        await conn.execute("NOSUCHCOMMAND")
    with pytest.raises(DataError):
        await conn.execute("SET", f"{prefix}:x", None)
    with pytest.raises(DataError):
        await conn.execute("SET", f"{prefix}:x", True)
    # the connection is still in step after errors
    assert await conn.execute("GET", f"{prefix}:s") == b"text"


async def test_loading_error_maps_to_busy_loading() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    async with fake_server(handler) as port:
        conn = FastConnection(port=port)
        with pytest.raises(BusyLoadingError):
            await conn.execute("PING")
        await conn.aclose()


# -- drops, reconnects, timeouts ------------------------------------------------------------


async def test_dropped_connection_fails_in_flight_commands_then_reconnects(
    fast: tuple[FastConnection, str], any_redis: tuple[str, str]
) -> None:
    conn, prefix = fast
    my_id = await conn.execute("CLIENT", "ID")
    # a blocking command keeps everything behind it in flight
    blocked = [asyncio.ensure_future(conn.execute("BLPOP", f"{prefix}:never", 0))]
    blocked += [asyncio.ensure_future(conn.execute("PING")) for _ in range(5)]
    killer = aioredis.Redis.from_url(any_redis[0])
    try:

        async def blocked_in_redis() -> bool:
            info = await killer.client_list(client_id=[my_id])
            return bool(info) and info[0]["cmd"] == "blpop"

        await wait_for(blocked_in_redis, what="the BLPOP to block")
        assert not any(f.done() for f in blocked)
        assert await killer.client_kill_filter(_id=my_id) == 1
    finally:
        await killer.aclose()
    results = await asyncio.wait_for(asyncio.gather(*blocked, return_exceptions=True), HANG)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert await conn.execute("PING") == b"PONG"  # reconnected on demand
    assert await conn.execute("CLIENT", "ID") != my_id


async def test_server_that_goes_away_fails_commands_with_connection_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()  # no reply: the server dies mid-command

    async with fake_server(handler) as port:
        conn = FastConnection(port=port)
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(conn.execute("PING"), HANG)
        await conn.aclose()


async def test_command_without_reply_times_out_and_fails_all_in_flight() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(100):
                pass  # never answers

    async with fake_server(handler) as port:
        conn = FastConnection(port=port, command_timeout=0.3)
        calls = [asyncio.ensure_future(conn.execute("PING")) for _ in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert not conn.connected
        await conn.aclose()


async def test_callers_share_one_connect_and_close_fails_them() -> None:
    accepted = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(100):
                pass  # never answers AUTH: the connect stays pending

    async with fake_server(handler) as port:
        conn = FastConnection(port=port, password="pw")
        calls = [asyncio.ensure_future(conn.execute("PING")) for _ in range(5)]

        async def connected() -> bool:
            return len(accepted) >= 1

        await wait_for(connected, what="the connect")
        assert not any(c.done() for c in calls)
        conn.close()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert len(accepted) == 1  # five callers, one connect


async def test_nothing_listening_is_a_connection_error() -> None:
    from servers import free_port

    conn = FastConnection(port=free_port())
    with pytest.raises(RedisConnectionError):
        await conn.execute("PING")


def test_a_new_event_loop_gets_a_new_connection(private_server: RedisProcess) -> None:
    conn = FastConnection(port=private_server.port)
    assert asyncio.run(conn.execute("PING")) == b"PONG"
    assert asyncio.run(conn.execute("PING")) == b"PONG"  # the first loop is closed by now
    conn.close()


# -- AUTH, db, unix sockets, settings from redis-py ------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisProcess]:
    server = RedisProcess(extra=["--requirepass", "s3cret"]).start()
    try:
        yield server
    finally:
        server.close()


async def test_auth_with_password_and_db(password_server: RedisProcess) -> None:
    port = password_server.port
    conn = FastConnection.from_url(f"redis://:s3cret@127.0.0.1:{port}/2")
    assert conn is not None and conn.password == "s3cret" and conn.db == 2
    assert await conn.execute("SET", "where", "db2") is not None
    check = aioredis.Redis(port=port, password="s3cret", db=2)
    try:
        assert await check.get("where") == b"db2"
    finally:
        await check.aclose()
    await conn.aclose()

    acl = FastConnection(port=port, username="default", password="s3cret")
    assert await acl.execute("PING") == b"PONG"
    await acl.aclose()

    wrong = FastConnection(port=port, password="nope")
    with pytest.raises(AuthenticationError):
        await wrong.execute("PING")
    await wrong.aclose()

    missing = FastConnection(port=port)
    with pytest.raises(AuthenticationError):  # NOAUTH
        await missing.execute("PING")
    await missing.aclose()


async def test_unix_socket() -> None:
    folder = tempfile.mkdtemp(prefix="jq-sock-")
    path = str(Path(folder) / "r.sock")
    server = RedisProcess(extra=["--unixsocket", path, "--unixsocketperm", "700"]).start()
    try:
        conn = FastConnection.from_url(f"unix://{path}?db=1")
        assert conn is not None and conn.path == path and conn.db == 1
        assert await conn.execute("PING") == b"PONG"
        assert await conn.execute("CLIENT", "INFO") is not None
        await conn.aclose()
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_settings_come_from_the_redis_py_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBQUEUE_FASTCONN", raising=False)
    client = aioredis.Redis.from_url(
        "redis://user:pw@10.1.2.3:6390/4?socket_timeout=7&client_name=jq"
    )
    conn = FastConnection.from_client(client)
    assert conn is not None
    assert (conn.host, conn.port, conn.db) == ("10.1.2.3", 6390, 4)
    assert (conn.username, conn.password, conn.client_name) == ("user", "pw", "jq")
    assert conn.command_timeout == 7.0
    # TLS: the context redis-py would build (certificate required, hostname checked)
    tls = FastConnection.from_client(aioredis.Redis.from_url("rediss://h:6379/0"))
    assert tls is not None and tls.tls is not None and tls.tls.check_hostname
    assert FastConnection.from_url("rediss://h:6379/0") is not None
    decoded = FastConnection.from_client(aioredis.Redis(decode_responses=True))
    assert decoded is not None
    # a Queue made from a URL uses jobqueue.core.connection.connect (a Connection subclass)
    q = Queue(QueueConfig("cfg"), redis="redis://:pw@127.0.0.1:6399/5")
    fast = q.scripts.fast
    assert fast is not None and (fast.port, fast.db, fast.password) == (6399, 5, "pw")
    unix = FastConnection.from_client(aioredis.Redis(unix_socket_path="/tmp/x.sock", db=2))
    assert unix is not None and (unix.path, unix.db) == ("/tmp/x.sock", 2)


async def test_decode_responses_is_honoured(any_redis: tuple[str, str]) -> None:
    url, prefix = any_redis
    client = aioredis.Redis.from_url(url, decode_responses=True)
    conn = FastConnection.from_client(client)
    assert conn is not None
    await conn.execute("SET", f"{prefix}:d", "é")
    assert await conn.execute("GET", f"{prefix}:d") == "é"
    await conn.aclose()
    await client.aclose()


# -- Scripts on the fast connection -----------------------------------------------------------


async def test_scripts_reload_after_noscript(
    private_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By EVALSHA (the function library's reload is in test_engine_functions.py)."""
    monkeypatch.delenv("JOBQUEUE_FASTCONN", raising=False)
    monkeypatch.setenv("JOBQUEUE_FUNCTIONS", "0")
    q = Queue(QueueConfig("fc"), redis=private_server.url, prefix="jqfc")
    try:
        assert q.scripts.fast is not None
        job = await q.add("x", {"n": 1})
        await q.scripts.counts()
        await q.redis.script_flush()
        # a plain add's command is packed once (`_send_tail`): reloaded and sent again whole
        again = await q.add("x", {"n": 2})
        assert (await q.get_job(again.id)) is not None
        assert await q.redis.script_exists(load_script("add_plain").sha) == [True]
        assert await q.redis.script_exists(load_script("counts").sha) == [False]
        counts = await q.get_job_counts()  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA
        assert counts["waiting"] == 2
        assert await q.redis.script_exists(load_script("counts").sha) == [True]
        assert (await q.get_job(job.id)) is not None
        await q.redis.script_flush()
        await q.scripts.load_all()
        assert await q.redis.script_exists(load_script("finish").sha) == [True]
    finally:
        await q.scripts.aclose()
        await q.close()


async def test_fast_path_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, any_redis: tuple[str, str]
) -> None:
    url, prefix = any_redis
    client = aioredis.Redis.from_url(url)
    try:
        assert Scripts(client, QueueKeys(prefix, "off"), fastconn=False).fast is None
        monkeypatch.setenv("JOBQUEUE_FASTCONN", "0")
        q = Queue(QueueConfig("off"), redis=client, prefix=prefix)
        assert q.scripts.fast is None
        await q.add("x", 1)
        assert (await q.get_job_counts())["waiting"] == 1
        monkeypatch.setenv("JOBQUEUE_FASTCONN", "1")
        q2 = Queue(QueueConfig("off"), redis=client, prefix=prefix)
        assert q2.scripts.fast is not None
        assert (await q2.get_job_counts())["waiting"] == 1
        await q2.scripts.aclose()
    finally:
        await client.aclose()


async def test_queue_given_a_client_uses_its_settings(
    password_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBQUEUE_FASTCONN", raising=False)
    client = aioredis.Redis(port=password_server.port, password="s3cret", db=3)
    q = Queue(QueueConfig("given"), redis=client, prefix="jqgiven")
    try:
        fast = q.scripts.fast
        assert fast is not None and fast.db == 3 and fast.password == "s3cret"
        await q.add("x", 1)
        assert await client.llen(q.keys.wait) == 1  # written to db 3, seen by the client
    finally:
        await q.scripts.aclose()
        await client.flushdb()
        await client.aclose()
