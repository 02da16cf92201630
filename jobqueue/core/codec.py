"""Replies from Redis are bytes (or str, for a client made with decode_responses=True)."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """A Redis reply value as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
