"""The child process of an isolated worker: `python -m jobqueue.worker._child`.

It reads frames (see `_procwire`) on stdin and answers on a copy of its original stdout, runs
one job at a time in its own event loop (a plain `def` handler in a thread of its own, so that
the loop still sees the parent's answers), and exits when the parent closes stdin. The parent
owns everything else: the lease, the timeout, cancellation (it kills this process).

In the handler, `job` (and `get_current_job()`) is a `Job` whose `update_progress`, `log`,
`get_logs`, `settle` and `get_state` are carried out by the worker over the pipe; the rest of
its queue is not available here.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, NoReturn, cast

from .. import errors
from .._task import Task
from ..core._aio import is_async_callable
from ..core.codec import dumps
from ..core.states import JobState
from ..errors import ErrorType, InvalidJobError, JobQueueError
from ..job import CURRENT_JOB, Job, JobQueue
from ..loop import run
from ..retry import classify_error
from ._procwire import (
    ANSWER,
    ERROR,
    HELLO,
    JOB,
    READY,
    REQUEST,
    RESULT,
    frame,
    read_frame,
    write_all,
)
from .isolation import HandlerRef, resolve_ref

__all__ = ["error_info", "main"]


class _Parent:
    """The channel to the worker: frames out, and the answers to this child's requests."""

    def __init__(self, out_fd: int) -> None:
        self.out_fd = out_fd
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    def send(self, kind: bytes, body: Any) -> None:
        write_all(self.out_fd, frame(kind, body))

    async def request(self, op: str, **args: Any) -> Any:
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        try:
            self.send(REQUEST, {"rid": rid, "op": op, "args": args})
            return await fut
        finally:
            self.waiting.pop(rid, None)

    def answer(self, body: Mapping[str, Any]) -> None:
        fut = self.waiting.get(int(body["rid"]))
        if fut is None or fut.done():
            return
        error = body.get("error")
        if error is None:
            fut.set_result(body.get("value"))
            return
        cls = getattr(errors, str(error.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, JobQueueError)):
            cls = JobQueueError
        fut.set_exception(cls(str(error.get("message"))))


class _ChildQueue:
    """What a job in the child has of its queue: its name. Anything else is refused clearly."""

    def __init__(self, name: str, attempts: int) -> None:
        self.name = name
        self.config = SimpleNamespace(attempts=attempts)  # what `Job.__init__` reads

    def __getattr__(self, attr: str) -> NoReturn:
        raise JobQueueError(
            f"queue.{attr} is not available in an isolated handler's process (job.update_progress, "
            "log, get_logs, settle and get_state are)"
        )


class ChildJob(Job):
    """The job as an isolated handler sees it; its writes are done by the worker."""

    __slots__ = ("_parent",)

    def __init__(self, parent: _Parent, msg: Mapping[str, Any]) -> None:
        envelope = {
            "n": msg["name"],
            "d": msg.get("data"),
            "at": msg["max_attempts"],
            "p": msg.get("priority", 0),
            "ts": msg.get("created_ms"),
        }
        super().__init__(
            cast(JobQueue, _ChildQueue(str(msg["queue"]), int(msg["max_attempts"]))),
            str(msg["id"]),
            envelope,
            state=JobState.ACTIVE,
            run_state={"a": msg.get("attempts_made", 0), "ws": msg.get("step", 0)},
            token=msg.get("token"),
            attempt=int(msg["attempt"]),
        )
        self._parent = parent

    async def update_progress(self, progress: int) -> None:
        """Record progress 0..100 (done by the worker, fenced by its lease)."""
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            raise InvalidJobError(f"progress must be an int within 0..100, got {progress!r}")
        await self._parent.request("progress", progress=progress)
        self.progress = progress

    async def settle(self, usage: Mapping[str, float]) -> None:
        """Charge what this attempt used to the queue's shared limiter (see `Job.settle`)."""
        await self._parent.request("settle", usage=dict(usage))

    async def get_state(self) -> JobState | None:
        """The job's current state, read by the worker."""
        state = await self._parent.request("state")
        return None if state is None else JobState(state)

    async def log(self, line: str) -> int:
        """Append a line to the job's log (see `Job.log`)."""
        return int(await self._parent.request("log", line=str(line)))

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        """Lines `start..end` of the job's log (see `Job.get_logs`)."""
        return list(await self._parent.request("logs", start=start, end=end))


def error_info(exc: BaseException) -> dict[str, Any]:
    """An exception of a handler as JSON, classified here (where its class and its cause
    chain are), for `isolation.remote_error` in the worker."""
    if isinstance(exc, InvalidJobError):  # as in-process: an unserializable result...
        etype, retryable, retry_after = str(ErrorType.VALIDATION_ERROR), False, None
    else:
        c = classify_error(exc)
        etype, retryable = str(c.error_type), c.retryable
        retry_after = c.delay if c.exact else None
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc)[:4000],
        "error_type": etype,
        "retryable": retryable,
        "retry_after": retry_after,
        "spend_attempt": getattr(exc, "spend_attempt", True) is not False,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }


class _Runner:
    def __init__(self, parent: _Parent, max_payload: int) -> None:
        self.parent = parent
        self.max_payload = max_payload
        self.handlers: dict[HandlerRef, Callable[..., Any]] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jq-isolated")

    def handler(self, ref: HandlerRef) -> Callable[..., Any]:
        found = self.handlers.get(ref)
        if found is None:
            obj = resolve_ref(ref)
            found = self.handlers[ref] = (
                obj.handler if isinstance(obj, Task) else cast(Callable[..., Any], obj)
            )
        return found

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if is_async_callable(fn):
            return await fn(*args)
        ctx = contextvars.copy_context()
        result = await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def run(self, msg: Mapping[str, Any]) -> None:
        job = ChildJob(self.parent, msg)
        token = CURRENT_JOB.set(job)
        try:
            handler = self.handler(HandlerRef.from_json(msg["handler"]))
            result = await self.call(handler, job)
            body = dumps(result, limit=self.max_payload, what="job result")
        except Exception as exc:
            self.parent.send(ERROR, error_info(exc))
        else:
            self.parent.send(RESULT, body)
        finally:
            CURRENT_JOB.reset(token)


async def _serve(out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    parent = _Parent(out_fd)
    kind, body = await read_frame(reader)
    if kind != HELLO:
        raise SystemExit(f"jobqueue child: expected a hello frame, got {kind!r}")
    hello = wire_json(body)
    sys.path[:] = [str(p) for p in hello["sys_path"]]
    limit = hello.get("memory_limit")
    if limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    runner = _Runner(parent, int(hello["max_payload"]))
    if hello.get("initializer") is not None:
        await runner.call(runner.handler(HandlerRef.from_json(hello["initializer"])))
    parent.send(READY, {"pid": os.getpid()})
    jobs: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
    running = False

    async def read() -> None:
        while True:
            try:
                kind, body = await read_frame(reader)
            except asyncio.IncompleteReadError:
                if running:
                    os._exit(0)  # the worker is gone or gave up on this job: stop at once
                await jobs.put(None)
                return
            if kind == ANSWER:
                parent.answer(wire_json(body))
            elif kind == JOB:
                await jobs.put(wire_json(body))

    reading = loop.create_task(read())
    while (msg := await jobs.get()) is not None:
        running = True
        await runner.run(msg)
        running = False
    reading.cancel()
    runner.executor.shutdown(wait=False)


def wire_json(body: bytes) -> Any:
    """A frame's body as a value."""
    return json.loads(body)


def _die_with_parent() -> None:
    # Linux: if the worker is killed (-9), the kernel kills this child too, even mid-job
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def main() -> None:
    """Run a child: serve jobs from the worker until it closes stdin."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a handler's print() goes to stderr, never into the frames
    sys.stdout = sys.stderr
    # Ctrl-C reaches the whole process group: the worker decides when its children stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    run(_serve(out_fd))


if __name__ == "__main__":
    main()
