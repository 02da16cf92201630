"""Child processes seen from the runner: start, wait for ready, GO, counts, STOP, result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import peer_node

__all__ = ["VARIANTS", "Child", "ChildError", "wait_counts"]

ROOT = Path(__file__).resolve().parent.parent

# peers that run another peer's module with extra environment variables
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    # jobqueue with every script sent through redis-py: the engine before the fast connection
    "jqredispy": ("jobqueue", {"JOBQUEUE_FASTCONN": "0"}),
    # jobqueue with no event stream (QueueConfig(events_maxlen=0)): what events cost
    "jqnoevents": ("jobqueue", {"JOBQUEUE_BENCH_EVENTS_MAXLEN": "0"}),
}


class ChildError(RuntimeError):
    """A child failed, timed out or ended without a result."""


class Child:
    """One producer or worker process of a peer."""

    def __init__(self, peer: str, role: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.peer = peer
        self.role = role
        self.proc = proc
        self.log = log
        self.count = 0
        self.changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = loop.create_future()
        self._result: asyncio.Future[dict[str, Any]] = loop.create_future()
        for fut in (self._ready, self._result):
            # a fill child is never awaited for ready: do not log its unread exception
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._reader = loop.create_task(self._read())

    @classmethod
    async def start(cls, peer: str, role: str, params: dict[str, Any]) -> Child:
        """Start `python -m bench.child` (or the node script) for `peer` in `role`."""
        raw = json.dumps(params)
        module, extra_env = VARIANTS.get(peer, (peer, {}))
        if peer == "node":
            argv = peer_node.command(role, raw)
        else:
            argv = [sys.executable, "-m", "bench.child", module, role, raw]
        env = dict(os.environ)
        env.update(extra_env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        fd, name = tempfile.mkstemp(prefix=f"jq-bench-{peer}-{role}-", suffix=".log")
        log = Path(name)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=fd,
            cwd=str(ROOT),
            env=env,
            limit=2**26,
        )
        os.close(fd)
        return cls(peer, role, proc, log)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("ready") and not self._ready.done():
                self._ready.set_result(None)
            if "count" in msg:
                self.count = int(msg["count"])
                self.changed.set()
            if "result" in msg and not self._result.done():
                self._result.set_result(msg["result"])
        error = ChildError(f"{self.peer} {self.role} ended without a result: {self.stderr_tail()}")
        for fut in (self._ready, self._result):
            if not fut.done():
                fut.set_exception(error)
        self.changed.set()

    def stderr_tail(self, chars: int = 600) -> str:
        """The end of the child's stderr."""
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    async def ready(self, timeout: float = 120.0) -> None:
        """Wait until the child is connected and waiting for GO."""
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            raise ChildError(f"{self.peer} {self.role} not ready in {timeout:g}s") from None

    def send(self, word: str) -> None:
        """Write GO or STOP."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.proc.stdin.write(word.encode() + b"\n")

    async def result(self, timeout: float) -> dict[str, Any]:
        """The child's final report."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError:
            raise ChildError(f"{self.peer} {self.role} gave no result in {timeout:g}s") from None

    async def close(self) -> None:
        """Wait briefly for the process to exit, then kill it; remove its log."""
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(OSError):
            self.log.unlink()


async def wait_counts(children: list[Child], n: int, timeout: float) -> None:
    """Wait until the workers' counts add up to `n`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum(c.count for c in children) < n:
        for c in children:
            if c.proc.returncode is not None or c._result.done():
                raise ChildError(f"{c.peer} worker ended early: {c.stderr_tail()}")
        left = deadline - loop.time()
        if left <= 0:
            done = sum(c.count for c in children)
            raise ChildError(f"{children[0].peer}: only {done} of {n} jobs ran in {timeout:g}s")
        waiters = [loop.create_task(c.changed.wait()) for c in children]
        try:
            await asyncio.wait(waiters, timeout=min(left, 1.0), return_when="FIRST_COMPLETED")
        finally:
            for w in waiters:
                w.cancel()
        for c in children:
            c.changed.clear()
