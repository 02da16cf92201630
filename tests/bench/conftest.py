"""Fixtures for the provider simulator's tests: a simulator on a free port (latency 0 unless a
test asks for some) and a clock that moves only when told."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from provider_helpers import MakeSim

from bench.provider import ManualClock, ProviderConfig, ProviderSimulator


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test says: bucket arithmetic is exact."""
    return ManualClock()


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """`await make_sim(clock=..., **config)`: a started simulator, closed after the test."""
    started: list[ProviderSimulator] = []

    async def make(clock: Any = None, **options: Any) -> ProviderSimulator:
        options.setdefault("latency_median", 0.0)
        sim = await ProviderSimulator(ProviderConfig(**options), clock=clock).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.close()
