"""Running one taken job in a worker: its handler as a task, the outcome it leaves for the
next finish/take call, and the hooks and trace around it (`JobExecution`, a part of `Worker`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

from .. import _tracing
from ..config import QueueConfig
from ..core.codec import dumps
from ..core.replies import Outcome
from ..errors import ErrorType, InvalidJobError, WaitForChildren
from ..job import CURRENT_JOB, Job
from ._procpool import IsolatedRunner
from .calls import FinishCalls
from .execute import HandlerRunner
from .hooks import HookRunner, WorkerHooks
from .outcomes import completed, handed_back, logged_failure, waiting_for_children
from .running import RunningJobs, WorkerStats

__all__ = ["JobExecution"]


class JobExecution:
    """The part of `Worker` that runs the jobs its calls take (the attributes are the
    worker's)."""

    config: QueueConfig
    hooks: WorkerHooks
    _hooks: HookRunner
    _calls: FinishCalls
    _running: RunningJobs
    _stats: WorkerStats
    _runner: HandlerRunner | IsolatedRunner
    _direct: Callable[[Job], Any] | None
    _max_payload: int
    _delays: Mapping[str, float]
    _rng: random.Random
    _stopping: bool
    _on_progress: Callable[[Job, int], None] | None
    _outcome_hooks: bool

    def _poke(self) -> None:
        """Wake the worker's loop (`Worker._poke`)."""
        raise NotImplementedError

    def _start_new(self, job: Job) -> None:
        if self._stopping:  # taken behind the block as the worker stopped: back at once
            self._calls.outcomes.append(handed_back(job))
        else:
            self._start(job)

    def _start(self, job: Job) -> None:
        job._on_progress = self._on_progress
        task = asyncio.get_running_loop().create_task(self._execute(job))
        self._running.add(job, task, self._poke)
        if self.hooks.on_active is not None:
            self._hooks.fire(self.hooks.on_active, job)

    async def _execute(self, job: Job) -> None:
        outcome: Outcome | None = None
        value: Any = None
        token = CURRENT_JOB.set(job)
        span = _tracing.process_start(job)  # None unless tracing is on
        try:
            direct = self._direct
            # one async handler and no timeout: called here, a coroutine frame less per job
            result = await (direct(job) if direct is not None else self._runner.run(job))
            payload = dumps(result, limit=self._max_payload, what="job result")
            outcome, value = completed(job, payload), result
            self._stats.completed += 1
        except asyncio.CancelledError as exc:
            if job.id in self._running.lost:
                outcome = None  # the lease is gone: another worker owns the job now
            elif job.cancel_reason is not None:
                outcome = self._failure_outcome(job, None, ErrorType.CANCELLED, job.cancel_reason)
                value = exc
            else:
                outcome = handed_back(job)
        except WaitForChildren:
            outcome = waiting_for_children(job)  # no attempt spent, no outcome hook
        except InvalidJobError as exc:
            outcome = self._failure_outcome(job, None, ErrorType.VALIDATION_ERROR, str(exc))
            value = exc
        except Exception as exc:
            if job.cancel_reason is not None:
                # asked to cancel while it ran (e.g. `add_children` refused): not retried
                outcome = self._failure_outcome(job, None, ErrorType.CANCELLED, job.cancel_reason)
            else:
                outcome = self._failure_outcome(job, exc)
            value = exc
        finally:
            if span is not None:
                _tracing.process_end(span, job, outcome, value)
            CURRENT_JOB.reset(token)
            self._running.release(job.id, asyncio.current_task())
            if outcome is not None:
                self._calls.outcomes.append(outcome)
                if self._outcome_hooks:
                    self._calls.reported[job.id] = (job, value)
            self._poke()

    def _failure_outcome(
        self, job: Job, exc: BaseException | None, final: ErrorType | None = None, msg: str = ""
    ) -> Outcome:
        self._stats.failed += 1
        cfg, delays, rng = self.config, self._delays, self._rng
        return logged_failure(cfg, job, exc, final_type=final, message=msg, delays=delays, rng=rng)
