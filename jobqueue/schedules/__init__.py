"""Schedules: jobs added on an interval or a cron schedule (`Queue.upsert_scheduler`).

    await queue.upsert_scheduler("nightly", cron="0 6 * * 1-5", tz="America/New_York",
                                 name="report", data={"kind": "daily"})
    await queue.get_schedulers()      # [Schedule(id='nightly', next_run=..., ...)]
    await queue.remove_scheduler("nightly")

Every `Worker` of the queue ticks its schedulers (`Worker(scheduler_interval=1.0)`).

Exactly one job per tick: the schedule lives in Redis (a zset of next run times and a hash per
scheduler); a tick's job is added by one atomic script that checks the tick is due on the Redis
clock, adds the job under the deterministic id `sched:<scheduler id>:<tick ms>`, and moves the
next run to the following one (computed in Python with `croniter` for cron) only if the stored
next run is still the tick the caller read. Two workers racing cannot add two jobs for one
tick (the second finds the next run moved) nor skip one (a tick is only advanced past by the
script that adds its job).

Missed ticks (every worker was down while ticks fell due): the first missed tick is produced
once, standing for the whole missed period, then the schedule resumes at its next future run;
no burst of catch-up jobs (BullMQ's and Celery beat's behaviour).
"""

from ._model import Schedule

__all__ = ["Schedule"]
