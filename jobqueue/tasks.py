"""RQ-style tasks on top of handlers: functions registered under stable names, called by jobs.

    queue = Queue("emails", redis="redis://127.0.0.1:6379/0")

    @queue.task
    async def send(to: str, subject: str = "") -> str: ...

    job = await send.enqueue("a@example.com", subject="hi")    # or: queue.enqueue(send, ...)
    await Worker(queue, queue.tasks).run()                     # or: python -m jobqueue worker myapp
    print(await job.wait_until_finished())

A task's job is an ordinary job: its name is the task's name and its data is
`{"args": [...], "kwargs": {...}}` in JSON, so a producer without the code can also enqueue one
with `Queue.add`. Handlers stay the layer underneath: `queue.tasks` is a `Mapping` from task
name to an engine handler (`job -> result`) that checks the job's data, binds it to the
function's signature and calls the function. A worker runs registered functions only: nothing
is ever imported from a name read out of Redis, and a job naming a task its queue does not have
fails at once, without retry (VALIDATION_ERROR).

`jobqueue.queue` depends on this module and on `jobqueue._task` (one task), so they depend on no
queue: what they need of a queue and of a job is described by the `TaskQueue` and `TaskJob`
protocols.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from ._task import (
    Task,
    TaskHandler,
    TaskJob,
    TaskQueue,
    check_attempts,
    check_name,
    check_priority,
    default_task_name,
)
from .errors import ConfigError, InvalidJobError

__all__ = [
    "Task",
    "TaskDecorator",
    "TaskHandler",
    "TaskJob",
    "TaskQueue",
    "TaskRegistry",
    "default_task_name",
]

P = ParamSpec("P")
R = TypeVar("R")
J = TypeVar("J")


class TaskDecorator(Protocol[J]):
    """The type of `queue.task`: `@queue.task` or `@queue.task(name=..., ...)`."""

    @overload
    def __call__(
        self,
        fn: Callable[P, R],
        /,
        *,
        name: str | None = None,
        attempts: int | None = None,
        priority: int = 0,
    ) -> Task[P, R, J]: ...

    @overload
    def __call__(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        attempts: int | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[P, R]], Task[P, R, J]]: ...


class TaskRegistry(Mapping[str, TaskHandler], Generic[J]):
    """The tasks of one queue: a `Mapping` from task name to its engine handler, so that
    `Worker(queue, queue.tasks)` runs them through the handler layer. `Queue` makes one as
    `queue.tasks`.

    Args:
        queue: the queue the tasks' jobs go to.
    """

    def __init__(self, queue: TaskQueue[J]) -> None:
        self.queue = queue
        self._tasks: dict[str, Task[Any, Any, J]] = {}

    def __getitem__(self, name: str) -> TaskHandler:
        return self._tasks[name].handler

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<TaskRegistry of queue {self.queue.name!r}: {sorted(self._tasks)}>"

    def get_task(self, name: str) -> Task[Any, Any, J] | None:
        """The task registered under `name`, or None."""
        return self._tasks.get(name)

    @overload
    def task(
        self,
        fn: Callable[P, R],
        /,
        *,
        name: str | None = None,
        attempts: int | None = None,
        priority: int = 0,
    ) -> Task[P, R, J]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        attempts: int | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[P, R]], Task[P, R, J]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        attempts: int | None = None,
        priority: int = 0,
    ) -> Task[P, R, J] | Callable[[Callable[P, R]], Task[P, R, J]]:
        """Register a function (`async def` or plain `def`) as a task of this queue.

        Used bare (`@queue.task`) or with options (`@queue.task(name="send", attempts=5)`).
        Registering the same function again with the same options returns its task.

        Args:
            fn: the function.
            name: the task's name, stored in its jobs; default `<module>.<qualname>` (see
                `default_task_name`, also for functions defined in `__main__`).
            attempts: default total attempts of its jobs (None: the queue's).
            priority: default priority of its jobs.

        Returns:
            The `Task` (or, without `fn`, a decorator that makes it).

        Raises:
            ConfigError: a bad option, a callable without a signature or a stable name, or a
                name already registered on this queue for another function.
        """
        check_attempts(attempts)
        check_priority(priority)
        if name is not None:
            check_name(name)

        def register(f: Callable[P, R]) -> Task[P, R, J]:
            return self._register(f, name, attempts, priority)

        return register if fn is None else register(fn)

    def _register(
        self, fn: Callable[P, R], name: str | None, attempts: int | None, priority: int
    ) -> Task[P, R, J]:
        if isinstance(fn, Task):
            raise ConfigError(f"{fn!r} is a task already: register its function (`.fn`)")
        if not callable(fn) or inspect.isclass(fn):
            raise ConfigError(f"a task must be a function, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigError(f"a generator cannot be a task (its result is not JSON): {fn!r}")
        task_name = check_name(default_task_name(fn) if name is None else name)
        existing = self._tasks.get(task_name)
        if existing is not None:
            if existing.fn is fn and (existing.attempts, existing.priority) == (attempts, priority):
                return cast(Task[P, R, J], existing)
            raise ConfigError(
                f"task name {task_name!r} is already registered on queue {self.queue.name!r} "
                f"for {existing.fn!r}; give one of them another name="
            )
        task = Task(fn, self.queue, name=task_name, attempts=attempts, priority=priority)
        self._tasks[task_name] = task
        return task

    async def enqueue(
        self,
        task: Task[..., Any, J] | str | Callable[..., Any],
        /,
        *args: Any,
        job_id: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> J:
        """Add a job that calls a task of this queue (see `Task.enqueue`).

        Args:
            task: the `Task`, its name, or the function registered as a task.
            *args: the function's positional arguments.
            job_id: see `Task.enqueue`.
            delay: see `Task.enqueue`.
            priority: see `Task.enqueue`.
            attempts: see `Task.enqueue`.
            **kwargs: the function's keyword arguments.

        Returns:
            The job.

        Raises:
            InvalidJobError: the task is not registered on this queue, or as `Task.enqueue`.
        """
        found = self._find(task)
        return await found.enqueue(
            *args, job_id=job_id, delay=delay, priority=priority, attempts=attempts, **kwargs
        )

    def _find(self, task: Task[..., Any, J] | str | Callable[..., Any]) -> Task[..., Any, J]:
        if isinstance(task, str):
            found = self._tasks.get(task)
        elif isinstance(task, Task):
            found = task if self._tasks.get(task.name) is task else None
        else:
            found = next((t for t in self._tasks.values() if t.fn is task), None)
        if found is None:
            what = task.name if isinstance(task, Task) else task
            where = (
                f" (it is a task of queue {task.queue.name!r})" if isinstance(task, Task) else ""
            )
            names = sorted(self._tasks)
            known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") or "none"
            raise InvalidJobError(
                f"queue {self.queue.name!r} has no task {what!r}{where}; its tasks: {known}"
            )
        return found
