"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobqueue.retry import register_error_rule


@pytest.fixture
def rules() -> Iterator[Callable[..., Callable[[], bool]]]:
    """`register_error_rule`, with every rule it registered removed after the test."""
    handles: list[Callable[[], bool]] = []

    def register(*args: Any, **kwargs: Any) -> Callable[[], bool]:
        handle = register_error_rule(*args, **kwargs)
        handles.append(handle)
        return handle

    yield register
    for handle in handles:
        handle()
