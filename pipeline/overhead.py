"""`python -m pipeline.overhead`: the pipeline's own overhead, with the model at zero latency.

Sector runs go through the real pipeline one after another (in-process workers, the status
mirror on, the offline model answering at once, no rejection delay), each run's first
sub-sector approved as soon as its research ends. From the queues' event streams (one Redis
clock, millisecond ids) it reports, per hand-over from one stage to the next, the time from
the event that makes the next job ready to that job's start:

- fan-out: each first analysis added by the ranking (ready at once) -> it starts;
- analysis completed -> its judge starts (the judge's parent release);
- judge completed -> the format job starts;
- rejection: the re-run analysis added by the judge -> it starts;
- fan-in: the last format job completed -> the ranking's fan-in step starts;

and each run's time from its research's add to its ranking's completion, minus the wait for
its approval (research completed -> ranking added), which is the user's, not the pipeline's.

    python -m pipeline.overhead --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pipeline.demo import drive_run, scratch_runtime
from pipeline.flow import start_sector_research
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings, get_settings

__all__ = ["Overhead", "main", "measure"]

HANDOVERS = ("fan-out", "analysis -> judge", "judge -> format", "rejection -> re-run", "fan-in")

Events = dict[str, list[tuple[str, int]]]
"""Job id -> its events as (name, ms), in stream order."""


@dataclass
class Overhead:
    """Milliseconds measured per hand-over, and per run."""

    handovers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    runs: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The Markdown table."""
        out = ["| hand-over | count | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
        for name in HANDOVERS:
            values = sorted(self.handovers.get(name, []))
            if values:
                p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
                out.append(
                    f"| {name} | {len(values)} | {statistics.median(values):.0f} | {p99} | "
                    f"{values[-1]} |"
                )
        if self.runs:
            out.append(
                f"| whole run minus its approval wait | {len(self.runs)} | "
                f"{statistics.median(self.runs):.0f} | {max(self.runs)} | {max(self.runs)} |"
            )
        return out


async def _events(rt: Runtime, since_ms: int) -> dict[str, Events]:
    """Queue -> job id -> events, from `since_ms` (Redis clock) on."""
    out: dict[str, Events] = {}
    for queue in JOB_TYPES:
        jobs: Events = defaultdict(list)
        entries: Any = await rt.redis.xrange(rt.queues[queue].keys.events, min=f"{since_ms}-0")
        for entry_id, fields in entries:
            job_id = fields.get(b"id")
            if job_id is not None:
                ms = int(entry_id.decode().split("-")[0])
                jobs[job_id.decode()].append((fields[b"ev"].decode(), ms))
        out[queue] = jobs
    return out


def _first(events: list[tuple[str, int]], name: str, after: int = -1) -> int | None:
    return next((ms for ev, ms in events if ev == name and ms >= after), None)


def _fold(ev: dict[str, Events], ranking: list[tuple[str, int]], into: Overhead) -> None:
    """Add the hand-overs of the events of one finished run (`ranking`: its ranking's)."""
    analyses, judges, formats = ev["stock-analysis"], ev["judge-review"], ev["format-insights"]
    ends = [_first(f, "completed") for f in formats.values()]
    last = max((e for e in ends if e is not None), default=None)
    if last is not None and (step := _first(ranking, "active", last)) is not None:
        into.handovers["fan-in"].append(step - last)
    for job_id, events in analyses.items():
        stock, attempt = job_id.split(":")[1], int(job_id.rsplit(":", 1)[1])
        added, start = _first(events, "added"), _first(events, "active")
        if added is not None and start is not None:
            into.handovers["fan-out" if attempt == 1 else "rejection -> re-run"].append(
                start - added
            )
        judge = judges.get(f"judge-review:{stock}", [])
        done = _first(events, "completed")
        if done is not None and (start := _first(judge, "active", done)) is not None:
            into.handovers["analysis -> judge"].append(start - done)
    for job_id, events in judges.items():
        done = _first(events, "completed")
        fmt = formats.get(f"format-insights:{job_id.split(':', 1)[1]}", [])
        if done is not None and (start := _first(fmt, "active", done)) is not None:
            into.handovers["judge -> format"].append(start - done)


async def measure(settings: Settings, *, runs: int, timeout: float) -> Overhead:
    """Run `runs` sector runs one after another on `settings` (zero model latency and
    rejection delay; a fresh key prefix) and measure them."""
    from pipeline.ai.universe import universe

    report = Overhead()
    async with scratch_runtime(
        settings, "ovh", offline_latency=0.0, rejection_delay=0.0
    ) as scratch:
        rt = scratch.rt
        scratch.start_workers()
        names = [s.name for s in universe().sectors]
        for i in range(runs):
            sec, usec = await rt.redis.time()
            since = int(sec) * 1000 + int(usec) // 1000
            run: UUID = await start_sector_research(names[i % len(names)], "ovh", runtime=rt)
            await drive_run(rt, run, auto_approve=True, timeout=timeout)
            ev = await _events(rt, since)
            sub = await rt.pool.fetchval(
                "SELECT id FROM sub_sector WHERE sector_analysis_id = $1 AND status = 'completed'",
                run,
            )
            research = ev["sector-research"].get(f"sector-research:{run}", [])
            ranking = ev["stock-ranking"].get(f"stock-ranking:{sub}", [])
            added, done = _first(research, "added"), _first(research, "completed")
            approved, end = _first(ranking, "added"), _first(ranking, "completed")
            if None not in (added, done, approved, end):
                report.runs.append((end - added) - (approved - done))  # type: ignore[operator]
            _fold(ev, ranking, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.overhead")
    parser.add_argument("--runs", type=int, default=5, help="sector runs, one after another")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    import sys

    from pipeline.logs import configure_logging

    configure_logging(level="WARNING", stream=sys.stderr)
    settings = get_settings().model_copy(update={"shutdown_grace": 1.0})
    report = asyncio.run(measure(settings, runs=args.runs, timeout=args.timeout))
    with contextlib.suppress(BrokenPipeError):
        print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
