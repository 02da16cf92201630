"""A private redis-server for the benchmark, and the `INFO` deltas read from it.

The server is started by the runner in a temporary directory on a free port, without
persistence, and stopped at the end. Only this server is ever flushed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import redis

from jobqueue.testing import RedisServer, free_port

__all__ = ["PrivateRedis", "Snapshot", "free_port"]


REDIS_SERVER = os.environ.get("BENCH_REDIS_SERVER", "/usr/bin/redis-server")


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


class PrivateRedis(RedisServer):
    """A redis-server process owned by the benchmark (never the shared database)."""

    def __init__(self, binary: str = REDIS_SERVER, port: int | None = None) -> None:
        super().__init__(binary, port=port)
        self._client: redis.Redis | None = None

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

    def close(self) -> None:
        """Stop the server and remove its directory."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        super().close()
