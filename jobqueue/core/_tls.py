"""TLS for the fast connection: the `ssl.SSLContext` redis-py would build for a `rediss://`
client, from the same connection settings, so the fast path verifies exactly what the client
itself would (CA, client certificate, hostname check, minimum version, ciphers)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

__all__ = ["TLS_KEYS", "tls_context"]

#: The `ssl_*` settings of redis-py's `SSLConnection` that `tls_context` honours; a client
#: with any other one keeps its own connection (the fast path is then not used).
TLS_KEYS = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)


def tls_context(kwargs: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The context for a connection made with redis-py's `SSLConnection` `kwargs`, with its
    defaults (certificate required, hostname checked); None when a setting is one this does
    not know (the caller then leaves the connection to redis-py)."""
    from redis.asyncio.connection import RedisSSLContext

    if any(k.startswith("ssl_") and k not in TLS_KEYS for k in kwargs):
        return None
    return RedisSSLContext(
        keyfile=kwargs.get("ssl_keyfile"),
        certfile=kwargs.get("ssl_certfile"),
        cert_reqs=kwargs.get("ssl_cert_reqs", "required"),
        include_verify_flags=kwargs.get("ssl_include_verify_flags"),
        exclude_verify_flags=kwargs.get("ssl_exclude_verify_flags"),
        ca_certs=kwargs.get("ssl_ca_certs"),
        ca_data=kwargs.get("ssl_ca_data"),
        ca_path=kwargs.get("ssl_ca_path"),
        check_hostname=bool(kwargs.get("ssl_check_hostname", True)),
        min_version=kwargs.get("ssl_min_version"),
        ciphers=kwargs.get("ssl_ciphers"),
        password=kwargs.get("ssl_password"),
    ).get()
