"""Bad input at the public edge: values shown in errors (cut short), and job ids looked up.

An error names the bad value, but a 10 KB string (or a huge int) given by mistake must not be
echoed whole into the message, and from there into logs, pages and metrics: `shown` keeps the
start of its `repr` and says how long it was.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidJobError

__all__ = ["SHOWN_CHARS", "cut", "finite", "job_ref", "shown"]

SHOWN_CHARS = 80
"""Longest `repr` of a bad value put in an error message; a longer one is cut."""


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters with its full length said when longer."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the error being raised
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


def cut(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters (for context put in a message), its length said."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def job_ref(job_id: Any) -> str:
    """A job id given to look a job up: any str (one that cannot exist is simply not found);
    anything else is refused before it reaches Redis.

    Raises:
        InvalidJobError: `job_id` is not a str.
    """
    if not isinstance(job_id, str):
        raise InvalidJobError(f"job_id must be a str, got {shown(job_id)}")
    return job_id


def finite(value: int | float) -> bool:
    """`math.isfinite`, False (not OverflowError) for an int too large for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
