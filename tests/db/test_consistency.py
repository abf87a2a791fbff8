"""Read-your-writes: sessions and the window after a write, with an injected clock."""

from __future__ import annotations

import asyncio

from tests.db.helpers import cluster_for, read_port
from tests.db.replication import ReplicationSet


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_sticky_session_reads_the_primary(servers: ReplicationSet) -> None:
    replica_ports = {r.port for r in servers.replicas}
    async with cluster_for(servers) as cluster:
        async with cluster.session(sticky=True):
            assert {await read_port(cluster) for _ in range(4)} == {servers.primary.port}
        assert await read_port(cluster) in replica_ports
        assert cluster.fallbacks == 0  # a session's reads are not fallbacks


async def test_a_plain_session_reads_replicas_until_it_writes(servers: ReplicationSet) -> None:
    replica_ports = {r.port for r in servers.replicas}
    async with cluster_for(servers) as cluster:
        async with cluster.session() as session:
            assert await read_port(cluster) in replica_ports
            async with cluster.write() as conn:
                await conn.execute("SELECT 1")
            assert session.wrote
            assert await read_port(cluster) == servers.primary.port
        assert await read_port(cluster) in replica_ports


async def test_reads_follow_a_write_to_the_primary_for_the_window(
    servers: ReplicationSet,
) -> None:
    clock = FakeClock()
    replica_ports = {r.port for r in servers.replicas}
    async with cluster_for(servers, read_your_writes=2.0, clock=clock) as cluster:
        assert await read_port(cluster) in replica_ports
        async with cluster.write() as conn:
            await conn.execute("SELECT 1")
        assert await read_port(cluster) == servers.primary.port
        clock.now += 1.9
        assert await read_port(cluster) == servers.primary.port
        clock.now += 0.2
        assert await read_port(cluster) in replica_ports


async def test_another_tasks_write_does_not_move_this_tasks_reads(
    servers: ReplicationSet,
) -> None:
    replica_ports = {r.port for r in servers.replicas}
    wrote = asyncio.Event()

    async with cluster_for(servers, read_your_writes=60.0) as cluster:

        async def writer() -> int:
            async with cluster.write() as conn:
                await conn.execute("SELECT 1")
            wrote.set()
            return await read_port(cluster)

        async def reader() -> int:
            await wrote.wait()
            return await read_port(cluster)

        writer_port, reader_port = await asyncio.gather(writer(), reader())
    assert writer_port == servers.primary.port
    assert reader_port in replica_ports


async def test_without_a_window_reads_after_a_write_go_to_replicas(
    servers: ReplicationSet,
) -> None:
    async with cluster_for(servers) as cluster:
        async with cluster.write() as conn:
            await conn.execute("SELECT 1")
        assert await read_port(cluster) in {r.port for r in servers.replicas}
