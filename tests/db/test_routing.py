"""Reads on replicas, writes on the primary, against a real streaming replica set."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import asyncpg
import pytest
from pydantic import BaseModel

from tests.db.helpers import SMALL, cluster_for, port, read_port
from tests.db.replication import ReplicationSet
from zephyr_db import ConnectionPool, DatabaseCluster


async def test_a_write_on_the_primary_is_read_back_from_a_replica(
    servers: ReplicationSet, table: str
) -> None:
    async with cluster_for(servers, replicas=1) as cluster:
        async with cluster.write() as conn:
            new_id = await conn.fetchval(
                f"INSERT INTO {table} (name) VALUES ($1) RETURNING id", "ada"
            )
            assert await port(conn) == servers.primary.port
        for _ in range(200):  # replication is asynchronous: poll the replica with a deadline
            async with cluster.read() as conn:
                assert await port(conn) == servers.replicas[0].port
                row = await conn.fetchrow(f"SELECT name FROM {table} WHERE id = $1", new_id)
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row["name"] == "ada"


async def test_a_write_through_read_fails_with_postgresqls_read_only_error(
    servers: ReplicationSet, table: str
) -> None:
    async with cluster_for(servers) as cluster:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            async with cluster.read() as conn:
                await conn.execute(f"INSERT INTO {table} (name) VALUES ('x')")
        # the replica is still in rotation: a SQL error is not an outage
        assert all(s.usable for s in cluster.status()[1:])
        assert await read_port(cluster) in {r.port for r in servers.replicas}


async def test_round_robin_alternates_replicas_and_never_reads_the_primary(
    servers: ReplicationSet,
) -> None:
    async with cluster_for(servers, strategy="round_robin") as cluster:
        ports = [await read_port(cluster) for _ in range(10)]
    assert Counter(ports) == {servers.replicas[0].port: 5, servers.replicas[1].port: 5}
    assert all(a != b for a, b in itertools.pairwise(ports))


async def test_least_connections_picks_the_replica_with_fewer_in_use(
    servers: ReplicationSet,
) -> None:
    async with cluster_for(servers, strategy="least_connections") as cluster:
        async with cluster.read() as held:  # one replica now has a connection in use
            busy = await port(held)
            ports = {await read_port(cluster) for _ in range(6)}
        assert ports == {r.port for r in servers.replicas} - {busy}


async def test_no_replicas_reads_the_primary(servers: ReplicationSet) -> None:
    async with cluster_for(servers, replicas=0) as cluster:
        assert await read_port(cluster) == servers.primary.port
        assert cluster.fallbacks == 0  # nothing to fall back from


class UserCreate(BaseModel):
    name: str
    email: str


async def test_the_proposals_routes_work_as_written(servers: ReplicationSet, table: str) -> None:
    import httpx
    from fastapi import FastAPI

    servers.primary.psql(f"ALTER TABLE {table} ADD COLUMN email text")
    pool_config = {
        "min_size": 1,
        "max_size": 5,
        "max_queries": 50000,
        "max_inactive_connection_lifetime": 300,
        "timeout": 60,
        "command_timeout": 30,
        "server_settings": {"jit": "off", "application_name": "zephyr_app"},
    }
    cluster = DatabaseCluster(
        write_url=servers.url(servers.primary),
        read_urls=[servers.url(r) for r in servers.replicas],
        pool_config=pool_config,
    )
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, object]:
        async with cluster.read() as conn:
            user = await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", user_id)
            return dict(user) if user else {}

    @app.post("/users")
    async def create_user(user_data: UserCreate) -> dict[str, object]:
        async with cluster.write() as conn:
            user_id = await conn.fetchval(
                f"INSERT INTO {table} (name, email) VALUES ($1, $2) RETURNING id",
                user_data.name,
                user_data.email,
            )
            return {"id": user_id}

    async with cluster:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            created = await client.post("/users", json={"name": "Ada", "email": "ada@x.org"})
            user_id = created.json()["id"]
            for _ in range(200):
                found = (await client.get(f"/users/{user_id}")).json()
                if found:
                    break
                await asyncio.sleep(0.05)
        async with cluster.read() as conn:
            assert await conn.fetchval("SHOW application_name") == "zephyr_app"
    assert found == {"id": user_id, "name": "Ada", "email": "ada@x.org"}


async def test_connection_pool_counts_in_use_and_waiting(servers: ReplicationSet) -> None:
    async with ConnectionPool(servers.url(servers.primary), min_size=1, max_size=1) as pool:
        assert await pool.fetchval("SELECT 41 + 1") == 42
        async with pool.acquire() as conn:
            waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
            while pool.stats().waiting == 0:  # the waiter reached the full pool
                await asyncio.sleep(0.01)
            stats = pool.stats()
            assert (stats.size, stats.in_use, stats.waiting, stats.max_size) == (1, 1, 1, 1)
            assert await conn.fetchval("SELECT 1") == 1
        assert await waiter == 1
        assert pool.stats().in_use == pool.stats().waiting == 0


async def test_statement_cache_size_zero_prepares_no_named_statements(
    servers: ReplicationSet,
) -> None:
    """What PgBouncer's transaction mode needs: nothing prepared that outlives a query."""
    query = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__asyncpg%'"
    url = servers.url(servers.primary)
    async with ConnectionPool(url, **SMALL) as cached, cached.acquire() as conn:
        assert await conn.fetchval("SELECT $1::int", 7) == 7
        assert await conn.fetchval(query) >= 1
    async with ConnectionPool(url, statement_cache_size=0, **SMALL) as plain, plain.acquire() as c:
        assert await c.fetchval("SELECT $1::int", 7) == 7
        assert await c.fetchval(query) == 0
