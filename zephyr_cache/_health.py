"""Readiness of the caches' Redis tiers, for ``/health/ready`` (``zephyr.health`` group)."""

from __future__ import annotations

import asyncio
from typing import Any

from zephyr_cache._registry import configs, is_configured
from zephyr_core import ReadinessCheck, Settings, mask_url
from zephyr_core._health import redis_probe


def redis_urls() -> dict[str, str]:
    """Each Redis server the configured caches use: URL -> the caches using it."""
    urls: dict[str, list[str]] = {}
    if not is_configured():
        return {}  # Settings' CACHE_URL: zephyr_core's own "redis" check covers it
    for config in configs().values():
        if config.backend == "redis" and config.url:
            urls.setdefault(config.url, []).append(config.name)
    return {url: ", ".join(names) for url, names in urls.items()}


async def probe_redis_tiers() -> dict[str, Any]:
    """Reach every Redis tier on fresh connections (the server, the master the Sentinels
    name, every Cluster master); raise naming the ones that fail.

    Returns, per cache, what was reached (``/health/ready`` shows it): the kind of
    topology and the master(s).
    """
    urls = redis_urls()
    results = await asyncio.gather(*(redis_probe(url)() for url in urls), return_exceptions=True)
    failed = [
        f"cache {names} at {mask_url(url)}: {type(result).__name__}: {result}"
        for (url, names), result in zip(urls.items(), results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        raise ConnectionError("; ".join(failed))
    return {
        "tiers": {
            names: result
            for (_url, names), result in zip(urls.items(), results, strict=True)
            if isinstance(result, dict)
        }
    }


def checks(settings: Settings) -> list[ReadinessCheck]:
    """The ``zephyr.health`` provider: one "cache" check over every Redis tier.

    The caches are read when the check runs, so ``configure()`` in the app module
    (imported after this provider is called) is what gets checked.
    """
    return [ReadinessCheck("cache", probe_redis_tiers, timeout=2.0)]
