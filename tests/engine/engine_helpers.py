"""Helpers for engine tests: worker subprocesses, waiting on conditions (never sleep-and-hope),
the Redis clock, and a MONITOR of a private server to count the commands a client sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from jobqueue.core._library import load_library
from jobqueue.core._loader import load_script, script_names

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# Deadlines only bound a hang: a slow or loaded machine must never reach them.
HANG = 30.0


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = HANG, what: str = "condition"
) -> None:
    """Re-check `predicate` (a cheap Redis read) until it holds, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def stream_events(q: Any) -> list[dict[str, str]]:
    """The entries of a queue's event stream, oldest first, as text fields."""
    entries = await q.redis.xrange(q.keys.events)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def redis_ms(client: aioredis.Redis) -> int:
    """The Redis server's clock in ms (the clock every script uses)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_redis_clock(client: aioredis.Redis, at_least_ms: int) -> None:
    """Wait until the Redis clock reads `at_least_ms` or later."""

    async def reached() -> bool:
        return await redis_ms(client) >= at_least_ms

    await wait_for(reached, what=f"the redis clock to reach {at_least_ms}")


class WorkerProcess:
    """A `worker_proc.py` subprocess; its log (stderr) goes to a file readable at any time."""

    def __init__(
        self,
        url: str,
        prefix: str,
        config: dict[str, Any],
        mode: str = "record",
        concurrency: int = 1,
        grace: float = 5.0,
    ) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        fd, name = tempfile.mkstemp(prefix="jq-worker-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "worker_proc.py"),
                    url,
                    prefix,
                    json.dumps(config),
                    mode,
                    str(concurrency),
                    str(grace),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(ROOT),
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            self.close()
            raise RuntimeError(f"worker did not start: {line} {self.stderr()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        """What the worker logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def logged(self, text: str, *, timeout: float = HANG) -> None:
        """Wait until the worker's log contains `text`."""

        async def seen() -> bool:
            return text in self.stderr()

        await wait_for(seen, timeout=timeout, what=f"worker log line {text!r}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(HANG)

    def terminate(self) -> None:
        self.proc.terminate()

    async def wait(self, timeout: float = HANG) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                # what it waits for: worker_proc.py writes its tasks' stacks on SIGUSR1
                self.proc.send_signal(signal.SIGUSR1)
                with contextlib.suppress(AssertionError):
                    await self.logged("TASK ", timeout=5)
                raise AssertionError(f"worker process did not exit; its log:\n{self.stderr()}")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log_path.unlink(missing_ok=True)


async def read_log(client: aioredis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await client.lrange(f"{prefix}:test:log", 0, -1)]


async def open_gate(client: aioredis.Redis, prefix: str) -> None:
    """Let the handlers of jobs with `{"gate": true}` (worker_proc.py) go on."""
    await client.set(f"{prefix}:test:gate", 1)


# -- counting the commands clients send ---------------------------------------------------


@dataclass
class Window:
    """The commands clients sent between two markers, and how long that was (server clock)."""

    seconds: float
    commands: list[list[str]] = field(default_factory=list)

    def count(self, name: str, *args: str) -> int:
        """How many commands named `name` (whose first arguments are `args`)."""
        n = len(args)
        return sum(
            1 for c in self.commands if c[0].upper() == name.upper() and c[1 : 1 + n] == list(args)
        )

    def names(self) -> Counter[str]:
        return Counter(c[0].upper() for c in self.commands)

    def scripts(self) -> list[str]:
        """The scripts run, in order, by EVALSHA (their SHA1) or FCALL (their function)."""
        return [name for c in self.commands if (name := script_run(c)) is not None]

    def runs(self, script: str) -> int:
        """How many times `script` ran, either way."""
        return self.scripts().count(script)


def script_run(command: list[str]) -> str | None:
    """The script a monitored command runs (EVALSHA or FCALL, read-only or not), or None."""
    if len(command) < 2:
        return None
    name = command[0].upper()
    if name in ("EVALSHA", "EVALSHA_RO"):
        return _BY_SHA.get(command[1])
    if name in ("FCALL", "FCALL_RO"):
        return _BY_FUNCTION.get(command[1])
    return None


_BY_SHA = {load_script(n, shebang=s).sha: n for n in script_names() for s in (True, False)}
_BY_FUNCTION = {f: n for n, f in load_library().functions.items()}


class CommandMonitor:
    """MONITOR of a server: every command its clients send (not those scripts run inside).

    Use it on a server of the test's own, where every client is the test's.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._monitor = aioredis.Redis.from_url(url)
        self._marker = aioredis.Redis.from_url(url)
        self._seen: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CommandMonitor:
        ready = asyncio.get_running_loop().create_future()

        async def collect() -> None:
            async with self._monitor.monitor() as m:
                ready.set_result(None)
                while True:
                    self._seen.append(await m.next_command())

        self._task = asyncio.create_task(collect())
        await asyncio.wait_for(ready, HANG)
        await self._marker.ping()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self._monitor.aclose()
        await self._marker.aclose()

    def sent(self, name: str) -> bool:
        """Whether a client sent a command named `name` so far."""
        return any(
            e["client_type"] != "lua" and e["command"].split(" ", 1)[0].upper() == name.upper()
            for e in self._seen
        )

    async def _mark(self, label: str) -> dict[str, Any]:
        await self._marker.echo(label)

        async def seen() -> bool:
            return any(e["command"] == f"ECHO {label}" for e in self._seen)

        await wait_for(seen, what=f"MONITOR to show {label}")
        return next(e for e in self._seen if e["command"] == f"ECHO {label}")

    @contextlib.asynccontextmanager
    async def window(self) -> AsyncIterator[Window]:
        """Count what clients (other than the markers) send inside the `async with` block."""
        tag = os.urandom(4).hex()
        start = await self._mark(f"window-start-{tag}")
        result = Window(0.0)
        yield result
        end = await self._mark(f"window-end-{tag}")
        i, j = self._seen.index(start), self._seen.index(end)
        marker_port = start["client_port"]
        for entry in self._seen[i + 1 : j]:
            if entry["client_type"] == "lua" or entry["client_port"] == marker_port:
                continue
            result.commands.append(entry["command"].split())
        result.seconds = float(end["time"]) - float(start["time"])


FLOW_SLOT = {"name": "flowslot", "buckets": {}}
"""A limiter without buckets (as worker_proc.py reads it): its queues share one hash slot, so
a flow may span them."""

FLOW_FAST = {"lease": 1.0, "stall_interval": 0.2, "max_stalls": 3}
"""Short leases and stall checks for the flow tests with worker processes."""


def flow_worker(redis_url: str, prefix: str, name: str, *, concurrency: int = 3) -> WorkerProcess:
    """A worker process of queue `name` in `FLOW_SLOT`."""
    config = {"name": name, "limiter": FLOW_SLOT, **FLOW_FAST}
    return WorkerProcess(redis_url, prefix, config, concurrency=concurrency)
