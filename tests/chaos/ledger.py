"""The chaos suite's ledger: every job added and every handler start and end, written outside
the Redis under test (an SQLite file in WAL mode, shared by the producer and every worker
process; a `kill -9` loses nothing committed).

Times are the machine's real clock, read through `REAL_TIME`, captured before a worker may
shift its own clock (the clock-skew scenario), so that the ledger can judge delays.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["REAL_TIME", "Ledger", "LedgerView"]

REAL_TIME = time.time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS added (job_id TEXT PRIMARY KEY, at REAL, due REAL);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, pid INTEGER, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job_id);
"""


class Ledger:
    """One process's connection to the ledger file at `path` (created on first use)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a process crash loses nothing
        self._db.executescript(_SCHEMA)
        self._pid = os.getpid()

    def added(self, jobs: Iterable[tuple[str, float]]) -> None:
        """Record jobs Redis accepted: (job id, delay seconds)."""
        now = REAL_TIME()
        self._db.executemany(
            "INSERT OR IGNORE INTO added VALUES (?, ?, ?)",
            [(job_id, now, now + delay) for job_id, delay in jobs],
        )

    def start(self, job_id: str) -> int:
        """A handler starts the job; returns the run's number for `end`."""
        cur = self._db.execute(
            "INSERT INTO runs (job_id, pid, started) VALUES (?, ?, ?)",
            (job_id, self._pid, REAL_TIME()),
        )
        return int(cur.lastrowid or 0)

    def end(self, run: int) -> None:
        """The handler of run `run` returned."""
        self._db.execute("UPDATE runs SET ended = ? WHERE run = ?", (REAL_TIME(), run))

    def view(self) -> LedgerView:
        """What the ledger holds now."""
        added = {j: (a, d) for j, a, d in self._db.execute("SELECT job_id, at, due FROM added")}
        runs = self._db.execute("SELECT job_id, started, ended FROM runs").fetchall()
        return LedgerView(added, runs)

    def close(self) -> None:
        self._db.close()


@dataclass
class LedgerView:
    """The ledger's rows: `added` job id -> (added at, due at); `runs` (job id, started,
    ended or None)."""

    added: dict[str, tuple[float, float]]
    runs: list[tuple[str, float, float | None]]

    def starts(self) -> Counter[str]:
        """Handler starts per job."""
        return Counter(job_id for job_id, _, _ in self.runs)

    def ended(self) -> set[str]:
        """Jobs with at least one handler run that returned."""
        return {job_id for job_id, _, end in self.runs if end is not None}

    def early_starts(self, tolerance: float = 0.05) -> int:
        """Runs that started before their job was due (real clock)."""
        return sum(
            1 for job_id, start, _ in self.runs
            if job_id in self.added and start < self.added[job_id][1] - tolerance
        )  # fmt: skip

    def max_starts_in(self, window: float) -> int:
        """The most handler starts within any `window` seconds."""
        times = sorted(start for _, start, _ in self.runs)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best
