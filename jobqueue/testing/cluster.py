"""A local Redis Cluster and a local Sentinel group on loopback ports, owned by their creator.

`ClusterServers` starts 3 masters with one replica each (`--cluster-enabled yes`), assigns the
slots itself (`CLUSTER SET-CONFIG-EPOCH`, `ADDSLOTSRANGE`, `MEET`, `REPLICATE`: no
`redis-cli` needed) and returns once every slot range has a replica in sync, so that a killed
master's replica can take over. `SentinelServers` starts a master, a replica and three
sentinels (`redis-server sentinel.conf --sentinel`) and returns once every sentinel sees the
replica and the other sentinels. Both are context managers; `close()` kills every process and
removes its directories.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from .server import RedisServer, free_port, valkey_binary, wait_port

__all__ = ["ClusterServers", "SentinelServers", "server_binary"]

_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def server_binary() -> str:
    """The machine's `redis-server` when there is one, else the bundled `valkey-server`."""
    return shutil.which("redis-server") or valkey_binary()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 50000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    return free_port()  # pragma: no cover - a machine with every port taken


def _sync_client(port: int) -> Any:
    import redis as syncredis

    return syncredis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)


def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it holds (a cluster's gossip has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # a node still starting, a reply not there yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s")
        time.sleep(0.1)


class ClusterServers:
    """A Redis Cluster of 3 masters and 3 replicas on free ports of 127.0.0.1.

    Args:
        binary: the server binary (default: `server_binary()`).
        node_timeout_ms: `cluster-node-timeout` (a killed master's replica takes over after
            about twice this).
        timeout: seconds to wait for the cluster to form.
        tls: `(ca_cert, cert, key)` files: every node also listens with TLS on a port of its
            own (`tls_port_of`), its cluster bus and replication speak TLS, and `url` is the
            `rediss+cluster://` URL of the TLS ports; clients need no certificate. The plain
            ports stay open for the fixture's own setup and checks.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        node_timeout_ms: int = 2000,
        timeout: float = 60.0,
        tls: tuple[str | Path, str | Path, str | Path] | None = None,
    ) -> None:
        self.binary = binary or server_binary()
        self.node_timeout_ms = node_timeout_ms
        self.timeout = timeout
        self.tls = tls
        extra = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
        ]  # fmt: skip
        self._tls_ports: dict[int, int] = {}
        self.nodes: list[RedisServer] = []
        for _ in range(6):
            port = _cluster_port()
            args = list(extra)
            if tls is not None:
                ca, cert, key = (str(f) for f in tls)
                # with `tls-cluster`, the bus port is the TLS port + 10000
                self._tls_ports[port] = tls_port = _cluster_port()
                args += [
                    "--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
                    "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
                    "--tls-cluster", "yes", "--tls-replication", "yes",
                ]  # fmt: skip
            self.nodes.append(RedisServer(self.binary, port=port, extra=args))

    def tls_port_of(self, node: RedisServer) -> int:
        """The TLS port of `node` (a cluster started with `tls`)."""
        return self._tls_ports[node.port]

    @property
    def url(self) -> str:
        """`redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...` of every node; with `tls`,
        `rediss+cluster://` of their TLS ports, with `ssl_ca_certs` naming the CA."""
        if self.tls is None:
            return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        nodes = ",".join(f"127.0.0.1:{self.tls_port_of(n)}" for n in self.nodes)
        return f"rediss+cluster://{nodes}?ssl_ca_certs={quote(str(self.tls[0]))}"

    def start(self) -> Self:
        """Start the six nodes, form the cluster, and wait until every range has a replica."""
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.close()
            raise
        return self

    def _form(self) -> None:
        clients = [_sync_client(n.port) for n in self.nodes]
        try:
            ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients]
            for i, client in enumerate(clients):
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            for client, (start, end) in zip(clients[:3], _RANGES, strict=True):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)
            for client in clients[1:]:
                # the bus port is the client port + 10000: the TLS one's with `tls-cluster`
                first = self.nodes[0].port
                client.execute_command(
                    "CLUSTER", "MEET", "127.0.0.1", self._tls_ports.get(first, first)
                )

            def everyone_known() -> bool:
                return all(
                    len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines()) == 6
                    for c in clients
                )

            _until("the six nodes did not meet", everyone_known, self.timeout)
            for replica, master_id in zip(clients[3:], ids[:3], strict=True):
                replica.execute_command("CLUSTER", "REPLICATE", master_id)

            def ready() -> bool:
                for c in clients:
                    if b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                for replica in clients[3:]:
                    info = replica.info("replication")
                    if info.get("master_link_status") != "up":
                        return False
                slots = clients[0].execute_command("CLUSTER", "SLOTS")
                return len(slots) == 3 and all(len(entry) >= 4 for entry in slots)

            _until("the cluster did not get a replica for every range", ready, self.timeout)
        finally:
            for c in clients:
                c.close()

    def master_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self.nodes:
            if not node.running:
                continue
            client = _sync_client(node.port)
            try:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
            except Exception:
                continue
            finally:
                client.close()
        raise LookupError(f"no node serves {key!r}")

    def wait_failover(self, dead: RedisServer, timeout: float = 30.0) -> None:
        """Wait until no live node names `dead` as a master of any slot."""

        def moved() -> bool:
            for node in self.nodes:
                if node is dead or not node.running:
                    continue
                client = _sync_client(node.port)
                try:
                    slots = client.execute_command("CLUSTER", "SLOTS")
                    if not slots or any(int(e[2][1]) == dead.port for e in slots):
                        return False
                    if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                        return False
                finally:
                    client.close()
            return True

        _until(f"no replica took over from {dead.port}", moved, timeout)

    def close(self) -> None:
        """Kill every node and remove its directory."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class SentinelServers:
    """A master, one replica and three sentinels on free ports of 127.0.0.1.

    Args:
        service: the monitored master's name.
        binary: the server binary (default: `server_binary()`).
        down_after_ms: `down-after-milliseconds` of the sentinels.
        timeout: seconds to wait for the group to form.
    """

    def __init__(
        self,
        service: str = "jqmaster",
        binary: str | None = None,
        *,
        down_after_ms: int = 1000,
        timeout: float = 60.0,
    ) -> None:
        self.service = service
        self.binary = binary or server_binary()
        self.down_after_ms = down_after_ms
        self.timeout = timeout
        self.master = RedisServer(self.binary)
        self.replica = RedisServer(
            self.binary, extra=["--replicaof", "127.0.0.1", str(self.master.port)]
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = tempfile.mkdtemp(prefix="jq-sentinel-")
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """`redis+sentinel://127.0.0.1:S1,.../<service>/0`."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> Self:
        """Start the servers and the sentinels; wait until the sentinels see everything."""
        try:
            self.master.start()
            self.replica.start()
            for port in self.sentinel_ports:
                conf = Path(self.dir) / f"sentinel-{port}.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} 3000\n"
                )
                self.sentinels.append(
                    subprocess.Popen(
                        [self.binary, str(conf), "--sentinel"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for port in self.sentinel_ports:
                wait_port("127.0.0.1", port)
            _until(
                "the sentinels did not see the replica and each other", self._formed, self.timeout
            )
        except BaseException:
            self.close()
            raise
        return self

    def _sentinel_fields(self, port: int) -> dict[str, str]:
        client = _sync_client(port)
        try:
            flat = client.execute_command("SENTINEL", "MASTER", self.service)
        finally:
            client.close()

        def text(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else str(x)

        if isinstance(flat, dict):
            return {text(k): text(v) for k, v in flat.items()}
        items = [text(x) for x in flat]
        return dict(zip(items[::2], items[1::2], strict=True))

    def _formed(self) -> bool:
        for port in self.sentinel_ports:
            fields = self._sentinel_fields(port)
            if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                return False
        info = _sync_client(self.replica.port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def master_port(self) -> int:
        """The port the first answering sentinel names as the master's."""
        for port in self.sentinel_ports:
            try:
                client = _sync_client(port)
                try:
                    _, master_port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                    )
                finally:
                    client.close()
                return int(master_port)
            except Exception:
                continue
        raise LookupError("no sentinel answered")

    def failover(self, timeout: float = 30.0) -> int:
        """`SENTINEL FAILOVER`; wait until the new master accepts writes and the sentinels
        name it. Returns its port."""
        old = self.master_port()
        client = _sync_client(self.sentinel_ports[0])
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        finally:
            client.close()
        new: list[int] = []

        def switched() -> bool:
            port = self.master_port()
            if port == old:
                return False
            role = _sync_client(port).info("replication").get("role")
            new[:] = [port]
            return bool(role == "master")

        _until("the sentinels did not fail over", switched, timeout)
        return new[0]

    def close(self) -> None:
        """Kill the sentinels and the servers; remove their directories."""
        for proc in self.sentinels:
            proc.kill()
            proc.wait(10)
        self.sentinels.clear()
        self.master.close()
        self.replica.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
