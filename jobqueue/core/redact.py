"""Masking secrets in text before it is logged, stored or shown.

One implementation for the engine and the applications built on it (exported as
`jobqueue.redact` and `jobqueue.redact_url`): error messages, the worker's logs and
`python -m jobqueue.inspect` call `redact`; connection URLs and DSNs shown to an operator go
through `redact_url`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

__all__ = ["redact", "redact_url"]

_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^\s/?#]*)@")
_API_KEY: Final = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_BEARER: Final = re.compile(r"\b(bearer)\s+[^\s,;\"']+", re.IGNORECASE)
_KEY_VALUE: Final = re.compile(
    r"\b(api[_-]?key|password|passwd|secret|token|access[_-]?token|auth[_-]?token)"
    r"(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Mask URL passwords, `sk-...` API keys, Bearer tokens and `api_key=...`-style values.

    In free text a URL's user info without a password (`https://TOKEN@host`) is masked whole,
    since it is often a token.

    Args:
        text: Any text, e.g. an exception message or a URL.

    Returns:
        The text with each secret replaced by `***` (idempotent).
    """

    def userinfo(m: re.Match[str]) -> str:
        user, colon, _ = m["info"].partition(":")
        return f"{m['scheme']}{user}:***@" if colon else f"{m['scheme']}***@"

    text = _API_KEY.sub("sk-***", _URL_USERINFO.sub(userinfo, text))
    return _KEY_VALUE.sub(r"\1\2***", _BEARER.sub(r"\1 ***", text))


def redact_url(url: str) -> str:
    """Mask the password of a connection URL or DSN, keeping what an operator needs to read.

    `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`. Unlike in free text,
    a user name without a password (`postgresql://app@db/x`) is a connection's user, not a
    token, and stays readable. Anything else is masked as by `redact`.

    Args:
        url: A URL (`redis://`, `postgresql://`, ...) or a key/value DSN.

    Returns:
        The URL with its secrets replaced by `***`.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    if parts.scheme and password is None:
        head = f"{parts.scheme}://{parts.netloc}"
        if url.startswith(head):
            return head + redact(url[len(head) :])
    return redact(url)
