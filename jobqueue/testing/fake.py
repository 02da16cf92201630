"""An in-memory Redis for tests without a server: `fakeredis` with its Lua runtime.

The engine recognises a fakeredis client and adapts (see docs/testing.md): its scripts are
loaded without their `#!lua` shebang line, the server check (`INFO`) is skipped, and every
command goes through redis-py (the engine's fast socket connection is for real servers).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from ..errors import ConfigError

if TYPE_CHECKING:
    from fakeredis import FakeServer

__all__ = ["fake_redis"]

_INSTALL = "pip install 'fakeredis[lua]' (or 'jobqueue[testing]')"


def fake_redis(*, server: FakeServer | None = None, **options: Any) -> Redis:
    """A `fakeredis.FakeAsyncRedis` set up as the engine needs it, for `Queue(..., redis=)`.

    Each call without `server` gets a new, empty in-memory server. Clients given the same
    `server` share its data, and the engine's own extra clients (a worker's blocking
    connection, the cancel listener, event readers) reach the same server too: they copy the
    client's connection settings, `server` included.

        queue = Queue("emails", redis=fake_redis())

    Args:
        server: a `fakeredis.FakeServer` to share (default: a new one).
        **options: more `FakeAsyncRedis` options. Replies must stay bytes (the engine decodes
            them itself): `decode_responses=True` is refused.

    Returns:
        The client (a `redis.asyncio.Redis` subclass); close it with `await client.aclose()`.

    Raises:
        ImportError: `fakeredis` or its Lua runtime (`lupa`) is not installed; the message
            names the package to install, `fakeredis[lua]`.
        ConfigError: `decode_responses=True`.
    """
    try:
        import fakeredis
    except ImportError:
        raise ImportError(f"jobqueue.testing.fake_redis needs fakeredis: {_INSTALL}") from None
    if importlib.util.find_spec("lupa") is None:  # fakeredis runs Lua scripts with it
        raise ImportError(
            f"jobqueue.testing.fake_redis needs fakeredis with Lua support (lupa): {_INSTALL}"
        )
    if options.get("decode_responses"):
        raise ConfigError(
            f"decode_responses={options['decode_responses']!r}: the engine needs bytes replies"
        )
    client: Redis = fakeredis.FakeAsyncRedis(
        server=server if server is not None else fakeredis.FakeServer(), **options
    )
    return client
