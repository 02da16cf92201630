"""Fixtures for the AI-layer tests: the fake Anthropic server and a client pointed at it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_anthropic import API_KEY, HANG, FakeAnthropic

from pipeline.ai import AnthropicLLM


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """A running fake Messages API on 127.0.0.1 (random port)."""
    server = await FakeAnthropic().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def llm(fake_anthropic: FakeAnthropic) -> AsyncIterator[AnthropicLLM]:
    """The real `AnthropicLLM` talking to the fake server. Its read timeout only bounds a hang:
    the fake replies at once (the timeout test uses a client of its own)."""
    client = AnthropicLLM(API_KEY, base_url=fake_anthropic.base_url, timeout=HANG)
    try:
        yield client
    finally:
        await client.aclose()
