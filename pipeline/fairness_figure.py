"""`python -m pipeline.fairness_figure`: how long user B's first analysis waits behind user A.

User A starts `--runs-a` sector runs (default 20), then user B starts one, all of one tier; the
runs go through the real pipeline (in-process workers, the offline model: set
`PIPELINE_OFFLINE_LATENCY` so that calls take time), each run's first sub-sector approved as
soon as its research ends. Measured once with the jobs grouped by user (`PIPELINE_FAIR_GROUPS`
on, the default) and once without: how many jobs, and how many analyses, of A started before
B's first analysis started, and the seconds from B's start. Each variant uses a key prefix of
its own on `REDIS_URL` and the database `DATABASE_URL` (migrated).

    PIPELINE_OFFLINE_LATENCY=0.05 python -m pipeline.fairness_figure --runs-a 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pipeline.demo import drive_run, scratch_runtime
from pipeline.flow import start_sector_research
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings, get_settings

__all__ = ["Figure", "main", "measure"]

_ANALYSIS = "stock-analysis"


@dataclass(frozen=True, slots=True)
class Figure:
    """What one variant measured."""

    groups: bool
    jobs_of_a_before: int
    """Jobs of A (every stage) started before B's first analysis started."""
    analyses_of_a_before: int
    """Analyses of A started before B's first analysis started."""
    analyses_of_a_while_b_waited: int
    """Analyses of A started after B's first analysis was added and before it started: at
    most one per worker slot with groups."""
    seconds: float
    """From B's start to its first analysis's start."""

    def line(self) -> str:
        """One row of the figure's table."""
        mode = "grouped by user" if self.groups else "no groups (FIFO)"
        return (
            f"| {mode} | {self.jobs_of_a_before} | {self.analyses_of_a_before} | "
            f"{self.analyses_of_a_while_b_waited} | {self.seconds:.1f} |"
        )


async def _events(rt: Runtime, ev: bytes) -> list[tuple[tuple[int, int], str, str]]:
    """Every event `ev` on the queues so far: (stream id, queue, job id), in stream order
    (the streams' ids come from one Redis clock)."""
    out: list[tuple[tuple[int, int], str, str]] = []
    for queue in JOB_TYPES:
        entries: Any = await rt.redis.xrange(rt.queues[queue].keys.events)
        for entry_id, fields in entries:
            if fields.get(b"ev") == ev:
                ms, seq = entry_id.decode().split("-")
                out.append(((int(ms), int(seq)), queue, fields[b"id"].decode()))
    out.sort()
    return out


async def _run_of_jobs(rt: Runtime, run: UUID) -> set[str]:
    """Ids of the jobs of a run so far (the status rows the enqueues wrote)."""
    rows = await rt.pool.fetch("SELECT job_id FROM job_status WHERE related_id = $1", str(run))
    return {r["job_id"] for r in rows}


async def measure(settings: Settings, *, runs_a: int, groups: bool, timeout: float) -> Figure:
    """Run the scenario once on `settings` (its prefix is replaced by a fresh one)."""
    from pipeline.ai.universe import universe

    drivers: list[asyncio.Task[Any]] = []
    async with scratch_runtime(settings, "fair", fair_groups=groups) as scratch:
        rt = scratch.rt
        try:
            names = [s.name for s in universe().sectors]
            # every job waits until all runs are started: the order of arrival is the scenario's
            for queue in rt.queues.values():
                await queue.pause()
            a_runs = [
                await start_sector_research(names[i % len(names)], "user-a", runtime=rt)
                for i in range(runs_a)
            ]
            b_run = await start_sector_research(names[0], "user-b", runtime=rt)
            scratch.start_workers()
            t0 = time.monotonic()
            for queue in rt.queues.values():
                await queue.resume()
            drivers = [
                asyncio.create_task(drive_run(rt, r, auto_approve=True, timeout=timeout))
                for r in [*a_runs, b_run]
            ]
            deadline = t0 + timeout
            while True:
                b_jobs = await _run_of_jobs(rt, b_run)
                starts = await _events(rt, b"active")
                first = next(
                    (i for i, (_, q, j) in enumerate(starts) if q == _ANALYSIS and j in b_jobs),
                    None,
                )
                if first is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"B's first analysis did not start within {timeout}s")
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - t0
            before = [(at, q, j) for at, q, j in starts[:first] if j not in b_jobs]
            b_first = starts[first][2]
            [added] = [at for at, q, j in await _events(rt, b"added") if j == b_first]
            return Figure(
                groups=groups,
                jobs_of_a_before=len(before),
                analyses_of_a_before=sum(q == _ANALYSIS for _, q, _ in before),
                analyses_of_a_while_b_waited=sum(
                    q == _ANALYSIS and at > added for at, q, _ in before
                ),
                seconds=seconds,
            )
        finally:
            # the drivers end before the workers (closed by scratch_runtime)
            for d in drivers:
                d.cancel()
            for d in drivers:
                with contextlib.suppress(BaseException):
                    await d


def main(argv: list[str] | None = None) -> int:
    """Print the figure: a Markdown table, one row per variant."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.fairness_figure")
    parser.add_argument("--runs-a", type=int, default=20, help="runs user A starts first")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per variant")
    args = parser.parse_args(argv)
    import sys

    from pipeline.logs import configure_logging

    configure_logging(level="WARNING", stream=sys.stderr)  # stdout holds the figure only
    settings = get_settings().model_copy(update={"shutdown_grace": 1.0, "drain_delay": 0.5})
    print(f"user A starts {args.runs_a} sector runs, then user B one (same tier);")
    print(f"offline model, {settings.offline_latency}s per call")
    print("| jobs | jobs of A started before B's first analysis | of which analyses | "
          "analyses of A started while it waited | seconds to B's first analysis |")  # fmt: skip
    print("|---|---|---|---|---|")
    for groups in (True, False):
        figure = asyncio.run(
            measure(settings, runs_a=args.runs_a, groups=groups, timeout=args.timeout)
        )
        print(figure.line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
