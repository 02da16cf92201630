"""Tasks without Redis: names, registration, argument binding and the data shape a worker
accepts. (A `Queue` only connects when used: these tests never reach a server.)"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobqueue import ConfigError, InvalidJobError, Job, Queue, Task, TaskRegistry
from jobqueue.tasks import default_task_name

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@pytest.fixture
def queue() -> Queue:
    return Queue("units")


async def add(a: int, b: int = 2) -> int:
    return a + b


def mul(a: int, b: int) -> int:
    return a * b


def other_mul(a: int, b: int) -> int:
    return a * b


def job_of(queue: Queue, name: str, data: Any, job_id: str = "7") -> Job:
    return Job(queue, job_id, {"n": name, "d": data})


# -- names ------------------------------------------------------------------------------------


def test_default_name_is_module_and_qualname(queue: Queue) -> None:
    task = queue.task(mul)
    assert task.name == f"{__name__}.mul" == default_task_name(mul)

    def inner() -> None: ...

    assert (
        queue.task(inner).name
        == f"{__name__}.test_default_name_is_module_and_qualname.<locals>.inner"
    )


def test_main_module_names_follow_python_m() -> None:
    """`python -m sample_tasks` names tasks as a worker importing `sample_tasks` does; a script
    run by path can only say `__main__`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run("-m", "sample_tasks") == "sample_tasks.add"
    assert run("sample_tasks.py") == "__main__.add"


def test_bare_and_configured_decorators(queue: Queue) -> None:
    bare = queue.task(add)
    configured = queue.task(name="multiply", attempts=4, priority=7)(mul)
    assert isinstance(bare, Task) and isinstance(configured, Task)
    assert (bare.attempts, bare.priority, bare.queue) == (None, 0, queue)
    assert (configured.name, configured.attempts, configured.priority) == ("multiply", 4, 7)
    assert configured.__doc__ == mul.__doc__ and configured.__name__ == "mul"
    assert inspect.signature(configured) == inspect.signature(mul)
    assert repr(configured) == "<Task 'multiply' of queue 'units'>"


async def test_calling_a_task_calls_the_function(queue: Queue) -> None:
    assert queue.task(mul)(3, 4) == 12
    assert await queue.task(add)(3) == 5


def test_registry_is_a_mapping_of_handlers(queue: Queue) -> None:
    a, m = queue.task(add), queue.task(mul)
    assert isinstance(queue.tasks, TaskRegistry)
    assert sorted(queue.tasks) == sorted([a.name, m.name]) and len(queue.tasks) == 2
    assert queue.tasks[a.name] is a.handler and queue.tasks.get_task(a.name) is a
    # the worker runs a plain handler off its loop: sync stays sync, async stays async
    assert inspect.iscoroutinefunction(queue.tasks[a.name])
    assert not inspect.iscoroutinefunction(queue.tasks[m.name])
    assert not callable(queue.tasks)  # a Worker must take it as a mapping, not as one handler
    assert queue.tasks.get("nope") is None and "nope" not in queue.tasks
    with pytest.raises(KeyError):
        queue.tasks["nope"]


# -- registration errors ----------------------------------------------------------------------


def test_two_functions_under_one_name_is_a_config_error(queue: Queue) -> None:
    queue.task(name="shared")(mul)
    with pytest.raises(ConfigError, match=r"'shared' is already registered on queue 'units'"):
        queue.task(name="shared")(other_mul)
    assert queue.tasks.get_task("shared") is not None
    assert queue.tasks.get_task("shared").fn is mul  # type: ignore[union-attr]


def test_same_function_again_returns_its_task_unless_options_differ(queue: Queue) -> None:
    first = queue.task(mul)
    assert queue.task(mul) is first
    with pytest.raises(ConfigError, match="already registered"):
        queue.task(attempts=2)(mul)
    # the same name on another queue is another task
    assert Queue("elsewhere").task(mul).name == first.name


def test_aliases_under_other_names_are_allowed(queue: Queue) -> None:
    assert queue.task(mul).name != queue.task(name="old.name")(mul).name
    assert len(queue.tasks) == 2


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"name": ""}, "''"),
        ({"name": "x" * 201}, "xxx"),
        ({"name": "a\nb"}, "'a\\\\nb'"),
        ({"name": 3}, "3"),
        ({"attempts": 0}, "0"),
        ({"attempts": True}, "True"),
        ({"attempts": "3"}, "'3'"),
        ({"priority": 2**21}, str(2**21)),
        ({"priority": False}, "False"),
    ],
)
def test_bad_options_name_the_value(queue: Queue, options: dict[str, Any], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        queue.task(**options)(mul)
    assert len(queue.tasks) == 0


def test_what_cannot_be_a_task(queue: Queue) -> None:
    with pytest.raises(ConfigError, match="lambda"):
        queue.task(lambda: None)
    assert queue.task(name="named-lambda")(lambda: 1)() == 1
    with pytest.raises(ConfigError, match="a task already"):
        queue.task(queue.task(mul))

    def gen() -> Any:
        yield 1

    with pytest.raises(ConfigError, match="generator"):
        queue.task(gen)
    with pytest.raises(ConfigError, match="must be a function"):
        queue.task(dict)
    with pytest.raises(ConfigError, match="must be a function"):
        queue.task("mul")  # type: ignore[call-overload]


# -- binding at enqueue -----------------------------------------------------------------------


def test_call_data_is_the_json_shape(queue: Queue) -> None:
    task = queue.task(add)
    assert task.call_data((1,), {"b": 5}) == {"args": [1], "kwargs": {"b": 5}}
    assert task.call_data([1, 2]) == {"args": [1, 2], "kwargs": {}}


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((), {}, "missing a required argument: 'a'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"c": 3}, "unexpected keyword argument 'c'"),
        ((1,), {"a": 3}, "multiple values for argument 'a'"),
        ("12", {}, "args must be a list or tuple"),
        ((1,), {1: 2}, "kwargs must be a mapping with str keys"),
    ],
)
def test_binding_errors_name_the_task_and_the_problem(
    queue: Queue, args: Any, kwargs: Any, problem: str
) -> None:
    task = queue.task(add)
    with pytest.raises(InvalidJobError) as info:
        task.call_data(args, kwargs)
    assert task.name in str(info.value) and problem in str(info.value)
    if "argument" in problem:
        assert "do not match (a, b=2)" in str(info.value)  # the signature, without annotations


async def test_options_named_like_parameters_must_use_enqueue_call(queue: Queue) -> None:
    async def later(delay: float, priority: int = 0) -> float:
        return delay

    task = queue.task(later)
    # refused before anything is sent (the queue's Redis is never reached here)
    with pytest.raises(InvalidJobError, match="delay, priority is both an enqueue"):
        await task.enqueue(delay=1.0, priority=2)
    assert task.call_data([], {"delay": 1.0}) == {"args": [], "kwargs": {"delay": 1.0}}


async def test_enqueue_refuses_what_the_queue_has_no_task_for(queue: Queue) -> None:
    elsewhere = Queue("elsewhere").task(mul)
    with pytest.raises(InvalidJobError, match=r"queue 'units' has no task 'nope'"):
        await queue.enqueue("nope")
    with pytest.raises(InvalidJobError, match=r"it is a task of queue 'elsewhere'"):
        await queue.enqueue(elsewhere, 1, 2)
    with pytest.raises(InvalidJobError, match=r"has no task <function other_mul"):
        await queue.enqueue(other_mul, 1, 2)


# -- the data a worker accepts ----------------------------------------------------------------


def test_arguments_of_a_good_job(queue: Queue) -> None:
    task = queue.task(mul)
    job = job_of(queue, task.name, {"args": [3], "kwargs": {"b": 4}})
    assert task.arguments(job) == ([3], {"b": 4})
    assert queue.tasks[task.name](job) == 12


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        (None, "got null"),
        ([1, 2], "got a JSON list"),
        ("x", "got a JSON str"),
        ({"args": [1, 2]}, "got an object with keys ['args']"),
        ({"args": [1, 2], "kwargs": {}, "extra": 1}, "keys ['args', 'extra', 'kwargs']"),
        ({"args": {"a": 1}, "kwargs": {}}, "keys ['args', 'kwargs']"),
        ({"args": [], "kwargs": [1]}, "keys ['args', 'kwargs']"),
    ],
)
def test_bad_job_data_fails_naming_task_job_and_queue(queue: Queue, data: Any, shape: str) -> None:
    task = queue.task(mul)
    with pytest.raises(InvalidJobError) as info:
        queue.tasks[task.name](job_of(queue, task.name, data))
    message = str(info.value)
    assert f"task {task.name!r} (job 7 on queue 'units')" in message
    assert '{"args": [...], "kwargs": {...}}' in message and shape in message


def test_job_arguments_that_do_not_bind_fail_the_same_way(queue: Queue) -> None:
    task = queue.task(mul)
    with pytest.raises(InvalidJobError, match="missing a required argument: 'b'"):
        task.arguments(job_of(queue, task.name, {"args": [1], "kwargs": {}}))


async def test_async_handler_checks_before_calling(queue: Queue) -> None:
    calls: list[int] = []

    async def record(a: int) -> int:
        calls.append(a)
        return a

    task = queue.task(record)
    with pytest.raises(InvalidJobError):
        await queue.tasks[task.name](job_of(queue, task.name, {"args": [], "kwargs": {}}))
    assert calls == []
    assert await queue.tasks[task.name](job_of(queue, task.name, {"args": [5], "kwargs": {}})) == 5


# -- module layering --------------------------------------------------------------------------


def test_task_modules_depend_on_no_queue() -> None:
    """`jobqueue.queue` depends on the tasks: they must not depend back, not even for type
    checking, directly or through the worker (which depends on the queue)."""
    for name in ("tasks.py", "_task.py"):
        tree = ast.parse((ROOT / "jobqueue" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                mods = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                assert mod.removeprefix("jobqueue.").split(".")[0] not in {"queue", "worker"}, (
                    name,
                    mod,
                )
