"""`python -m bench.redis_instructions [--take 1,5,25] [--jobs 2000] [--keep 1000]
[--events-maxlen N]`: the CPU instructions Redis runs per drained job, counted by callgrind.

A worker's hot path is one `finish` call per batch: it records the outcomes of the jobs that
ran and takes the next ones. This runs that call alone, in a loop (`--take` jobs a call, each
completed by the next call), against a private redis-server run under callgrind, and reports
what Redis executed per job: deterministic to a fraction of a percent, where Redis CPU time
on a shared VM moves 2-3x between minutes. Time is not measured here: instructions are not
time (cache misses, the kernel's network work), but a change that removes instructions from
the server's side of every job shows in this table whatever the machine's load.

Each `--take` value runs twice: the scripts as the function library (`FCALL`) and by
`EVALSHA` (`JOBQUEUE_FUNCTIONS=0`). Needs `valgrind` (Debian's package) and `redis-server`.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from jobqueue import Queue, QueueConfig
from jobqueue.core.replies import Outcome, Retention, TakeLimits

from .server import REDIS_SERVER, PrivateRedis

WARM = 200  # jobs run before the counters are zeroed (scripts loaded), beyond `--keep`


class CallgrindRedis(PrivateRedis):
    """A private redis-server run under `valgrind --tool=callgrind`, its counters read through
    `callgrind_control` (zeroed with `zero`, read with `dump`)."""

    def __init__(self, workdir: Path) -> None:
        wrapper = workdir / "redis-under-callgrind"
        wrapper.write_text(
            "#!/bin/sh\nexec valgrind --tool=callgrind --dump-instr=no "
            f'--callgrind-out-file={workdir}/cg.%p {REDIS_SERVER} "$@"\n'
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        self._workdir = workdir
        super().__init__(str(wrapper))

    def zero(self) -> None:
        """Zero the counters (the warm-up's instructions are not counted)."""
        assert self.proc is not None
        _control("-z", str(self.proc.pid))

    def instructions(self) -> int:
        """Instructions run since the last `zero`."""
        assert self.proc is not None
        for old in glob.glob(str(self._workdir / "cg.*")):
            os.remove(old)
        _control("-d", str(self.proc.pid))
        total = 0
        for dump in glob.glob(str(self._workdir / "cg.*")):
            for line in Path(dump).read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


async def _per_job(
    server: CallgrindRedis, take: int, jobs: int, keep: int, events_maxlen: int
) -> float:
    config = QueueConfig("instr", keep_completed=(keep, None), events_maxlen=events_maxlen)
    queue = Queue(config, redis=server.url)
    await queue.connect()
    try:
        await queue.scripts.load_all()
        warm = keep + WARM  # the completed set at its steady size: each call trims it
        for start in range(0, warm + jobs, 1000):
            size = min(1000, warm + jobs - start)
            await queue.add_bulk([("noop", {"t": 0.0, "pad": "x" * 200})] * size)
        limits = TakeLimits(worker="w1", lease_ms=30_000)
        retention = Retention(*queue.config.retention_ms)
        outcomes: list[Outcome] = []

        async def run(n: int) -> int:
            nonlocal outcomes
            done = 0
            while done < n:
                reply = await queue.scripts.finish(
                    outcomes, take=take, limits=limits, retention=retention
                )
                done += len(outcomes)
                outcomes = [
                    Outcome(j.job_id, j.token, "c", "null", "", 0, 0) for j in reply.taken.jobs
                ]
            return done

        await run(warm)
        server.zero()
        done = await run(jobs)
        return server.instructions() / done
    finally:
        await queue.close()
        server.flush()  # the benchmark's own server


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.redis_instructions", description=__doc__)
    p.add_argument("--take", default="1,5,25", help="jobs a call, comma list (default 1,5,25)")
    p.add_argument("--jobs", type=int, default=2000, help="jobs counted per run (default 2000)")
    p.add_argument("--keep", type=int, default=1000, help="completed jobs kept (default 1000)")
    p.add_argument(
        "--events-maxlen",
        type=int,
        default=QueueConfig("x").events_maxlen,
        help="the queue's events_maxlen (default: QueueConfig's; 0 = no event stream)",
    )
    args = p.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    rows = ["| jobs a call | FCALL (library) | EVALSHA | EVALSHA / FCALL |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="jq-callgrind-") as tmp:
        server = CallgrindRedis(Path(tmp)).start()
        try:
            for take in (int(t) for t in args.take.split(",")):
                counts = []
                for functions in ("1", "0"):
                    os.environ["JOBQUEUE_FUNCTIONS"] = functions
                    counts.append(
                        asyncio.run(
                            _per_job(server, take, args.jobs, args.keep, args.events_maxlen)
                        )
                    )
                fcall, evalsha = counts
                rows.append(f"| {take} | {fcall:,.0f} | {evalsha:,.0f} | {evalsha / fcall:.2f} |")
        finally:
            server.stop()
    print(
        f"Redis instructions per job (callgrind; {args.jobs} jobs, keep_completed={args.keep}, "
        f"events_maxlen={args.events_maxlen})"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
