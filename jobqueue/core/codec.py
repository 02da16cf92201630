"""JSON on the wire: a job's envelope, results, and reply values as text.

Jobs are stored as one JSON object, the envelope `{"n": name, "d": data, "at": attempts,
"p": priority, "ts": created}`; `ts` is appended by the server (`lua/add.lua`). With tracing on,
`"tp"` carries the trace context of the span that added the job (see `jobqueue._otel`).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidJobError, PayloadTooLargeError

__all__ = ["decode_envelope", "dumps", "text"]

# one encoder for every call: `json.dumps` with non-default options builds a new one each time
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def text(value: Any) -> str:
    """A Redis reply value as str (replies are bytes, or str with decode_responses=True)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def dumps(value: Any, *, limit: int, what: str) -> str:
    """Strict JSON (no NaN, no sets or objects) within `limit` bytes, else a typed error.

    Raises:
        InvalidJobError: `value` is not JSON.
        PayloadTooLargeError: its JSON is over `limit` bytes.
    """
    if value is None and limit >= 4:  # what most handlers return
        return "null"
    try:
        out = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"{what} is not JSON-serializable: {exc}") from None
    except RecursionError:  # nested deeper than the interpreter's recursion limit
        raise InvalidJobError(f"{what} is nested too deeply to be JSON") from None
    # `isascii` is a flag read in CPython: most payloads need no encoding to be measured
    try:
        size = len(out) if out.isascii() else len(out.encode())
    except UnicodeEncodeError:  # a lone surrogate ('\udc80'): no UTF-8 text can carry it
        raise InvalidJobError(f"{what} is not valid Unicode text (a lone surrogate)") from None
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes of JSON, over the limit of {limit}")
    return out


def decode_envelope(raw: bytes | str) -> dict[str, Any]:
    """Parse a stored job envelope; raises InvalidJobError when it is not a JSON object."""
    try:
        # UTF-8 is all we write: decoded here, `json.loads` need not detect the encoding
        env = json.loads(raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw)
    except ValueError as exc:
        raise InvalidJobError(f"stored job is not valid JSON: {exc}") from None
    if not isinstance(env, dict) or "n" not in env:
        raise InvalidJobError("stored job is not a job envelope")
    return env
