"""Fixtures of the cluster and sentinel tests: a local Redis Cluster (3 masters, 3 replicas)
and a Sentinel group (master, replica, 3 sentinels) per module, worker processes per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster_helpers import DrainWorker

from jobqueue.testing import ClusterServers, SentinelServers


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    """A local cluster of this module's own (its tests kill masters)."""
    with ClusterServers() as servers:
        yield servers


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelServers]:
    """A master, a replica and three sentinels of this module's own."""
    with SentinelServers() as servers:
        yield servers


@pytest.fixture
def drain_workers() -> Iterator[list[DrainWorker]]:
    started: list[DrainWorker] = []
    yield started
    for w in started:
        w.close()
