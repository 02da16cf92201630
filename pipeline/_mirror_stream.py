"""Reading the status mirror's streams: XREADGROUP replies as text, trimmed entries counted.

Private to `pipeline.mirror`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .status_fold import parse_stream_id

__all__ = ["parse_read", "s_text", "unread_trimmed"]


def s_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(fields: Mapping[Any, Any]) -> dict[str, str]:
    """An entry's fields as text (the engine's clients reply with bytes)."""
    try:
        return {k.decode(): v.decode() for k, v in fields.items()}
    except AttributeError:  # a client with decode_responses
        return {s_text(k): s_text(v) for k, v in fields.items()}


def unread_trimmed(stream: Mapping[str, Any], group: Mapping[str, Any]) -> int:
    """How many entries were trimmed before the group read them (an upper bound if unsure)."""
    removed = int(stream.get("entries-added") or 0) - int(stream["length"])
    if removed <= 0:
        return 0
    read = group.get("entries-read")
    if read is not None:
        return max(0, removed - int(read))
    # No read counter yet: if the group is behind the stream's start, what it never read may
    # have been removed (counted in full: an upper bound).
    first = stream.get("first-entry")
    start = parse_stream_id(first[0] if first else stream["last-generated-id"])
    return removed if parse_stream_id(group["last-delivered-id"]) < start else 0


def parse_read(resp: Any) -> list[tuple[str, str, dict[str, str] | None]]:
    """XREADGROUP reply (RESP2 list or RESP3 dict) as (stream key, id, fields or None)."""
    out: list[tuple[str, str, dict[str, str] | None]] = []
    if not resp:
        return out
    for key, entries in resp.items() if isinstance(resp, dict) else resp:
        if entries and isinstance(entries[0], list):  # redis-py wraps RESP3 entries once more
            entries = entries[0]
        for entry_id, fields in entries or ():
            # A pending entry trimmed away comes back with no fields.
            data = _text(fields) if fields else None
            out.append((s_text(key), s_text(entry_id), data))
    return out
