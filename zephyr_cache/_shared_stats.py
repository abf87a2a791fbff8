"""Counters shared through Redis, so ``zephyr cache stats`` sees every process's hits.

Each process adds the increase of its counters since its last flush to one Redis hash
per key prefix (``HINCRBY`` in one pipeline): every ``FLUSH_EVERY`` seconds from the
background loop, in ``close_caches()`` and at interpreter exit. Nothing is written
while counters are unchanged, and a failed flush is retried with the next one.
Memory-only caches have no shared place: their counters are on each process's
``/metrics`` only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from typing import Any

from zephyr_cache._failopen import BACKEND_ERRORS
from zephyr_cache._redis import RedisConnector
from zephyr_cache._runner import runner, started_runner
from zephyr_cache._stats import CacheStats, TierStats
from zephyr_core._background import cancel_on_loop

FLUSH_EVERY = 5.0
FIELDS = ("hits", "misses", "errors")


def hash_key(key_prefix: str) -> str:
    """Where the counters of caches with ``key_prefix`` live (outside the prefix, so
    ``clear()`` keeps them)."""
    return f"__zephyr_cache_stats__:{key_prefix}"


def _rows(stats: CacheStats) -> dict[str, TierStats]:
    stats.total.errors = sum(s.errors for s in stats.tiers.values())
    return {"all": stats.total, **stats.tiers}


class _Source:
    def __init__(self, stats: CacheStats, connector: RedisConnector, key: str) -> None:
        self.stats = stats
        self.connector = connector
        self.key = key
        self.sent: dict[str, int] = {}


class SharedStats:
    """The caches of this process whose counters go to Redis."""

    def __init__(self) -> None:
        self._sources: list[_Source] = []
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._at_exit = False

    def add(self, stats: CacheStats, connector: RedisConnector, key_prefix: str) -> None:
        with self._lock:
            self._sources.append(_Source(stats, connector, hash_key(key_prefix)))
            if self._task is None:

                async def spawn() -> None:
                    self._task = asyncio.get_running_loop().create_task(self._every())

                runner().submit(spawn()).result()
            if not self._at_exit:
                self._at_exit = True
                atexit.register(self._flush_at_exit)

    def _take(self, source: _Source) -> dict[str, int]:
        """The increases since the last flush, marked as sent."""
        deltas = {}
        with self._lock:
            for tier, counts in _rows(source.stats).items():
                for field in FIELDS:
                    name = f"{source.stats.cache}|{tier}|{field}"
                    now = getattr(counts, field)
                    delta = now - source.sent.get(name, 0)
                    if delta:
                        deltas[name] = delta
                        source.sent[name] = now
        return deltas

    def _giveback(self, source: _Source, deltas: dict[str, int]) -> None:
        with self._lock:
            for name, delta in deltas.items():
                source.sent[name] -= delta

    async def flush(self) -> None:
        """Send every increase (on the running loop's connections)."""
        for source in list(self._sources):
            deltas = self._take(source)
            if not deltas:
                continue
            try:
                async with source.connector.backend().client.pipeline(transaction=False) as pipe:
                    for name, delta in deltas.items():
                        pipe.hincrby(source.key, name, delta)
                    await pipe.execute()
            except BACKEND_ERRORS:
                self._giveback(source, deltas)  # Redis is down: next time

    def _flush_at_exit(self) -> None:
        # The last seconds of counters, from the background loop (still running here).
        background = started_runner()
        if background is not None and self._sources:
            with contextlib.suppress(Exception):
                background.submit(self.flush()).result(2)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    def stop(self) -> None:
        """Stop the periodic flush and forget the caches."""
        task = self._task
        self._task = None
        self._sources = []
        cancel_on_loop(task)


shared = SharedStats()


async def read(connector: RedisConnector, key_prefix: str) -> dict[str, Any]:
    """Every process's counters for caches under ``key_prefix``: cache -> tier -> counts."""
    raw = await connector.backend().client.hgetall(hash_key(key_prefix))
    found: dict[str, Any] = {}
    for name, value in raw.items():
        cache, tier, field = name.decode().split("|")
        found.setdefault(cache, {}).setdefault(tier, dict.fromkeys(FIELDS, 0))[field] = int(value)
    for tiers in found.values():
        for counts in tiers.values():
            reads = counts["hits"] + counts["misses"]
            counts["hit_ratio"] = round(counts["hits"] / reads, 4) if reads else None
    return found
