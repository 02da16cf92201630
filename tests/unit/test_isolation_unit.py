"""Process isolation without processes: the frames, handler references, and how an error a
child describes is classified in the worker (the same verdict as in-process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jobqueue import (
    ConfigError,
    ErrorType,
    HandlerCrashedError,
    ProcessIsolation,
    QueueConfig,
    RetryAfter,
    UnrecoverableError,
    classify_error,
)
from jobqueue.errors import PayloadTooLargeError
from jobqueue.job import Job
from jobqueue.worker import _procwire as wire
from jobqueue.worker._child import error_info
from jobqueue.worker.isolation import HandlerRef, handler_ref, remote_error, resolve_ref
from jobqueue.worker.outcomes import failure


async def sample_handler(job: Job) -> Any:
    return job.data


class Holder:
    @classmethod
    def make(cls, job: Job) -> None:
        return None

    def method(self, job: Job) -> None:
        return None


def test_frames_round_trip() -> None:
    async def read(data: bytes) -> list[tuple[bytes, bytes]]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out = [await wire.read_frame(reader), await wire.read_frame(reader)]
        with pytest.raises(asyncio.IncompleteReadError):
            await wire.read_frame(reader)
        return out

    body = {"text": "héllo ✓", "n": [1, None]}
    data = wire.frame(wire.JOB, body) + wire.frame(wire.RESULT, '{"already":"json"}')
    (k1, b1), (k2, b2) = asyncio.run(read(data))
    assert (k1, json.loads(b1)) == (wire.JOB, body)
    assert (k2, b2) == (wire.RESULT, b'{"already":"json"}')


def test_handler_references() -> None:
    ref = handler_ref(sample_handler)
    assert ref == HandlerRef(__name__, "sample_handler")
    assert HandlerRef.from_json(json.loads(json.dumps(ref.as_json()))) == ref
    assert resolve_ref(ref) is sample_handler
    assert handler_ref(Holder.make).qualname == "Holder.make"  # a classmethod resolves equal
    for bad in (lambda job: None, Holder().method):
        with pytest.raises(ConfigError, match="cannot run in a child process"):
            handler_ref(bad)


def test_options() -> None:
    assert ProcessIsolation.of("process") == ProcessIsolation()
    assert ProcessIsolation.of(None) is None
    for bad in ({"max_tasks_per_child": 0}, {"memory_limit": 1024}, {"start_timeout": 0}):
        with pytest.raises(ConfigError):
            ProcessIsolation(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="isolation must be"):
        ProcessIsolation.of("thread")


class _Q:
    name = "q"
    config = QueueConfig("q", attempts=3, retry_delays={"UNKNOWN": 1.0})


def _job() -> Job:
    return Job(_Q(), "j1", {"n": "x", "d": None}, token="w:1", attempt=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad input"),
        ConnectionError("reset"),
        UnrecoverableError("no", error_type=ErrorType.API_ERROR),
        RetryAfter(2.5, "later"),
        RetryAfter(30, "429", error_type=ErrorType.RATE_LIMIT),
        RetryAfter(1, "db down", spend_attempt=False),
    ],
)
def test_a_childs_error_is_decided_as_in_process(exc: Exception) -> None:
    # through JSON, as it crosses the pipe
    rebuilt = remote_error(json.loads(json.dumps(error_info(exc))))
    cfg = _Q.config
    assert failure(cfg, _job(), rebuilt)[0] == failure(cfg, _job(), exc)[0]
    assert type(rebuilt).__name__ == type(exc).__name__


def test_an_unserializable_result_is_a_validation_error() -> None:
    rebuilt = remote_error(error_info(PayloadTooLargeError("job result is 9 bytes")))
    c = classify_error(rebuilt)
    assert (c.error_type, c.retryable) == (ErrorType.VALIDATION_ERROR, False)
    assert c.message == "PayloadTooLargeError: job result is 9 bytes"


def test_a_crash_is_crashed_and_retried() -> None:
    c = classify_error(HandlerCrashedError("killed by SIGSEGV", exit_code=-11))
    assert (c.error_type, c.retryable) == (ErrorType.CRASHED, True)
