"""Readiness of the database for ``/health/ready`` (the ``zephyr.health`` entry point).

The primary must answer ``SELECT 1`` (through every host of a multi-host URL, on
the one accepting writes) or the app is not ready. Replicas that do not answer make
the check *degraded*, not failed: reads fall back to the primary, so the app still
serves. The probe connects afresh each time, so it tests the network path, not a
pooled connection.
"""

from __future__ import annotations

import asyncio

import asyncpg

from zephyr_core import ReadinessCheck, Settings, mask_url
from zephyr_db._config import host_label, hosts, with_target_session_attrs


async def _select_one(url: str, timeout: float) -> None:
    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def database_probe(write_url: str, read_urls: list[str], timeout: float = 1.5) -> ReadinessCheck:
    """The "database" readiness check for a primary and its replicas."""
    if len(hosts(write_url)) > 1:
        write_url = with_target_session_attrs(write_url, "read-write")

    async def probe() -> str | None:
        results = await asyncio.gather(
            _select_one(write_url, timeout),
            *(_select_one(url, timeout) for url in read_urls),
            return_exceptions=True,
        )
        primary, replicas = results[0], results[1:]
        if isinstance(primary, BaseException):
            raise ConnectionError(
                mask_url(f"primary {host_label(write_url)}: {type(primary).__name__}: {primary}")
            )
        down = [
            mask_url(f"replica {host_label(url)}: {type(result).__name__}: {result}")
            for url, result in zip(read_urls, replicas, strict=True)
            if isinstance(result, BaseException)
        ]
        return "; ".join(down) or None

    return ReadinessCheck("database", probe, timeout=timeout + 0.5)


def checks(settings: Settings) -> list[ReadinessCheck]:
    """The ``zephyr.health`` provider: one "database" check when DATABASE_URL is set."""
    if not settings.DATABASE_URL:
        return []
    return [database_probe(settings.DATABASE_URL, list(settings.DATABASE_READ_URLS))]
