"""Readiness of the caches' Redis tiers, for ``/health/ready`` (``zephyr.health`` group)."""

from __future__ import annotations

import asyncio

from redis.asyncio import RedisCluster

from zephyr_cache._registry import configs, is_configured
from zephyr_core import ReadinessCheck, Settings, get_settings, mask_url
from zephyr_core._health import redis_probe
from zephyr_core._topology import async_client


def redis_urls() -> dict[str, str]:
    """Each Redis server the configured caches use: URL -> the caches using it."""
    urls: dict[str, list[str]] = {}
    if not is_configured():
        return {}  # Settings' CACHE_URL: zephyr_core's own "redis" check covers it
    for config in configs().values():
        if config.backend == "redis" and config.url:
            urls.setdefault(config.url, []).append(config.name)
    return {url: ", ".join(names) for url, names in urls.items()}


async def _ping(url: str) -> None:
    """PING the server (single), the master the Sentinels name, or every Cluster master."""
    topology = get_settings().redis_topology(url)
    if topology.kind == "single":
        await redis_probe(url)()
        return
    client = async_client(topology, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        if isinstance(client, RedisCluster):
            await client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.ping()
    finally:
        await client.aclose()


async def probe_redis_tiers() -> None:
    """PING every Redis tier on a fresh connection; raise naming the ones that fail."""
    urls = redis_urls()
    results = await asyncio.gather(*(_ping(url) for url in urls), return_exceptions=True)
    failed = [
        f"cache {names} at {mask_url(url)}: {type(result).__name__}: {result}"
        for (url, names), result in zip(urls.items(), results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        raise ConnectionError("; ".join(failed))


def checks(settings: Settings) -> list[ReadinessCheck]:
    """The ``zephyr.health`` provider: one "cache" check over every Redis tier.

    The caches are read when the check runs, so ``configure()`` in the app module
    (imported after this provider is called) is what gets checked.
    """
    return [ReadinessCheck("cache", probe_redis_tiers, timeout=2.0)]
