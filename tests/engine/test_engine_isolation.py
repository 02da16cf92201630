"""Process isolation: `Worker(..., isolation="process")` on real Redis with real child
processes. A handler that segfaults, exits, hangs or is cancelled takes its child down, not the
worker; its job fails (and is retried) and the pool starts a new child."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import isolation_handlers as h
import pytest
from engine_helpers import HANG, ROOT, wait_for

from jobqueue import (
    ConfigError,
    ErrorType,
    Job,
    JobState,
    ProcessIsolation,
    Queue,
    QueueConfig,
    Worker,
)

pytestmark = pytest.mark.integration

FAST = {"NETWORK_ERROR": 0.01, "UNKNOWN": 0.01, "RATE_LIMIT": 0.05}


class Running:
    """Isolated workers in this event loop, each on a queue of its own."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url, self.prefix = redis_url, prefix
        self.workers: list[tuple[Worker, asyncio.Task[None]]] = []
        self.queues: list[Queue] = []

    async def __call__(
        self,
        handler: Any = h.work,
        *,
        concurrency: int = 1,
        isolation: Any = "process",
        progress: list[int] | None = None,
        **options: Any,
    ) -> tuple[Queue, Worker]:
        options.setdefault("retry_delays", FAST)
        options.setdefault("drain_delay", 0.5)
        name = f"iso{len(self.queues)}"
        q = Queue(QueueConfig(name, **options), redis=self.redis_url, prefix=self.prefix)
        self.queues.append(q)
        on_progress = None if progress is None else (lambda job, p: progress.append(p))
        w = Worker(
            q,
            handler,
            concurrency=concurrency,
            handle_signals=False,
            shutdown_grace=2,
            isolation=isolation,
            on_progress=on_progress,
        )
        self.workers.append((w, asyncio.create_task(w.run())))
        return q, w

    async def close(self) -> None:
        for w, task in self.workers:
            await w.close()
            await task
        for q in self.queues:
            await q.close()


@pytest.fixture
async def running(redis_url: str, prefix: str) -> AsyncIterator[Running]:
    started = Running(redis_url, prefix)
    yield started
    await started.close()


async def finished(q: Queue, job_id: str) -> Job:
    async def done() -> bool:
        return await q.get_job_state(job_id) in (JobState.COMPLETED, JobState.FAILED)

    await wait_for(done, what=f"job {job_id} to finish")
    job = await q.get_job(job_id)
    assert job is not None
    return job


async def hanging(q: Queue, job_id: str) -> int:
    """Wait until the job's handler runs (and hangs) in a child; that child's pid."""

    async def logged() -> bool:
        return bool(await q.get_job_logs(job_id))

    await wait_for(logged, what=f"job {job_id} to run")
    [line] = await q.get_job_logs(job_id)
    return int(line.rsplit(" ", 1)[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int) -> None:
    async def dead() -> bool:
        return not pid_alive(pid)

    await wait_for(dead, what=f"process {pid} to end")


async def test_handlers_run_in_a_reused_child(running: Running) -> None:
    q, w = await running(h.cpu)
    first = await finished(q, (await q.add("cpu", {"n": 2000})).id)
    second = await finished(q, (await q.add("cpu", {"n": 10})).id)
    assert first.state == second.state == JobState.COMPLETED
    assert first.result == {"pid": first.result["pid"], "total": sum(i * i for i in range(2000))}
    assert first.result["pid"] != os.getpid()
    assert second.result["pid"] == first.result["pid"]  # the pool keeps its child
    assert w.completed == 2


async def test_json_round_trip_and_progress_from_the_child(running: Running) -> None:
    seen: list[int] = []
    q, _ = await running(progress=seen)
    data = {"do": "pid", "text": "héllo ✓", "nested": [1, 2.5, None, True, {"k": "v"}]}
    done = await finished(q, (await q.add("x", data)).id)
    assert done.result["data"] == data and done.result["attempt"] == 1
    done = await finished(q, (await q.add("x", {"do": "progress"})).id)
    assert done.state == JobState.COMPLETED and done.progress == 100
    assert done.result["lines"] == 1 and done.result["logs"] == ["half way"]
    assert seen == [40, 100]  # the worker's on_progress hook saw the child's progress


async def test_tasks_run_isolated(running: Running) -> None:
    q, _ = await running(h.tasks_queue.tasks)
    square = await q.add(h.square.name, h.square.call_data([7]))
    greet = await q.add("greet", h.greet.call_data(["ada"], {"punct": "?"}))
    done = await finished(q, square.id)
    assert done.result["square"] == 49 and done.result["pid"] != os.getpid()
    assert (await finished(q, greet.id)).result == "hello ada?"


async def test_a_segfault_fails_the_attempt_and_the_job_is_retried(running: Running) -> None:
    q, w = await running(attempts=3)
    crash = await q.add("x", {"do": "segfault_once"})
    done = await finished(q, crash.id)
    assert done.state == JobState.COMPLETED and done.attempts_made == 2
    assert done.result["attempt"] == 2
    assert w.failed == 1
    # the worker goes on with other jobs, in a new child
    other = await finished(q, (await q.add("x", {"do": "pid"})).id)
    assert other.state == JobState.COMPLETED and other.result["pid"] != os.getpid()


async def test_a_handler_that_always_crashes_fails_for_good(running: Running) -> None:
    q, w = await running(attempts=2)
    bad = await q.add("x", {"do": "kill_self"})
    good = [await q.add("x", {"do": "pid", "n": i}) for i in range(3)]
    done = await finished(q, bad.id)
    assert done.state == JobState.FAILED and done.attempts_made == 2
    assert done.error_type == ErrorType.CRASHED
    assert "killed by SIGSEGV" in (done.error_message or "")
    for job in good:
        assert (await finished(q, job.id)).state == JobState.COMPLETED
    assert not w._stopping


async def test_a_child_that_died_idle_is_replaced_before_the_next_job(running: Running) -> None:
    q, w = await running(attempts=1)
    first = await finished(q, (await q.add("x", {"do": "pid"})).id)
    child = first.result["pid"]
    os.kill(child, signal.SIGKILL)  # as the OOM killer would, between two jobs
    await gone(child)
    second = await finished(q, (await q.add("x", {"do": "pid"})).id)
    assert second.state == JobState.COMPLETED and second.result["pid"] != child
    assert w.failed == 0


async def test_os_exit_fails_the_attempt(running: Running) -> None:
    q, _ = await running(attempts=2)
    done = await finished(q, (await q.add("x", {"do": "exit_once"})).id)
    assert done.state == JobState.COMPLETED and done.attempts_made == 2


async def test_a_hang_past_the_timeout_is_killed(running: Running) -> None:
    q, w = await running(timeout=0.5, attempts=1)
    # one slot: the hung job runs in the child that ran the first job (whenever the timeout
    # fires, even before the handler could say where it runs)
    first = await finished(q, (await q.add("x", {"do": "pid"})).id)
    child = first.result["pid"]
    done = await finished(q, (await q.add("x", {"do": "hang"})).id)
    assert done.state == JobState.FAILED and done.error_type == ErrorType.NETWORK_ERROR
    assert "timed out after 0.5s" in (done.error_message or "")
    await gone(child)
    after = await finished(q, (await q.add("x", {"do": "pid"})).id)
    assert after.state == JobState.COMPLETED and after.result["pid"] != child
    assert w.running == 0


async def test_cancel_kills_the_running_child(running: Running) -> None:
    q, _ = await running(attempts=3)
    hung = await q.add("x", {"do": "hang"})
    pid = await hanging(q, hung.id)
    assert await q.cancel(hung.id, "no longer needed") == "signalled"
    done = await finished(q, hung.id)
    assert done.state == JobState.FAILED and done.error_type == ErrorType.CANCELLED
    assert done.attempts_made == 1
    await gone(pid)
    after = await finished(q, (await q.add("x", {"do": "pid"})).id)
    assert after.state == JobState.COMPLETED and after.result["pid"] != pid


@pytest.mark.parametrize(
    ("do", "error_type", "attempts_made", "message"),
    [
        ("raise", ErrorType.UNKNOWN, 2, "ValueError: bad input 7"),
        ("unrecoverable", ErrorType.API_ERROR, 1, "UnrecoverableError: no way"),
        ("not_json", ErrorType.VALIDATION_ERROR, 1, "job result is not JSON-serializable"),
        ("retry_after", ErrorType.UNKNOWN, 2, "RetryAfter: try later"),
    ],
)
async def test_errors_come_back_typed(
    running: Running, do: str, error_type: ErrorType, attempts_made: int, message: str
) -> None:
    q, _ = await running(attempts=2)
    done = await finished(q, (await q.add("x", {"do": do, "n": 7})).id)
    assert done.state == JobState.FAILED and done.error_type == error_type
    assert done.attempts_made == attempts_made
    assert message in (done.error_message or "")


async def test_max_tasks_per_child_recycles(running: Running) -> None:
    q, _ = await running(isolation=ProcessIsolation(max_tasks_per_child=2))
    pids = []
    for i in range(4):
        done = await finished(q, (await q.add("x", {"do": "pid", "n": i})).id)
        pids.append(done.result["pid"])
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2]
    await gone(pids[0])


async def test_memory_limit_and_initializer(running: Running) -> None:
    options = ProcessIsolation(memory_limit=1 << 30, initializer=h.init)
    q, _ = await running(isolation=options, attempts=1)
    env = await finished(q, (await q.add("x", {"do": "env"})).id)
    assert env.result.startswith("ready:")
    big = await finished(q, (await q.add("x", {"do": "alloc", "bytes": 2 << 30})).id)
    assert big.state == JobState.FAILED and "MemoryError" in (big.error_message or "")
    small = await finished(q, (await q.add("x", {"do": "alloc", "bytes": 1 << 20})).id)
    assert small.result == 1 << 20
    # a child that ran out of memory is replaced
    after = await finished(q, (await q.add("x", {"do": "env"})).id)
    assert after.result != env.result


async def test_a_forced_stop_kills_children_and_hands_jobs_back(
    redis_url: str, prefix: str
) -> None:
    q = Queue(QueueConfig("isostop"), redis=redis_url, prefix=prefix)
    w = Worker(q, h.work, handle_signals=False, shutdown_grace=0.2, isolation="process")
    task = asyncio.create_task(w.run())
    try:
        hung = await q.add("x", {"do": "hang"})
        pid = await hanging(q, hung.id)
        await asyncio.wait_for(w.close(), HANG)
        await task
        await gone(pid)
        assert await q.get_job_state(hung.id) == JobState.WAITING
    finally:
        await q.close()


def test_handlers_a_child_cannot_import_are_refused(redis_url: str, prefix: str) -> None:
    q = Queue(QueueConfig("isoref"), redis=redis_url, prefix=prefix)

    async def nested(job: Job) -> None:
        return None

    for bad in (nested, lambda job: None, functools.partial(h.work)):
        with pytest.raises(ConfigError, match="cannot run in a child process"):
            Worker(q, bad, isolation="process")
    with pytest.raises(ConfigError, match="cannot run in a child process"):
        Worker(q, {"a": h.work, "b": nested}, isolation="process")
    with pytest.raises(ConfigError, match="isolation must be"):
        Worker(q, h.work, isolation="thread")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_tasks_per_child"):
        ProcessIsolation(max_tasks_per_child=0)
    with pytest.raises(ConfigError, match="initializer"):
        ProcessIsolation(initializer=lambda: None)
    Worker(q, {"a": h.work, "b": h.cpu}, isolation="process")  # importable: accepted


# -- end to end: worker processes ------------------------------------------------------------


class IsolatedWorkerProcess:
    """`isolated_worker_proc.py` in a process of its own; its log goes to a file."""

    def __init__(self, url: str, prefix: str, config: dict[str, Any], grace: float) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="jq-iso-", suffix=".log", delete=False)  # noqa: SIM115 - kept open for the process
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        script = Path(__file__).parent / "isolated_worker_proc.py"
        args = [sys.executable, str(script), url, prefix, json.dumps(config), str(grace)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=str(ROOT)
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "ready" in line, Path(self.log.name).read_text()

    async def exited(self) -> int:
        async def ended() -> bool:
            return self.proc.poll() is not None

        await wait_for(ended, what="the worker process to exit")
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def procs() -> Iterator[list[IsolatedWorkerProcess]]:
    started: list[IsolatedWorkerProcess] = []
    yield started
    for p in started:
        p.close()


async def test_kill_9_of_the_worker_takes_its_child_along_and_the_job_runs_elsewhere(
    redis_url: str, prefix: str, procs: list[IsolatedWorkerProcess], running: Running
) -> None:
    # the victim runs no stall check while it lives (its first takes the stall lock for an
    # hour): nobody takes its job before the kill
    victim_cfg = {"name": "isok9", "lease": 0.5, "stall_interval": 3600, "drain_delay": 0.3}
    victim = IsolatedWorkerProcess(redis_url, prefix, victim_cfg, grace=5)
    procs.append(victim)
    q = Queue(QueueConfig("isok9"), redis=redis_url, prefix=prefix)
    try:
        job = await q.add("x", {"do": "hang_once"})
        child = await hanging(q, job.id)
        assert child != victim.proc.pid

        async def stall_locked() -> bool:
            return bool(await q.redis.exists(q.keys.stall_lock))

        await wait_for(stall_locked, what="the victim's stall check")
        victim.proc.kill()
        await victim.exited()
        await gone(child)  # no orphan: the child dies with its worker
        await q.redis.delete(q.keys.stall_lock)  # the dead victim's lock
        rescue = Queue(
            QueueConfig("isok9", stall_interval=0.1, drain_delay=0.3),
            redis=redis_url,
            prefix=prefix,
        )
        running.queues.append(rescue)
        w = Worker(rescue, h.work, handle_signals=False, isolation="process")
        running.workers.append((w, asyncio.create_task(w.run())))
        done = await finished(q, job.id)
        assert done.state == JobState.COMPLETED and done.attempts_made == 1
        assert done.result["logs"] == [f"hanging in {child}"]
        assert done.result["pid"] not in (child, victim.proc.pid, os.getpid())
    finally:
        await q.close()


async def test_sigterm_stops_the_worker_and_its_children(
    redis_url: str, prefix: str, procs: list[IsolatedWorkerProcess]
) -> None:
    worker = IsolatedWorkerProcess(redis_url, prefix, {"name": "isoterm"}, grace=0.3)
    procs.append(worker)
    q = Queue(QueueConfig("isoterm"), redis=redis_url, prefix=prefix)
    try:
        idle = await finished(q, (await q.add("x", {"do": "pid"})).id)
        hung = await q.add("x", {"do": "hang"})
        busy = await hanging(q, hung.id)
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.exited() == 0
        # the hung job's child was killed past the grace, the job handed back
        await gone(busy)
        assert await q.get_job_state(hung.id) == JobState.WAITING
        assert idle.result["pid"] == busy  # the same child ran both jobs
    finally:
        await q.close()
