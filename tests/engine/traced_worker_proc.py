"""A worker process that records its spans (the OpenTelemetry SDK) as JSON lines in a file.

    python traced_worker_proc.py REDIS_URL PREFIX QUEUE OUT_FILE

A job named `first` adds a job `second` from its handler. Prints "ready" once the worker runs;
SIGTERM stops it, the spans written as they end.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from jobqueue import Job, Queue, Worker


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for s in spans:
                line = {
                    "name": s.name,
                    "kind": s.kind.name,
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                    "attributes": dict(s.attributes or {}),
                }
                f.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


async def main(url: str, prefix: str, name: str, out: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(out)))
    trace.set_tracer_provider(provider)

    async def handler(job: Job) -> str:
        if job.name == "first":
            await job.queue.add("second", {"after": job.id})
        return job.name

    async with Queue(name, redis=url, prefix=prefix) as q:
        worker = Worker(q, handler, handle_signals=False, shutdown_grace=1)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(worker.close()))
        task = asyncio.create_task(worker.run())
        print("ready", flush=True)
        await task
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
