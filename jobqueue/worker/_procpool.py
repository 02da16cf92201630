"""The worker's side of process isolation: a pool of child processes and the runner that
sends each job to one of them.

A child is `python -m jobqueue.worker._child` started with asyncio (never a fork of the
worker's running event loop). Each runs one job at a time; the pool keeps idle children for
the next jobs, so there are at most as many as the worker has slots. Whatever ends an
exchange other than the child's own answer (a cancellation, the timeout, the lease lost, a
forced stop) kills the child, and a child that died is dropped: the next job gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import QueueConfig
from ..errors import InvalidJobError
from ..job import Job
from ..tasks import TaskRegistry
from ._procwire import ANSWER, ERROR, HELLO, JOB, READY, REQUEST, RESULT, frame, read_frame
from .execute import HandlerRunner
from .isolation import (
    HandlerCrashedError,
    HandlerRef,
    IsolatedHandlerError,
    ProcessIsolation,
    handler_ref,
    remote_error,
)

__all__ = ["IsolatedRunner", "ProcessPool", "make_runner"]

log = logging.getLogger("jobqueue.worker")

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _exit_text(code: int | None) -> str:
    if code is None:
        return "ended its channel"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Child:
    """One child process and its channel."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.tasks = 0
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.stdin: asyncio.StreamWriter = proc.stdin
        self.stdout: asyncio.StreamReader = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def send(self, kind: bytes, body: Any) -> None:
        self.stdin.write(frame(kind, body))

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def died(self, what: str) -> HandlerCrashedError:
        """The error for a child whose channel ended: it died (or is killed now)."""
        try:
            code: int | None = await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            self.kill()
            code = None
        message = f"the handler's process (pid {self.pid}) {_exit_text(code)} {what}"
        log.warning("%s", message)  # a crash is news even when the retry succeeds
        return HandlerCrashedError(message, exit_code=code)


class ProcessPool:
    """Child processes for one worker.

    Args:
        options: the isolation options.
        max_payload: largest result, in bytes of JSON (checked in the child).
    """

    def __init__(self, options: ProcessIsolation, max_payload: int) -> None:
        self.options = options
        self.max_payload = max_payload
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._closing = False
        self._reaping: set[asyncio.Task[int]] = set()
        self._init = None if options.initializer is None else handler_ref(options.initializer)

    @property
    def pids(self) -> list[int]:
        """The pids of the live children."""
        return sorted(c.pid for c in self._children if c.alive)

    async def _spawn(self) -> _Child:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobqueue.worker._child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        child = _Child(proc)
        self._children.add(child)
        try:
            hello = {
                "sys_path": [p for p in sys.path if isinstance(p, str)],
                "initializer": None if self._init is None else self._init.as_json(),
                "memory_limit": self.options.memory_limit,
                "max_payload": self.max_payload,
            }
            child.send(HELLO, hello)
            async with asyncio.timeout(self.options.start_timeout):
                await child.stdin.drain()
                kind, body = await read_frame(child.stdout)
        except asyncio.IncompleteReadError:
            error = await child.died("while it started (see its stderr)")
            self._drop(child)
            raise error from None
        except TimeoutError:
            self._drop(child)
            raise HandlerCrashedError(
                f"the handler's process (pid {child.pid}) did not start within "
                f"{self.options.start_timeout:g}s"
            ) from None
        except BaseException:
            self._drop(child)
            raise
        if kind != READY:
            self._drop(child)
            raise HandlerCrashedError(
                f"the handler's process (pid {child.pid}) did not start: {body[:200]!r}"
            )
        log.debug("isolated child %d started", child.pid)
        return child

    def _drop(self, child: _Child) -> None:
        child.kill()
        self._retire(child)

    def _retire(self, child: _Child) -> None:
        """Forget a child; it is reaped in the background (and waited for by `aclose`)."""
        self._children.discard(child)
        if not child.stdin.is_closing():
            child.stdin.close()  # a live child exits once it reads the end of its input
        task = asyncio.get_running_loop().create_task(child.proc.wait())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def run(self, job: Job, ref: HandlerRef, timeout: float | None) -> Any:
        """Run `job` with the handler `ref` names in a child; its result (a JSON value).

        Raises:
            IsolatedHandlerError: the handler raised (rebuilt from the child's description).
            HandlerCrashedError: the child died before it answered.
            TimeoutError: `timeout` passed (the child is killed).
        """
        child = self._idle.pop() if self._idle else None
        while child is not None and not child.alive:  # died idle (the OOM killer...)
            self._drop(child)
            child = self._idle.pop() if self._idle else None
        if child is None:
            child = await self._spawn()
        clean = False
        try:
            if timeout is None:
                value = await self._exchange(child, job, ref)
            else:
                cm = asyncio.timeout(timeout)
                try:
                    async with cm:
                        value = await self._exchange(child, job, ref)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if cm.expired():
                        raise TimeoutError(
                            f"job timed out after {timeout:g}s (its process was killed)"
                        ) from exc
                    raise
            clean = True
            return value
        except IsolatedHandlerError as exc:
            # a handler that ran out of memory may have left its process in a sorry state
            clean = exc.remote_type != "builtins.MemoryError"
            raise
        finally:
            self._release(child, clean)

    def _release(self, child: _Child, clean: bool) -> None:
        child.tasks += 1
        limit = self.options.max_tasks_per_child
        if not clean or not child.alive:
            self._drop(child)  # killed mid-job: it may hold anything
        elif self._closing or (limit is not None and child.tasks >= limit):
            self._retire(child)
        else:
            self._idle.append(child)

    async def _exchange(self, child: _Child, job: Job, ref: HandlerRef) -> Any:
        created = job.created_at
        child.send(
            JOB,
            {
                "id": job.id,
                "name": job.name,
                "data": job.data,
                "queue": job.queue.name,
                "attempt": job.attempt,
                "attempts_made": job.attempts_made,
                "step": job.step,
                "max_attempts": job.max_attempts,
                "priority": job.priority,
                "token": job.token,
                "created_ms": None if created is None else int(created.timestamp() * 1000),
                "handler": ref.as_json(),
            },
        )
        try:
            await child.stdin.drain()
            while True:
                kind, body = await read_frame(child.stdout)
                if kind == RESULT:
                    return json.loads(body)
                if kind == ERROR:
                    raise remote_error(json.loads(body))
                if kind == REQUEST:
                    child.send(ANSWER, await _answer(job, json.loads(body)))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await child.died("while it ran the job") from None

    async def aclose(self) -> None:
        """Let idle children exit (within `close_grace`), kill the rest, reap them all."""
        self._closing = True
        children, self._idle = list(self._children), []
        for child in children:
            self._retire(child)
        if not self._reaping:
            return
        _, pending = await asyncio.wait(set(self._reaping), timeout=self.options.close_grace)
        if pending:
            for child in children:
                child.kill()
            await asyncio.wait(pending, timeout=5.0)


async def _answer(job: Job, request: Mapping[str, Any]) -> dict[str, Any]:
    """Carry out a child's request on the real job (fenced by the worker's lease)."""
    rid, op, args = request.get("rid"), request.get("op"), request.get("args") or {}
    try:
        value: Any = None
        if op == "progress":
            await job.update_progress(args["progress"])
        elif op == "log":
            value = await job.log(str(args["line"]))
        elif op == "logs":
            value = await job.get_logs(int(args.get("start", 0)), int(args.get("end", -1)))
        elif op == "settle":
            await job.settle(args["usage"])
        elif op == "state":
            state = await job.get_state()
            value = None if state is None else str(state)
        else:
            raise InvalidJobError(f"unknown request {op!r} from an isolated handler")
        return {"rid": rid, "value": value}
    except Exception as exc:
        return {"rid": rid, "error": {"type": type(exc).__name__, "message": str(exc)}}


class IsolatedRunner:
    """Runs a worker's handlers in child processes (the isolated `HandlerRunner`).

    Args:
        handler: one handler, or a mapping from job name to handler (e.g. `queue.tasks`);
            each must be importable by name (see `isolation.handler_ref`).
        config: the queue's settings (timeout, largest result).
        options: the isolation options.

    Raises:
        ConfigError: a handler cannot be imported by name in a child.
    """

    direct = None
    """Never a handler to await as it is: every job goes to a child."""

    def __init__(self, handler: Any, config: QueueConfig, options: ProcessIsolation) -> None:
        self._single: HandlerRef | None = None
        self._by_name: dict[str, HandlerRef] = {}
        if isinstance(handler, TaskRegistry):
            for name in handler:
                task = handler.get_task(name)
                assert task is not None
                self._by_name[name] = handler_ref(task.handler, task=task)
        elif isinstance(handler, Mapping):
            self._by_name = {name: handler_ref(h) for name, h in handler.items()}
        else:
            self._single = handler_ref(handler)
        self._queue = config.name
        self._timeout = config.timeout
        self.pool = ProcessPool(options, config.max_payload)

    async def run(self, job: Job) -> Any:
        """Run the job's handler in a child process; return its result.

        Raises:
            InvalidJobError: no handler for the job's name.
            TimeoutError, HandlerCrashedError, IsolatedHandlerError: see `ProcessPool.run`.
        """
        ref = self._single or self._by_name.get(job.name)
        if ref is None:
            known = ", ".join(map(repr, sorted(self._by_name)[:20]))
            raise InvalidJobError(
                f"no handler for job name {job.name!r} on queue {self._queue!r} "
                f"(known: {known or 'none'})"
            )
        return await self.pool.run(job, ref, self._timeout)

    async def aclose(self) -> None:
        """Stop the child processes."""
        await self.pool.aclose()


def make_runner(
    handler: Any,
    config: QueueConfig,
    executor: Callable[[], ThreadPoolExecutor],
    isolation: object,
) -> HandlerRunner | IsolatedRunner:
    """A worker's runner: in its own process (`isolation` None), or in child processes.

    Raises:
        ConfigError: `isolation` is not acceptable, or a handler cannot be imported by name.
    """
    options = ProcessIsolation.of(isolation)
    if options is None:
        return HandlerRunner(handler, config, executor)
    return IsolatedRunner(handler, config, options)
