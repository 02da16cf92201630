"""`python -m pipeline.workers`: the five queues' workers and the status mirror, in one process.

Run as many such processes, on as many machines, as you like: they share the work through
Redis (global concurrency and rate limits hold across all of them). SIGTERM/SIGINT stops
taking jobs and lets running ones finish within the grace period; a second signal stops now.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from jobqueue import ConfigError, JobState, Worker, run
from pipeline import tracing
from pipeline.cli_args import USAGE_ERRORS, count, fail, port, shown
from pipeline.metrics import MetricsServer, serve_metrics
from pipeline.mirror import JobSnapshot, StatusMirror
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings, get_settings
from pipeline.stages import STAGES, make_handler
from pipeline.watch import WATCH_JOB, WATCH_QUEUE, watch_handler
from pipeline.webhooks.delivery import Deliverer

__all__ = ["Workers", "main"]

log = logging.getLogger("pipeline.workers")


class Workers:
    """The workers of some stages plus the status mirror (and, with webhooks on, their
    deliveries), started and stopped together."""

    def __init__(
        self,
        rt: Runtime,
        *,
        queues: Sequence[str] = JOB_TYPES,
        concurrency: int | None = None,
        mirror: bool | None = None,
        webhooks: bool = True,
    ) -> None:
        unknown = set(queues) - set(JOB_TYPES)
        if unknown:
            raise ConfigError(
                f"unknown queues {shown(sorted(unknown))}; expected some of {JOB_TYPES}"
            )
        self.rt = rt
        self.workers: list[Worker] = []
        for job_type in queues:
            qs = rt.settings.queue_settings(job_type)
            handler: Any = make_handler(rt, STAGES[job_type])
            if job_type == WATCH_QUEUE:  # its workers also start the runs of watched sectors
                handler = {job_type: handler, WATCH_JOB: watch_handler(rt)}
            self.workers.append(
                Worker(
                    rt.queues[job_type],
                    handler,
                    concurrency=concurrency or qs.worker_concurrency or qs.concurrency,
                    shutdown_grace=rt.settings.shutdown_grace,
                    handle_signals=False,
                )
            )
        # deliveries, when PIPELINE_WEBHOOK_URL is set
        self.deliverer = Deliverer(rt) if webhooks and rt.webhooks is not None else None
        if self.deliverer is not None and rt.webhooks is not None:
            self.workers.append(
                Worker(
                    rt.webhooks,
                    self.deliverer.deliver,
                    concurrency=rt.settings.webhook_concurrency,
                    shutdown_grace=rt.settings.shutdown_grace,
                    handle_signals=False,
                )
            )
        use_mirror = rt.settings.mirror if mirror is None else mirror
        self.mirror = (
            StatusMirror(
                rt.redis,
                list(queues),
                prefix=rt.settings.prefix,
                keys={q: rt.queues[q].keys for q in queues},
                pool=rt.pool,
                reconcile=self._reconcile,
                block_ms=500,
                claim_idle_ms=int(rt.settings.mirror_claim_idle * 1000),
                writers=rt.settings.mirror_writers,
                batch_size=rt.settings.mirror_batch_size,
            )
            if use_mirror
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._signals = 0

    async def _reconcile(self, queue: str) -> list[JobSnapshot]:
        q = self.rt.queues[queue]
        snapshots: list[JobSnapshot] = []
        for state in (
            JobState.WAITING,
            JobState.DELAYED,
            JobState.ACTIVE,
            JobState.COMPLETED,
            JobState.FAILED,
        ):
            for job_id in await q.get_job_ids(state, limit=10_000):
                job = await q.get_job(job_id)
                if job is not None:
                    snapshots.append(
                        JobSnapshot(
                            job_id=job.id,
                            name=job.name,
                            state=str(job.state),
                            progress=job.progress,
                            attempts=job.attempts_made,
                            error_message=job.error_message,
                            error_type=job.error_type,
                        )
                    )
        return snapshots

    async def run(self) -> None:
        """Run until `close()` (or, with `install_signals`, SIGTERM/SIGINT)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(w.run(), name=f"worker-{w.queue.name}") for w in self.workers
        ]
        if self.mirror is not None:
            self._tasks.append(loop.create_task(self.mirror.run(), name="status-mirror"))
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    def install_signals(self) -> None:
        """Stop gracefully on the first SIGTERM/SIGINT, at once on the second."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        force = self._signals > 1
        log.info(
            "%s: %s",
            signal.Signals(sig).name,
            "stopping now" if force else "finishing running jobs",
        )
        asyncio.get_running_loop().create_task(self.close(force=force))

    async def close(self, *, force: bool = False) -> None:
        """Stop the workers (gracefully unless `force`), then the mirror."""
        await asyncio.gather(*(w.close(force=force) for w in self.workers))
        if self.mirror is not None:
            await self.mirror.close()
        if self.deliverer is not None:
            await self.deliverer.aclose()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.workers", description=__doc__)
    p.add_argument(
        "--queues",
        default=",".join(JOB_TYPES),
        help="comma-separated job types to work on (default: all five)",
    )
    p.add_argument(
        "--concurrency",
        type=count,
        default=None,
        help="jobs at once per queue in this process (default: from settings)",
    )
    p.add_argument("--no-mirror", action="store_true", help="do not run the status mirror")
    p.add_argument(
        "--no-webhooks",
        action="store_true",
        help="do not deliver webhooks here (default: delivered when PIPELINE_WEBHOOK_URL is set)",
    )
    p.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics are served on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    return p


async def _amain(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import migrate

    rt = await Runtime.create(settings)
    served: MetricsServer | None = None
    try:
        await migrate(rt.pool)
        workers = Workers(
            rt,
            queues=[q.strip() for q in args.queues.split(",") if q.strip()],
            concurrency=args.concurrency,
            mirror=False if args.no_mirror else None,
            webhooks=not args.no_webhooks,
        )
        if args.metrics_port is not None:
            served = serve_metrics(
                workers.workers, rt.queues.values(), port=args.metrics_port,
                host=args.metrics_host,
            )  # fmt: skip
        workers.install_signals()
        log.info("workers started", extra={"queues": args.queues})
        await workers.run()
    finally:
        if served is not None:
            await served.close()
        await rt.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m pipeline.workers`."""
    from pipeline.logs import configure_logging

    parser = _parser()
    args = parser.parse_args(argv)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(JOB_TYPES)) or ([] if queues else [args.queues])
    if unknown:  # before anything connects
        parser.error(f"--queues: unknown {shown(unknown)}; expected some of {list(JOB_TYPES)}")
    if args.concurrency == 0:
        parser.error("--concurrency must be >= 1, got 0")
    try:
        settings = get_settings()
    except USAGE_ERRORS as exc:  # a bad environment variable: named, no traceback
        return fail(f"bad settings: {exc}")
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    provider = tracing.setup()  # only when the OTEL_* variables ask for an exporter
    try:
        return run(_amain(args, settings))
    except USAGE_ERRORS as exc:  # a bad URL, prefix or metrics address
        return fail(str(exc))
    except (OSError, OverflowError) as exc:  # a server unreachable, an address not bound
        return fail(f"{type(exc).__name__}: {exc}", 1)
    finally:
        tracing.shutdown(provider)


if __name__ == "__main__":
    raise SystemExit(main())
