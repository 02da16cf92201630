"""Cluster and Sentinel URLs: parsed into the clients the engine uses, validated with errors
that name the bad part and never the password; the fast path picked for each client."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from jobqueue import ConfigError, QueueConfig
from jobqueue.core._urls import parse_cluster_url, parse_sentinel_url
from jobqueue.core.connection import connect, describe_client, sentinel_pool_of
from jobqueue.core.fastconn import FastConnection
from jobqueue.core.fastroute import (
    ClusterFastConnection,
    SentinelFastConnection,
    _first_key,
    fast_connection,
)


def test_cluster_url_nodes_credentials_and_options() -> None:
    parsed = parse_cluster_url(
        "redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?socket_timeout=2"
    )
    assert parsed.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert parsed.options == {"username": "app", "password": "s3cret", "socket_timeout": 2.0}
    assert parse_cluster_url("rediss+cluster://h:1").options == {"ssl": True}


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis+cluster://h:1/2", "database 0 only"),
        ("redis+cluster://", "no host:port"),
        ("redis+cluster://h:x", "port 'x'"),
        ("redis+cluster://:pw@h:1?colour=blue", "unknown option 'colour'"),
        ("redis+cluster://h:1?socket_timeout=soon", "is not a number"),
        ("redis://h:1", "scheme"),
    ],
)
def test_bad_cluster_urls_are_named_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        parse_cluster_url(url)
    assert "pw" not in str(err.value)


def test_sentinel_url_service_db_and_both_passwords() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://:m4ster@s1:26379,s2/mymaster/3?sentinel_password=s3nt&socket_timeout=1"
    )
    assert parsed.sentinels == [("s1", 26379), ("s2", 26379)]
    assert (parsed.service, parsed.db) == ("mymaster", 3)
    assert parsed.options == {"password": "m4ster", "socket_timeout": 1.0}
    assert parsed.sentinel_options == {"password": "s3nt"}
    for bad in ("redis+sentinel://s1", "redis+sentinel://s1/a/b/c", "redis+sentinel://s1/a/x"):
        with pytest.raises(ConfigError):
            parse_sentinel_url(bad)


async def test_connect_makes_the_client_of_each_form() -> None:
    cluster = connect("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001")
    sentinel = connect("redis+sentinel://127.0.0.1:26379/svc/2?password=pw")
    try:
        assert isinstance(cluster, RedisCluster)
        assert describe_client(cluster) == "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001"
        assert isinstance(sentinel, Redis) and sentinel_pool_of(sentinel) is not None
        assert describe_client(sentinel) == "redis+sentinel://:***@127.0.0.1:26379/svc/2"
        # the fast path for each: one connection per master; one to the sentinels' master
        assert isinstance(fast_connection(cluster), ClusterFastConnection)
        fast = fast_connection(sentinel)
        assert isinstance(fast, SentinelFastConnection) and fast.db == 2
        assert type(fast_connection(connect("redis://127.0.0.1:1/0"))) is FastConnection
        # TLS: the fast path speaks it, with the context redis-py would use; a TLS setting it
        # does not know leaves the connection to redis-py
        tls = fast_connection(connect("rediss+cluster://127.0.0.1:7000"))
        assert isinstance(tls, ClusterFastConnection)
        assert tls._conn(("127.0.0.1", 7000)).tls is not None
        from redis.asyncio.cluster import RedisCluster as Cluster

        odd = Cluster(host="127.0.0.1", port=7000, ssl=True)
        odd.connection_kwargs["ssl_unknown_option"] = 1
        assert fast_connection(odd) is None
        await odd.aclose()
    finally:
        await cluster.aclose()
        await sentinel.aclose()


def test_routing_key_of_a_command() -> None:
    assert _first_key(("EVALSHA", "sha", 2, "k1", "k2", "arg")) == "k1"
    assert _first_key(("EVALSHA", "sha", 0, "arg")) is None
    assert _first_key(("BZPOPMIN", "marker", 1)) == "marker"
    assert _first_key(("PING",)) is None


def test_durable_mode_is_validated() -> None:
    assert QueueConfig("q").durable is None
    assert QueueConfig("q", durable_replicas=2, durable_timeout=0.5).durable == (2, 500)
    for bad in ({"durable_replicas": -1}, {"durable_replicas": True}, {"durable_timeout": 0}):
        with pytest.raises(ConfigError):
            QueueConfig("q", **bad)  # type: ignore[arg-type]
