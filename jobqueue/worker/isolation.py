"""Process isolation: `Worker(..., isolation="process")` runs each job in a child process.

A handler that segfaults, calls `os._exit`, leaks or hangs past the queue's timeout takes its
child process down, not the worker: the job's attempt fails (`CRASHED`, or `NETWORK_ERROR` for
a timeout, retried as usual) and the pool starts a fresh child for the next job.

What crosses the process boundary is JSON only (never pickle): the job (id, name, data,
attempt...) goes to the child, its result or a typed error comes back. The handler itself
travels by reference, `module:qualname`, and the child imports it: so a handler must be a
module-level function (or a `@queue.task` of a module-level queue). This module holds the
public options (`ProcessIsolation`), the errors, and the handler references; the pool is in
`_procpool`, the child's side in `_child`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .._task import Task
from ..errors import ConfigError, ErrorType, JobQueueError

__all__ = [
    "HandlerCrashedError",
    "HandlerRef",
    "IsolatedHandlerError",
    "ProcessIsolation",
    "handler_ref",
    "remote_error",
    "resolve_ref",
]

_MIN_MEMORY: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProcessIsolation:
    """Options of `Worker(..., isolation=ProcessIsolation(...))`; `isolation="process"` is
    `ProcessIsolation()`. The pool has one child per worker slot (`concurrency`), started on
    first use and reused for the next jobs.

    Attributes:
        max_tasks_per_child: jobs a child runs before it is replaced by a fresh one (bounds
            what a leaking handler can hold); None = no limit.
        memory_limit: address-space limit of each child in bytes (`RLIMIT_AS`, Linux and most
            Unixes): an allocation past it raises `MemoryError` in the handler, which fails
            the job, and the child is replaced. None = no limit. Count the interpreter and the
            imported libraries too (a few hundred MB of address space).
        initializer: a module-level function (sync or async, no arguments) each child runs
            once before its first job, e.g. to register error rules or set up logging.
        start_timeout: seconds a new child gets to start and report ready.
        close_grace: seconds an idle child gets to exit when the worker stops, before it is
            killed.
    """

    max_tasks_per_child: int | None = None
    memory_limit: int | None = None
    initializer: Callable[[], Any] | None = None
    start_timeout: float = 60.0
    close_grace: float = 5.0

    def __post_init__(self) -> None:
        n = self.max_tasks_per_child
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"max_tasks_per_child must be an int >= 1 or None, got {n!r}")
        m = self.memory_limit
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < _MIN_MEMORY):
            raise ConfigError(
                f"memory_limit must be an int of bytes >= {_MIN_MEMORY} or None, got {m!r}"
            )
        for what in ("start_timeout", "close_grace"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{what} must be a number of seconds >= 0, got {value!r}")
        if self.start_timeout <= 0:
            raise ConfigError(f"start_timeout must be > 0, got {self.start_timeout!r}")
        if self.initializer is not None:
            handler_ref(self.initializer, what="initializer")

    @classmethod
    def of(cls, isolation: object) -> ProcessIsolation | None:
        """The options a Worker's `isolation` argument stands for (None: in the worker's own
        process).

        Raises:
            ConfigError: `isolation` is neither None, "process" nor a `ProcessIsolation`.
        """
        if isolation is None or isinstance(isolation, ProcessIsolation):
            return isolation
        if isolation == "process":
            return cls()
        raise ConfigError(
            f'isolation must be None, "process" or a ProcessIsolation, got {isolation!r}'
        )


class HandlerCrashedError(JobQueueError):
    """The child process running an isolated handler died before it answered: a segfault,
    `os._exit`, the OOM killer... The attempt fails as `CRASHED` and is retried as usual.

    Attributes:
        exit_code: the child's exit status (negative: killed by that signal), if known.
    """

    error_type = ErrorType.CRASHED

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class IsolatedHandlerError(JobQueueError):
    """An exception an isolated handler raised in its child process, rebuilt in the worker
    from its JSON description. Its class name is the original's (a subclass of this class is
    made per name), so the job's error message reads as in-process: `ValueError: bad input`.

    The child classifies the original exception (rules registered in the child apply, e.g.
    at import of the handler's module or in the `initializer`); the verdict travels in the
    attributes the worker's classification reads.

    Attributes:
        remote_type: `module.qualname` of the original exception's class.
        error_type, retryable, retry_after, spend_attempt: the child's verdict.
        remote_traceback: the original traceback, as text.
    """

    def __init__(
        self,
        message: str,
        *,
        remote_type: str,
        error_type: str,
        retryable: bool,
        retry_after: float | None = None,
        spend_attempt: bool = True,
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after = retry_after
        self.spend_attempt = spend_attempt
        self.remote_traceback = remote_traceback


_remote_classes: dict[str, type[IsolatedHandlerError]] = {}


def remote_error(info: dict[str, Any]) -> IsolatedHandlerError:
    """The exception an isolated child described in `info` (see `_child.error_info`)."""
    name = str(info.get("type") or "Exception")
    cls = _remote_classes.get(name)
    if cls is None:
        cls = IsolatedHandlerError
        if name.isidentifier():
            cls = type(name, (IsolatedHandlerError,), {"__module__": __name__})
        _remote_classes[name] = cls
    retry_after = info.get("retry_after")
    return cls(
        str(info.get("message") or ""),
        remote_type=f"{info.get('module')}.{name}",
        error_type=str(info.get("error_type") or ErrorType.UNKNOWN),
        retryable=bool(info.get("retryable", True)),
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        spend_attempt=info.get("spend_attempt") is not False,
        remote_traceback=str(info.get("traceback") or ""),
    )


@dataclass(frozen=True, slots=True)
class HandlerRef:
    """Where a child finds a handler: a module (or, for the main script, its file) and the
    qualified name in it. Sent to the child as JSON (`as_json`)."""

    module: str
    qualname: str
    file: str | None = None

    def __str__(self) -> str:
        return f"{self.file or self.module}:{self.qualname}"

    def as_json(self) -> dict[str, str | None]:
        """The reference as a JSON object."""
        return {"module": self.module, "qualname": self.qualname, "file": self.file}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> HandlerRef:
        """The reference `as_json` made."""
        return cls(str(value["module"]), str(value["qualname"]), value.get("file"))


def handler_ref(
    fn: object, *, what: str = "handler", task: Task[Any, Any, Any] | None = None
) -> HandlerRef:
    """The reference by which a child process imports `fn`, checked here: it must resolve,
    in this process, to `fn` itself (or to `task`, for a task's handler).

    Raises:
        ConfigError: `fn` is a lambda, a nested function, a bound method of an instance, or
            anything else a child could not import by name.
    """
    target: object = task if task is not None else fn
    source = task.fn if task is not None else fn
    module = getattr(source, "__module__", None)
    qualname = getattr(source, "__qualname__", None)
    hint = (
        f"{what} {fn!r} cannot run in a child process: with isolation='process' a handler "
        "must be a module-level function (or a @queue.task of a module-level queue) that the "
        "child can import by name"
    )
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ConfigError(hint)
    file = None
    if module == "__main__":
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not isinstance(file, str):
            raise ConfigError(f"{hint} (its module is __main__, which has no file)")
        file = os.path.abspath(file)
    ref = HandlerRef(module, qualname, file)
    try:
        found = _lookup(sys.modules.get(module), module, qualname)
    except Exception as exc:
        raise ConfigError(f"{hint} ({ref} does not resolve: {exc})") from None
    if found is not target and found != target:  # a classmethod is a new object per lookup
        raise ConfigError(f"{hint} ({ref} names {found!r}, another object)")
    return ref


def resolve_ref(ref: HandlerRef) -> object:
    """Import what `ref` names (in a child: the main script's file is loaded under another
    module name, so that its `if __name__ == "__main__":` block does not run again)."""
    module = sys.modules.get(ref.module) if ref.file is None else None
    if ref.file is not None:
        name = "__jobqueue_main__"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, ref.file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {ref.file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return _lookup(module, ref.module, ref.qualname)


def _lookup(module: object, module_name: str, qualname: str) -> object:
    obj = module if module is not None else importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
