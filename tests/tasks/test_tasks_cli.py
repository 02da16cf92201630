"""`python -m jobqueue worker MODULE` as a real process, and examples/tasks.py: jobs run
through it, SIGTERM lets a running job finish, a second signal hands it back, and usage errors
are one line with exit code 2. Every wait is on a job state, a log line or the process exit,
bounded only against a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import wait_for

from jobqueue import ErrorType, JobFailedError, JobState, Queue, QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
DEADLINE = 60.0  # only bounds a hang


class CliProcess:
    """`python -m jobqueue ARGS` started in tests/tasks; its stderr goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobqueue", *args],
                cwd=HERE,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def logged(self, text: str) -> None:
        async def seen() -> bool:
            return text in self.output() or self.proc.poll() is not None

        await wait_for(seen, timeout=DEADLINE, what=f"{text!r} in the worker's log")
        assert text in self.output(), self.output()

    async def exit_code(self) -> int:
        async def exited() -> bool:
            return self.proc.poll() is not None

        await wait_for(exited, timeout=DEADLINE, what="the worker process to exit")
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def cli_env(redis_url: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JQ_TEST_TASKS_REDIS_URL"] = redis_url
    env["JQ_TEST_TASKS_PREFIX"] = prefix
    return env


@pytest.fixture
def start_cli(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., CliProcess]]:
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        proc = CliProcess(list(args), cli_env, tmp_path / f"cli-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


@pytest.fixture
async def queues(redis_url: str, prefix: str) -> AsyncIterator[dict[str, Queue]]:
    """The sample module's queues, seen from a producer that does not import its code."""
    made = {
        name: Queue(QueueConfig(name), redis=redis_url, prefix=prefix)
        for name in ("tasks-main", "tasks-other", "tasks-unused")
    }
    yield made
    for queue in made.values():
        await queue.close()


def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


async def test_worker_runs_a_modules_tasks_and_stops_on_sigterm(
    start_cli: Callable[..., CliProcess], queues: dict[str, Queue]
) -> None:
    main, other = queues["tasks-main"], queues["tasks-other"]
    add = await main.add("sample_tasks.add", call(2, 3))
    described = await main.add("describe", call([1, 2, 3], label="s"))
    echoed = await other.add("sample_tasks.echo", call({"k": [1, None]}))
    unknown = await main.add("sample_tasks.nope", call(), attempts=4)
    proc = start_cli("worker", "sample_tasks", "--concurrency", "2", "--shutdown-grace", "600")

    assert await add.wait_until_finished(timeout=DEADLINE) == 5
    assert await described.wait_until_finished(timeout=DEADLINE) == {
        "label": "s",
        "total": 6,
        "pair": [1, 3],
    }
    assert await echoed.wait_until_finished(timeout=DEADLINE) == {"k": [1, None]}
    with pytest.raises(JobFailedError) as info:
        await unknown.wait_until_finished(timeout=DEADLINE)
    assert info.value.error_type == ErrorType.VALIDATION_ERROR
    assert "'sample_tasks.nope'" in info.value.error_message
    stored = await main.get_job(unknown.id)
    assert stored is not None and stored.attempts_made == 1

    # a job running when SIGTERM arrives is finished, not handed back
    release = f"{uuid.uuid4().hex}:release"
    held = await main.add("sample_tasks.hold", call(release))

    async def running() -> bool:
        return await main.get_job_state(held.id) == JobState.ACTIVE

    await wait_for(running, timeout=DEADLINE, what="the held job to start")
    proc.signal(signal.SIGTERM)
    await proc.logged("SIGTERM: finishing running jobs")
    await main.redis.rpush(release, "go")
    assert await held.wait_until_finished(timeout=DEADLINE) == "released"
    assert await proc.exit_code() == 0, proc.output()
    await main.redis.delete(release)
    out = proc.output()
    assert "queue tasks-main: tasks describe, sample_tasks.add, sample_tasks.hold" in out
    assert "queue tasks-other: tasks sample_tasks.echo" in out
    assert "tasks-unused" not in out  # a queue without tasks gets no worker


async def test_second_signal_hands_the_running_job_back(
    start_cli: Callable[..., CliProcess], queues: dict[str, Queue]
) -> None:
    main = queues["tasks-main"]
    release = f"{uuid.uuid4().hex}:never"
    held = await main.add("sample_tasks.hold", call(release))
    proc = start_cli("worker", "sample_tasks", "--queues", "tasks-main", "--shutdown-grace", "600")

    async def running() -> bool:
        return await main.get_job_state(held.id) == JobState.ACTIVE

    await wait_for(running, timeout=DEADLINE, what="the held job to start")
    proc.signal(signal.SIGTERM)
    await proc.logged("SIGTERM: finishing running jobs")
    proc.signal(signal.SIGINT)
    await proc.logged("SIGINT: handing running jobs back now")
    assert await proc.exit_code() == 0, proc.output()
    stored = await main.get_job(held.id)
    assert stored is not None and stored.state == JobState.WAITING
    assert stored.attempts_made == 0  # handed back: no attempt spent


async def test_isolation_runs_tasks_in_child_processes(
    start_cli: Callable[..., CliProcess], queues: dict[str, Queue]
) -> None:
    other = queues["tasks-other"]
    proc = start_cli(
        "worker", "sample_tasks", "--queues", "tasks-other", "--isolation", "process",
        "--max-tasks-per-child", "1",
    )  # fmt: skip
    first = await other.add("sample_tasks.pid", call())
    pid1 = await first.wait_until_finished(timeout=DEADLINE)
    second = await other.add("sample_tasks.pid", call())
    pid2 = await second.wait_until_finished(timeout=DEADLINE)
    echoed = await other.add("sample_tasks.echo", call([1, "two"]))
    assert await echoed.wait_until_finished(timeout=DEADLINE) == [1, "two"]
    assert proc.proc.pid not in (pid1, pid2)
    assert pid1 != pid2  # each child ran one job
    proc.signal(signal.SIGTERM)
    assert await proc.exit_code() == 0, proc.output()


async def test_queues_option_runs_only_the_named_queues(
    start_cli: Callable[..., CliProcess], queues: dict[str, Queue]
) -> None:
    main, other = queues["tasks-main"], queues["tasks-other"]
    skipped = await other.add("sample_tasks.echo", call(1))
    proc = start_cli("worker", "sample_tasks", "--queues", "tasks-main")
    done = await main.add("sample_tasks.add", call(1, 2))
    assert await done.wait_until_finished(timeout=DEADLINE) == 3
    assert [w.name for w in await other.get_workers()] == []
    assert await other.get_job_state(skipped.id) == JobState.WAITING
    proc.signal(signal.SIGTERM)
    assert await proc.exit_code() == 0
    assert "tasks-other" not in proc.output()


@pytest.mark.parametrize(("loop", "expected"), [("asyncio", "asyncio."), ("uvloop", "uvloop.")])
async def test_the_worker_runs_on_the_loop_jobqueue_loop_names(
    start_cli: Callable[..., CliProcess],
    queues: dict[str, Queue],
    cli_env: dict[str, str],
    loop: str,
    expected: str,
) -> None:
    cli_env["JOBQUEUE_LOOP"] = loop
    other = queues["tasks-other"]
    proc = start_cli("worker", "sample_tasks", "--queues", "tasks-other")
    job = await other.add("sample_tasks.loop_name", call())
    assert (await job.wait_until_finished(timeout=DEADLINE)).startswith(expected)
    echoed = await other.add("sample_tasks.echo", call({"k": 1}))
    assert await echoed.wait_until_finished(timeout=DEADLINE) == {"k": 1}
    proc.signal(signal.SIGTERM)
    assert await proc.exit_code() == 0, proc.output()
    # process isolation: the children run on the same loop
    proc = start_cli("worker", "sample_tasks", "--queues", "tasks-other", "--isolation", "process")
    job = await other.add("sample_tasks.loop_name", call())
    assert (await job.wait_until_finished(timeout=DEADLINE)).startswith(expected)
    proc.signal(signal.SIGTERM)
    assert await proc.exit_code() == 0, proc.output()


async def test_an_unknown_loop_is_a_usage_error(
    start_cli: Callable[..., CliProcess], cli_env: dict[str, str]
) -> None:
    cli_env["JOBQUEUE_LOOP"] = "tokio"
    proc = start_cli("worker", "sample_tasks")
    assert await proc.exit_code() == 2
    assert "error: JOBQUEUE_LOOP must be one of asyncio, uvloop, auto, got 'tokio'" in proc.output()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["worker", "sample_tasks", "--queues", "tasks-main,nope"],
            "error: unknown queue 'nope': module sample_tasks has tasks on tasks-main, tasks-other",
        ),
        (
            ["worker", "sample_tasks", "--queues", "tasks-unused"],
            "error: unknown queue 'tasks-unused'",
        ),
        (
            ["worker", "no_such_module"],
            "error: cannot import module 'no_such_module': ModuleNotFoundError: "
            "No module named 'no_such_module'",
        ),
        (["worker", "json"], "error: module json defines no tasks"),
        (["worker", "sample_tasks", "--concurrency", "0"], "error: --concurrency must be >= 1"),
        (["worker", "sample_tasks", "--shutdown-grace", "inf"], "error: --shutdown-grace"),
        (["frobnicate"], "error: unknown command 'frobnicate'"),
        (
            ["worker", "sample_tasks", "--max-tasks-per-child", "2"],
            "error: --max-tasks-per-child needs --isolation process",
        ),
        (
            ["worker", "sample_tasks", "--isolation", "process", "--max-tasks-per-child", "0"],
            "error: --max-tasks-per-child must be an int >= 1",
        ),
        ([], "usage: python -m jobqueue COMMAND"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(
    start_cli: Callable[..., CliProcess], args: list[str], message: str
) -> None:
    proc = start_cli(*args)
    assert await proc.exit_code() == 2
    out = proc.output()
    assert message in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == (0 if not args else 1), out
    assert "Traceback" not in out


def test_example_runs(redis_url: str, prefix: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "EXAMPLE_PREFIX": prefix}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tasks.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "count_words -> {'words': 9, 'unique': 8}" in out.stdout, out.stdout
    assert "add -> 5" in out.stdout
    assert "slugify -> tasks,-rq-style" in out.stdout
    assert "called here, no job: 42" in out.stdout
