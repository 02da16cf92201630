"""Redis Cluster and Sentinel URLs: parsed into the clients redis-py makes for them.

- `redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]` (and
  `rediss+cluster://` for TLS): the startup nodes of a Redis Cluster; the client finds the
  others. Only database 0 exists on a cluster.
- `redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?...]` (and
  `rediss+sentinel://`): the sentinels watching `service_name`; the client asks them for the
  master at connect time and again after a failover. The user info (or `password=`) is the
  master's; `sentinel_password=` (and `sentinel_username=`) are the sentinels' own when they
  have one.

Query options (each validated, an unknown one is an error naming it): `password`, `username`,
`client_name`, `socket_timeout`, `socket_connect_timeout`, `health_check_interval`, and for
TLS `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError
from .redact import redact_url

__all__ = [
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "ClusterUrl",
    "SentinelUrl",
    "parse_cluster_url",
    "parse_sentinel_url",
]

CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})

_OPTIONS: dict[str, Callable[[str], Any]] = {
    "password": str,
    "username": str,
    "client_name": str,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": float,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
}
_SENTINEL_OPTIONS = frozenset({"sentinel_password", "sentinel_username"})


class ClusterUrl:
    """A parsed `redis+cluster://` URL: startup nodes and client options."""

    def __init__(self, nodes: list[tuple[str, int]], options: dict[str, Any]) -> None:
        self.nodes = nodes
        self.options = options


class SentinelUrl:
    """A parsed `redis+sentinel://` URL: sentinels, service, db, and client options."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service: str,
        db: int,
        options: dict[str, Any],
        sentinel_options: dict[str, Any],
    ) -> None:
        self.sentinels = sentinels
        self.service = service
        self.db = db
        self.options = options
        self.sentinel_options = sentinel_options


def _hosts(netloc: str, where: str, default_port: int) -> tuple[list[tuple[str, int]], str]:
    """The `host:port` list of a netloc, and its user info (`user:password`, or '')."""
    info, _, hostlist = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for part in hostlist.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [::1]:7000
            host, _, rest = part[1:].partition("]")
            port_text = rest.lstrip(":")
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigError(f"{where}: port {port_text!r} is not a number") from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"{where}: {part!r} is not host:port")
        nodes.append((host, port))
    if not nodes:
        raise ConfigError(f"{where}: no host:port given")
    return nodes, info


def _options(query: str, where: str, extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in extra:
            options[name] = value
            continue
        convert = _OPTIONS.get(name)
        if convert is None:
            known = ", ".join(sorted([*_OPTIONS, *extra]))
            raise ConfigError(f"{where}: unknown option {name!r} (known: {known})")
        try:
            options[name] = convert(value)
        except ValueError:
            raise ConfigError(f"{where}: option {name}={value!r} is not a number") from None
    return options


def _credentials(info: str, options: dict[str, Any]) -> None:
    if not info:
        return
    user, colon, password = info.partition(":")
    if user:
        options.setdefault("username", unquote(user))
    if colon:
        options.setdefault("password", unquote(password))


def parse_cluster_url(url: str) -> ClusterUrl:
    """Parse a `redis+cluster://` or `rediss+cluster://` URL.

    Raises:
        ConfigError: another scheme, no node, a bad port, a database other than 0, or an
            unknown option (the message names it; never the password).
    """
    where = f"cluster URL {redact_url(url)}"
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ConfigError(f"{where}: scheme must be one of {sorted(CLUSTER_SCHEMES)}")
    nodes, info = _hosts(parts.netloc, where, 6379)
    path = parts.path.strip("/")
    if path not in ("", "0"):
        raise ConfigError(f"{where}: a cluster has database 0 only, not {path!r}")
    options = _options(parts.query, where)
    _credentials(info, options)
    if parts.scheme == "rediss+cluster":
        options["ssl"] = True
    return ClusterUrl(nodes, options)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a `redis+sentinel://` or `rediss+sentinel://` URL.

    Raises:
        ConfigError: another scheme, no sentinel, no service name, a bad db or port, or an
            unknown option (the message names it; never the password).
    """
    where = f"sentinel URL {redact_url(url)}"
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise ConfigError(f"{where}: scheme must be one of {sorted(SENTINEL_SCHEMES)}")
    sentinels, info = _hosts(parts.netloc, where, 26379)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigError(f"{where}: the path must be /service_name or /service_name/db")
    service = segments[0]
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ConfigError(f"{where}: db {segments[1]!r} is not a number") from None
    if db < 0:
        raise ConfigError(f"{where}: db {db} is negative")
    options = _options(parts.query, where, _SENTINEL_OPTIONS)
    _credentials(info, options)
    sentinel_options = {
        name.removeprefix("sentinel_"): options.pop(name)
        for name in list(options)
        if name in _SENTINEL_OPTIONS
    }
    if parts.scheme == "rediss+sentinel":
        options["ssl"] = True
    return SentinelUrl(sentinels, service, db, options, sentinel_options)
