"""Fixtures for the AI-layer tests: the fake Anthropic server and a client pointed at it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_anthropic import API_KEY, FakeAnthropic

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
    """The real `AnthropicLLM` talking to the fake server, with a short read timeout."""
    client = AnthropicLLM(API_KEY, base_url=fake_anthropic.base_url, timeout=2.0)
    try:
        yield client
    finally:
        await client.aclose()
