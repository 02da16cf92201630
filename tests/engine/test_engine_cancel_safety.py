"""A task blocked on our Redis client always sees its cancellation (redis-py's write timeout
uses asyncio.wait_for, which on Python 3.11 can swallow one)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from engine_helpers import HANG

from jobqueue.core.connection import CancelSafeConnection, connect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.not_cluster("checks the connection class of a single-server pool"),
]


async def test_cancellations_are_never_lost(redis_url: str, prefix: str) -> None:
    client = connect(redis_url, socket_timeout=HANG)
    assert client.connection_pool.connection_class is CancelSafeConnection
    key = f"{prefix}:cancel-probe"

    async def busy() -> None:
        while True:
            await client.set(key, "1")

    lost = 0
    try:
        for i in range(300):
            task = asyncio.create_task(busy())
            await asyncio.sleep(0.0003 * (i % 7))
            task.cancel()
            try:
                # a lost cancellation loops for ever: the deadline only bounds that hang
                await asyncio.wait_for(asyncio.shield(task), HANG)
            except asyncio.CancelledError:
                pass
            except TimeoutError:
                lost += 1
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, HANG)
    finally:
        await client.aclose()
    assert lost == 0
