"""Schedules end to end with three real worker processes: a schedule ticking every 0.2 s gives
exactly one job per tick, and after every process is killed and others start, the missed ticks
follow the stated policy (one job for the missed period, then the next future tick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import HANG, ROOT, wait_for, wait_redis_clock
from schedule_helpers import check_interval_ticks, ticks_of

from jobqueue import Queue
from jobqueue.core.connection import connect

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HERE = Path(__file__).parent
EVERY_MS = 200


class Proc:
    def __init__(self, url: str, prefix: str, queue: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "schedule_proc.py"), url, prefix, queue, "0.02"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None
        assert "ready" in self.proc.stdout.readline().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(HANG)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


async def test_three_processes_one_job_per_tick_and_missed_ticks_after_a_restart(
    redis_url: str, prefix: str, procs: list[Proc]
) -> None:
    side = connect(redis_url)
    q = Queue("beat", redis=redis_url, prefix=prefix)
    try:
        await q.upsert_scheduler("every-200ms", every=EVERY_MS / 1000, name="beat")
        procs.extend(Proc(redis_url, prefix, "beat") for _ in range(3))

        async def runs() -> list[dict[str, object]]:
            return [json.loads(x) for x in await side.lrange(f"{prefix}:test:log", 0, -1)]

        async def ran(n: int) -> bool:
            return len(await runs()) >= n

        await wait_for(lambda: ran(10), what="10 ticks run")
        for p in procs:
            p.kill()  # kill -9: no process ticks any more
        before = await ticks_of(q, "every-200ms")
        (stopped,) = await q.get_schedulers()
        pending = round(stopped.next_run.timestamp() * 1000)
        # at least three ticks fall due while nothing runs
        await wait_redis_clock(side, pending + 3 * EVERY_MS + 1)
        procs.extend(Proc(redis_url, prefix, "beat") for _ in range(3))
        n = len(await runs())
        await wait_for(lambda: ran(n + 5), what="5 more ticks after the restart")
        for p in procs:
            p.kill()
        ticks = await ticks_of(q, "every-200ms")
        log = await runs()
        # a tick's job that no process ran: a kill -9 caught it taken but not run yet (its
        # lease outlives the test) or added but not taken yet
        unrun = {t.job_id for t in ticks} - {str(e["id"]) for e in log}
        states = {str(await q.get_job_state(i)) for i in unrun}
    finally:
        await side.aclose()
        await q.close()
    check_interval_ticks(ticks, EVERY_MS)
    # several processes produced and ran them
    assert len({e["pid"] for e in log}) >= 2
    # exactly one job per tick: every tick's job ran once (none lost, none twice)
    counts = Counter(str(e["id"]) for e in log)
    assert set(counts) <= {t.job_id for t in ticks}
    assert set(counts.values()) == {1}, counts
    assert states <= {"active", "waiting"}, (unrun, states)
    assert len(counts) >= 15
    # after the restart: the pending tick once, standing for the missed ones, then the grid
    after = [t for t in ticks if t.tick_ms >= pending]
    assert len(ticks) == len(before) + len(after)
    assert after[0].tick_ms == pending
    assert after[0].created_ms >= pending + 3 * EVERY_MS
    # the missed ticks made no job each: the next one is after the restart
    assert after[1].tick_ms - after[0].tick_ms >= 4 * EVERY_MS
