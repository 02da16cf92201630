"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest

from jobqueue.retry import register_error_rule, register_error_type
from jobqueue.retry import rules as retry_rules
from jobqueue.retry import types as retry_types


@pytest.fixture(autouse=True)
def engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unit test sees the engine alone and leaves nothing behind.

    The application's rules and error types live in process-wide registries: those of
    `pipeline.ai` are there when another test module imported it. Each unit test starts with
    empty registries (the built-in types only) and the previous ones come back afterwards, so
    whatever a test registers ends with it. (Unit tests never import `pipeline`: a first import
    here would register its types into the emptied registries, to be lost afterwards.)
    """
    monkeypatch.setattr(retry_rules, "_rules", ())
    monkeypatch.setattr(retry_types, "_registered", MappingProxyType({}))


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


@pytest.fixture
def judge_rejection() -> str:
    """An application's own error type, registered the way the pipeline registers it."""
    return register_error_type("JUDGE_REJECTION", delay=5.0, retryable=True)
