"""Primary fail-over with libpq's multi-host URL: real promotion, real stop, real fencing.

Each test gets its own primary and replica (it destroys them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.db.helpers import SMALL, port
from tests.db.replication import ReplicationSet, available, started
from tests.servers import need
from zephyr_db import DatabaseCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def pair() -> Iterator[ReplicationSet]:
    need(available(), "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)")
    servers = started(1)
    servers.primary.psql("CREATE TABLE events (id serial PRIMARY KEY, note text)")
    servers.wait_replicated("SELECT to_regclass('events') IS NOT NULL", "t")
    yield servers
    servers.stop()


def multi_host_cluster(servers: ReplicationSet) -> DatabaseCluster:
    primary, replica = servers.primary, servers.replicas[0]
    return DatabaseCluster(
        write_url=f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/postgres",
        read_urls=[servers.url(replica)],
        pool_config=SMALL,
        health_interval=0.1,
    )


async def write_until_it_succeeds(
    cluster: DatabaseCluster, note: str, timeout: float, on_port: int | None = None
) -> tuple[int, int]:
    """(port written to, failed attempts) for the first successful write (on ``on_port``)."""
    deadline = time.monotonic() + timeout
    failures = 0
    while True:
        try:
            async with cluster.write() as conn:
                await conn.execute("INSERT INTO events (note) VALUES ($1)", note)
                written_to = await port(conn)
            if on_port is None or written_to == on_port:
                return written_to, failures
        except Exception:
            failures += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"no write succeeded (on {on_port}) within {timeout}s")
        await asyncio.sleep(0.05)


async def test_writes_reach_the_promoted_replica_with_no_failed_read(pair: ReplicationSet) -> None:
    primary, replica = pair.primary, pair.replicas[0]
    read_failures: list[BaseException] = []
    reads = 0
    stop_reading = asyncio.Event()

    async with multi_host_cluster(pair) as cluster:
        assert (await write_until_it_succeeds(cluster, "before", 1))[0] == primary.port

        async def keep_reading() -> None:
            nonlocal reads
            while not stop_reading.is_set():
                try:
                    async with cluster.read() as conn:
                        await conn.fetchval("SELECT count(*) FROM events")
                    reads += 1
                except Exception as exc:
                    read_failures.append(exc)
                await asyncio.sleep(0.01)

        reader = asyncio.create_task(keep_reading())
        await asyncio.to_thread(replica.promote)
        await asyncio.to_thread(primary.stop)
        began = time.monotonic()
        written_to, _ = await write_until_it_succeeds(cluster, "after", 10)
        took = time.monotonic() - began
        stop_reading.set()
        await reader

        assert written_to == replica.port and took < 10
        assert read_failures == [] and reads > 0
        async with cluster.read() as conn:
            assert await conn.fetchval("SELECT array_agg(note ORDER BY id) FROM events") == [
                "before",
                "after",
            ]


async def test_write_connections_to_a_host_turned_read_only_are_dropped(
    pair: ReplicationSet,
) -> None:
    primary, replica = pair.primary, pair.replicas[0]
    async with multi_host_cluster(pair) as cluster:
        assert (await write_until_it_succeeds(cluster, "before", 1))[0] == primary.port
        # The replica takes over; the old primary is fenced read-only but keeps running.
        await asyncio.to_thread(replica.promote)
        await asyncio.to_thread(primary.psql, "ALTER SYSTEM SET default_transaction_read_only = on")
        await asyncio.to_thread(primary.psql, "SELECT pg_reload_conf()")
        # The old primary's backends apply the reload a moment later: until then a write
        # may still land there. Then the write fails read-only and the pool reconnects.
        await write_until_it_succeeds(cluster, "after", 10, on_port=replica.port)

        async def write_port() -> int:
            async with cluster.write() as conn:
                await asyncio.sleep(0.05)  # hold it so the others need their own connection
                return await port(conn)

        # every connection of the write pool now reaches the new primary
        ports = await asyncio.gather(*(write_port() for _ in range(SMALL["max_size"])))
        assert set(ports) == {replica.port}
