"""Replicas that stop, start again, or fall behind: real servers stopped and paused."""

from __future__ import annotations

import asyncio

import pytest

from tests.db.helpers import cluster_for, eventually, read_port
from tests.db.replication import ReplicationSet
from zephyr_db import DatabaseCluster, DatabaseUnavailable, NoHealthyReplica

pytestmark = pytest.mark.slow


async def test_a_stopped_replica_sends_reads_to_the_primary_and_they_return_when_it_starts(
    servers: ReplicationSet,
) -> None:
    replica = servers.replicas[0]
    async with cluster_for(servers, replicas=1) as cluster:
        assert await read_port(cluster) == replica.port
        await asyncio.to_thread(replica.stop)  # the loop keeps running: pooled sockets see EOF

        ports = [await read_port(cluster) for _ in range(20)]  # none of these may fail
        assert set(ports) == {servers.primary.port}
        assert cluster.fallbacks >= 20
        status = cluster.status()[1]
        assert not status.up and status.error

        await asyncio.to_thread(replica.start)
        await eventually(  # the background check puts it back, with no read needed
            lambda: cluster.status()[1].usable, 10, "the replica back in rotation"
        )
        assert await read_port(cluster) == replica.port


async def test_with_one_of_two_replicas_stopped_reads_stay_on_the_other(
    servers: ReplicationSet,
) -> None:
    stopped, running = servers.replicas
    async with cluster_for(servers) as cluster:
        await asyncio.to_thread(stopped.stop)
        ports = {await read_port(cluster) for _ in range(10)}
        assert ports == {running.port}
        assert cluster.fallbacks == 0


async def test_a_replica_down_at_start_is_retried_in_the_background(
    servers: ReplicationSet,
) -> None:
    replica = servers.replicas[0]
    await asyncio.to_thread(replica.stop)
    async with cluster_for(servers, replicas=1) as cluster:  # opens although the replica is down
        assert await read_port(cluster) == servers.primary.port
        await asyncio.to_thread(replica.start)
        await eventually(lambda: cluster.status()[1].usable, 10, "the replica to be taken in")
        assert await read_port(cluster) == replica.port


async def test_fallback_raise_raises_no_healthy_replica_naming_it(servers: ReplicationSet) -> None:
    replica = servers.replicas[0]
    async with cluster_for(servers, replicas=1, fallback="raise") as cluster:
        await asyncio.to_thread(replica.stop)
        with pytest.raises(NoHealthyReplica) as raised:
            await read_port(cluster)
        assert isinstance(raised.value, DatabaseUnavailable | ConnectionError)
        assert f"127.0.0.1:{replica.port}" in str(raised.value)
        async with cluster.write() as conn:  # writes are unaffected
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_replica_behind_max_lag_is_skipped_until_it_catches_up(
    servers: ReplicationSet, table: str
) -> None:
    replica = servers.replicas[0]
    async with cluster_for(servers, replicas=1, max_lag=0.5) as cluster:
        assert await read_port(cluster) == replica.port  # idle and streaming: no lag
        await asyncio.to_thread(replica.replay, True)
        await asyncio.to_thread(servers.primary.psql, f"INSERT INTO {table} (name) VALUES ('new')")

        def skipped() -> bool:
            status = cluster.status()[1]
            return status.up and not status.usable and (status.lag or 0) > 0.5

        await eventually(skipped, 10, "the replica to lag")
        assert {await read_port(cluster) for _ in range(5)} == {servers.primary.port}

        await asyncio.to_thread(replica.replay, False)
        await eventually(lambda: cluster.status()[1].usable, 10, "the replica to catch up")
        assert await read_port(cluster) == replica.port
        async with cluster.read() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_a_replica_killed_under_a_read_is_taken_out_and_the_next_read_moves(
    servers: ReplicationSet, caplog: pytest.LogCaptureFixture
) -> None:
    replica = servers.replicas[0]
    cluster = DatabaseCluster(  # trust authentication ignores the password
        servers.url(servers.primary).replace("postgres@", "postgres:hunter2@"),
        [servers.url(replica).replace("postgres@", "postgres:hunter2@")],
        pool_config={"min_size": 1, "max_size": 2},
        health_interval=60,
    )
    async with cluster:
        with pytest.raises(Exception) as raised:  # a query in flight fails: asyncpg's error
            async with cluster.read() as conn:
                await asyncio.to_thread(replica.stop, "immediate")
                await conn.fetchval("SELECT 1")
        assert not isinstance(raised.value, AssertionError)
        assert not cluster.status()[1].usable  # taken out at once, not at the next check
        assert await read_port(cluster) == servers.primary.port
    assert "taken out of rotation" in caplog.text and "hunter2" not in caplog.text


async def test_an_unreachable_primary_fails_open_with_the_password_masked() -> None:
    from tests.servers import free_port

    cluster = DatabaseCluster(f"postgresql://app:hunter2@127.0.0.1:{free_port()}/db")
    with pytest.raises(DatabaseUnavailable) as raised:
        await cluster.open()
    assert "127.0.0.1" in str(raised.value) and "hunter2" not in str(raised.value)


async def test_a_replica_whose_pool_is_all_in_use_stays_in_rotation(
    servers: ReplicationSet,
) -> None:
    async with (
        cluster_for(
            servers, replicas=1, pool_config={"min_size": 1, "max_size": 1}, health_timeout=0.3
        ) as cluster,
        cluster.read(),
    ):  # the replica's only connection is busy
        await cluster.check_health()  # on its own connection: answers at once
        assert cluster.status()[1].usable


async def test_lag_is_read_by_an_ordinary_role_too(servers: ReplicationSet) -> None:
    """pg_stat_wal_receiver hides its status from roles without pg_read_all_stats."""
    create = "CREATE ROLE zephyr_app LOGIN"
    servers.primary.psql(f"DO $$ BEGIN {create}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    servers.wait_replicated("SELECT count(*) FROM pg_roles WHERE rolname = 'zephyr_app'", "1")
    # the last commit must be older than max_lag, or any reading would pass
    age = "SELECT now() - pg_last_xact_replay_timestamp() > interval '0.5 s'"
    servers.wait_replicated(age, "t")
    replica = servers.replicas[0]
    cluster = DatabaseCluster(
        servers.url(servers.primary).replace("postgres@", "zephyr_app@"),
        [servers.url(replica).replace("postgres@", "zephyr_app@")],
        pool_config={"min_size": 1, "max_size": 2},
        max_lag=0.5,
    )
    async with cluster:  # the primary is idle: a streaming replica is not behind
        status = cluster.status()[1]
        assert status.usable and status.lag == 0.0
        assert await read_port(cluster) == replica.port
