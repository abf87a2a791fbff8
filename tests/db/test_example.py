"""examples/shop keeps its customers in PostgreSQL through the cluster when configured."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.db.replication import ReplicationSet
from zephyr_cache import configure
from zephyr_core import get_settings


async def test_shop_profiles_read_replicas_and_an_update_is_seen_at_once(
    servers: ReplicationSet, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.shop import customers
    from examples.shop.app import app

    servers.primary.psql("DROP TABLE IF EXISTS customers")
    monkeypatch.setenv("DATABASE_URL", servers.url(servers.primary))
    monkeypatch.setenv("DATABASE_READ_URLS", servers.url(servers.replicas[0]))
    get_settings.cache_clear()
    configure({"default": {"backend": "redis", "url": redis_url, "timeout": 300}})
    started, stop = asyncio.Event(), asyncio.Event()

    async def serve_lifespan() -> None:  # its own task, as under uvicorn
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(serve_lifespan())
    await started.wait()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            assert customers.cluster is not None
            servers.wait_replicated("SELECT count(*) FROM customers", "2")  # seeded on the primary
            first = await client.get("/profiles/1")
            assert first.json() == {"id": 1, "name": "Ada", "city": "London"}
            assert customers.cluster.status()[1].reads == 1  # from the replica

            updated = await client.put("/profiles/1", json={"name": "Ada L.", "city": "Paris"})
            assert updated.json() == {"id": 1, "name": "Ada L.", "city": "Paris"}
            # the update re-cached the profile from the primary: no stale replica read
            assert (await client.get("/profiles/1")).json() == updated.json()
            assert servers.primary.psql("SELECT city FROM customers WHERE id = 1") == "Paris"
            assert (await client.get("/profiles/99")).status_code == 404
    finally:
        stop.set()
        await lifespan
    assert customers.cluster is None
