"""A private redis-server for the benchmark, and the `INFO` deltas read from it.

The server is started by the runner in a temporary directory on a free port, without
persistence, and stopped at the end. Only this server is ever flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import redis

__all__ = ["PrivateRedis", "Snapshot", "free_port"]

REDIS_SERVER = os.environ.get("BENCH_REDIS_SERVER", "/usr/bin/redis-server")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Snapshot:
    """The counters of one `INFO all` that the benchmark reports as per-job deltas."""

    commands: dict[str, int]
    reads: int
    cpu: float
    net_in: int
    net_out: int

    def delta(self, before: Snapshot, jobs: int) -> dict[str, Any]:
        """Per-job differences from `before` to this snapshot."""
        calls = {
            name: n - before.commands.get(name, 0)
            for name, n in self.commands.items()
            if n - before.commands.get(name, 0) > 0
        }
        total = sum(calls.values())
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
        return {
            "commands_per_job": total / jobs,
            "reads_per_job": (self.reads - before.reads) / jobs,
            "redis_cpu_us_per_job": (self.cpu - before.cpu) * 1e6 / jobs,
            "net_bytes_per_job": (self.net_in - before.net_in + self.net_out - before.net_out)
            / jobs,
            "top_commands_per_job": {k: round(v / jobs, 3) for k, v in top},
        }


class PrivateRedis:
    """A redis-server process owned by the benchmark (never the shared database)."""

    def __init__(self, binary: str = REDIS_SERVER, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="jq-bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start the server and wait until it answers PING."""
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
            "--daemonize",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        return self

    @property
    def client(self) -> redis.Redis:
        """A synchronous client for the runner's own commands (INFO, FLUSHDB)."""
        if self._client is None:
            self._client = redis.Redis(port=self.port, socket_timeout=30)
        return self._client

    def version(self) -> str:
        """The server's version."""
        return str(self._info("server")["redis_version"])

    def _info(self, section: str) -> dict[str, Any]:
        info: dict[str, Any] = self.client.info(section)  # type: ignore[assignment]
        return info

    def flush(self) -> None:
        """FLUSHDB on this private server (scripts stay loaded)."""
        self.client.flushdb()

    def snapshot(self) -> Snapshot:
        """Read `INFO all` counters."""
        info = self._info("all")
        commands = {
            key[len("cmdstat_") :]: int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        # the runner's own INFO calls are not the library's
        commands.pop("info", None)
        return Snapshot(
            commands=commands,
            reads=int(info["total_reads_processed"]),
            cpu=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            net_in=int(info["total_net_input_bytes"]),
            net_out=int(info["total_net_output_bytes"]),
        )

    def used_memory(self) -> int:
        """`used_memory` in bytes."""
        return int(self._info("memory")["used_memory"])

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
