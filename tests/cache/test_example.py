"""examples/shop/profiles.py: a profile endpoint cached by group, invalidated on update."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from examples.shop import profiles
from zephyr_cache import configure


async def test_profile_is_cached_and_invalidated_on_update(redis_url: str) -> None:
    configure({"default": {"backend": "redis", "url": redis_url, "timeout": 300}})
    app = FastAPI()
    app.include_router(profiles.router)
    before = profiles.LOADS["count"]
    original = dict(profiles.CUSTOMERS[1])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            first = await client.get("/profiles/1")
            second = await client.get("/profiles/1")
            assert first.status_code == second.status_code == 200
            assert first.json() == second.json() == original
            assert profiles.LOADS["count"] == before + 1  # the second came from Redis

            updated = await client.put("/profiles/1", json={"name": "Ada L.", "city": "Paris"})
            assert updated.status_code == 200
            after = await client.get("/profiles/1")
            assert after.json() == {"id": 1, "name": "Ada L.", "city": "Paris"}
            assert profiles.LOADS["count"] == before + 2

            assert (await client.get("/profiles/99")).status_code == 404
    finally:
        profiles.CUSTOMERS[1] = original
