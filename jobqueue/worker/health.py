"""Which of a worker's loops meet errors now: the `degraded` state its heartbeat publishes, and
the one place their errors are logged, rate-limited.

Every loop of a worker (taking and finishing, lease renewal, the stall check, the heartbeat,
the cancel listener, the scheduler ticks) reports each failed round with `failed(loop, exc)`
and each good one with `ok(loop)`. While any loop fails, `WorkerStats.degraded` names the
loops and the last error of each (redacted) and `degraded_since` when it began; both clear
when every loop has recovered. A Redis outage makes every loop fail on every round: the log
gets the first error of a loop at once, then at most one line per loop every `log_every`
seconds (with how many errors it met since), and one line when it recovers. Errors that are
not Redis's (a bug) are logged with their traceback, under the same limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..core.connection import REDIS_ERRORS
from ..core.redact import redact
from ..errors import ConfigError
from .running import WorkerStats

__all__ = ["WorkerHealth"]

log = logging.getLogger("jobqueue.worker")


@dataclass(slots=True)
class _Failing:
    reason: str
    since: float
    errors: int
    logged_at: float
    unlogged: int


def reason_of(exc: BaseException) -> str:
    """A one-line, password-free description of an error (its class and message)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text[:300])


class WorkerHealth:
    """The failing loops of one worker, published through its `WorkerStats`.

    Args:
        stats: the worker's stats (`degraded`, `degraded_since` are set here).
        log_every: seconds between two log lines about one loop that keeps failing
            (`Worker(error_log_every=)`).

    Raises:
        ConfigError: `log_every` is not a number of seconds >= 0.
    """

    def __init__(self, stats: WorkerStats, *, log_every: float = 30.0) -> None:
        if isinstance(log_every, bool) or not (
            isinstance(log_every, int | float) and log_every >= 0
        ):
            raise ConfigError(f"error_log_every must be seconds >= 0, got {log_every!r}")
        self._stats = stats
        self._failing: dict[str, _Failing] = {}
        self.log_every = log_every

    @property
    def degraded(self) -> bool:
        """Whether some loop failed its last round."""
        return bool(self._failing)

    def failed(self, loop: str, exc: BaseException, *, retry_in: float | None = None) -> None:
        """Record a failed round of `loop`, and log it unless one was logged lately."""
        now = time.monotonic()
        reason = reason_of(exc)
        state = self._failing.get(loop)
        first = state is None
        if state is None:
            state = self._failing[loop] = _Failing(reason, time.time(), 0, -1e18, 0)
        state.reason = reason
        state.errors += 1
        self._publish()
        if now - state.logged_at < self.log_every:
            state.unlogged += 1
            return
        more = f" ({state.unlogged} more since the last line)" if state.unlogged else ""
        state.logged_at, state.unlogged = now, 0
        retry = f"; retrying in {retry_in:.2f}s" if retry_in is not None else ""
        name = self._stats.name
        if isinstance(exc, REDIS_ERRORS):
            log.warning("worker %s: %s: redis error (%s)%s%s", name, loop, reason, retry, more)
        else:
            log.error(
                "worker %s: %s: unexpected error (%s)%s%s", name, loop, reason, retry, more,
                exc_info=exc if first else None,
            )  # fmt: skip

    def ok(self, loop: str) -> None:
        """Record a good round of `loop` (clears its failure)."""
        state = self._failing.pop(loop, None)
        if state is None:
            return
        log.info(
            "worker %s: %s: recovered after %d error(s) in %.1fs",
            self._stats.name, loop, state.errors, max(0.0, time.time() - state.since),
        )  # fmt: skip
        self._publish()

    def _publish(self) -> None:
        stats = self._stats
        if not self._failing:
            stats.degraded, stats.degraded_since = None, 0.0
            return
        stats.degraded = "; ".join(f"{k}: {v.reason}" for k, v in sorted(self._failing.items()))
        stats.degraded_since = min(v.since for v in self._failing.values())
