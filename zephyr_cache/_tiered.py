"""A tiered store: read top-down and fill upward on a miss, write through, delete everywhere.

Local (in-process) tiers are kept coherent across processes by the invalidation
channel of the first Redis tier beneath them; while that channel is down they are
bypassed entirely, so a local tier is never stale for longer than a message takes.
Without a Redis tier beneath (all tiers local) there is nothing to invalidate from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zephyr_cache._invalidation import InvalidationChannel
from zephyr_cache._memory import MISSING
from zephyr_cache._stats import TierStats
from zephyr_cache._stores import MemoryStore, Store


class TieredStore(Store):
    """Stores stacked fastest first (see module docstring)."""

    holds_objects = True

    def __init__(
        self,
        name: str,
        stats: TierStats,
        tiers: list[Store],
        channel: InvalidationChannel | None,
    ) -> None:
        super().__init__(name, stats)
        self.tiers = tiers
        self.channel = channel
        self.shared = [t for t in tiers if not t.local]
        self.top: MemoryStore | None = tiers[0] if isinstance(tiers[0], MemoryStore) else None

    def locals_usable(self) -> bool:
        """Local tiers may be read and filled (the channel is up, or none is needed)."""
        return self.channel is None or self.channel.healthy

    def peek(self, key: str) -> Any:
        """Synchronous read of the top tier when it is local and usable, else ``MISSING``."""
        top = self.top
        if top is None or not (self.channel is None or self.channel.healthy):
            return MISSING
        value = top.backend.lookup(key)
        if value is not MISSING:
            top.stats.hits += 1
        return value

    async def get(self, key: str) -> Any:
        value, _ = await self.get_with_ttl(key)
        return value

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        channel = self.channel
        if channel is not None and not channel.healthy:
            channel.ensure()
        usable = channel is None or channel.healthy
        epoch = channel.epoch if channel is not None else 0
        missed: list[Store] = []
        for tier in self.tiers:
            if tier.local:
                if not usable:
                    continue
                value = await tier.get(key)
                if value is not MISSING:
                    return value, None
                missed.append(tier)
                continue
            value, ttl = await tier.get_with_ttl(key)
            if value is not MISSING:
                if missed and self._may_fill(epoch):
                    for upper in missed:
                        assert isinstance(upper, MemoryStore)
                        upper.backend.store(key, value, upper.capped(ttl))
                return value, ttl
            missed.append(tier)
        return MISSING, None

    def _may_fill(self, epoch: int) -> bool:
        channel = self.channel
        return channel is None or (channel.healthy and channel.epoch == epoch)

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        found: dict[str, Any] = {}
        pending = list(keys)
        channel = self.channel
        if channel is not None and not channel.healthy:
            channel.ensure()
        usable = channel is None or channel.healthy
        epoch = channel.epoch if channel is not None else 0
        missed: list[Store] = []
        for tier in self.tiers:
            if not pending:
                break
            if tier.local and not usable:
                continue
            replies = await tier.get_many_with_ttl(pending)
            fresh = {k: r for k, r in zip(pending, replies, strict=True) if r[0] is not MISSING}
            if fresh and missed and self._may_fill(epoch):
                for upper in missed:
                    assert isinstance(upper, MemoryStore)
                    for k, (v, ttl) in fresh.items():
                        upper.backend.store(k, v, upper.capped(ttl))
            found.update((k, v) for k, (v, _) in fresh.items())
            pending = [k for k in pending if k not in fresh]
            missed.append(tier)
        return [found.get(k, MISSING) for k in keys]

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        for tier in reversed(self.tiers):
            if tier.local:
                if not self.locals_usable():
                    continue
                assert isinstance(tier, MemoryStore)
                await tier.set(key, value, payload, tier.capped(ttl))
            elif not await tier.set(key, value, payload, ttl):
                # The shared tier did not take it: a local copy would be seen by this
                # process only. Drop any older local copy instead.
                for upper in self.tiers:
                    if upper.local:
                        await upper.delete(key)
                return False
        return True

    async def set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> bool:
        for tier in reversed(self.tiers):
            if tier.local:
                if not self.locals_usable():
                    continue
                assert isinstance(tier, MemoryStore)
                await tier.set_many(items, tier.capped(ttl))
            elif not await tier.set_many(items, ttl):
                for upper in self.tiers:
                    if upper.local:
                        await upper.delete_many([k for k, _, _ in items])
                return False
        return True

    async def add(
        self, key: str, value: Any, payload: bytes, ttl: float | None, *, strict: bool = False
    ) -> bool:
        target = self.shared[0] if self.shared else self.tiers[-1]
        try:
            return await target.add(key, value, payload, ttl, strict=strict)
        finally:
            for tier in self.tiers:
                if tier.local and tier is not target:
                    await tier.delete(key)

    async def delete(self, key: str) -> bool:
        deleted = False
        for tier in reversed(self.tiers):
            deleted = await tier.delete(key) or deleted
        return deleted

    async def delete_many(self, keys: Sequence[str]) -> None:
        for tier in reversed(self.tiers):
            await tier.delete_many(keys)

    async def clear(self, prefix: str) -> None:
        for tier in reversed(self.tiers):
            await tier.clear(prefix)

    def _bottom(self) -> Store:
        return self.shared[0] if self.shared else self.tiers[-1]

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        bottom = self._bottom()
        try:
            return await bottom.incr(key, delta, ttl)
        finally:
            # Also when it raised: a timed-out INCRBY may still have been applied.
            for tier in self.tiers:
                if tier.local and tier is not bottom:
                    await tier.delete(key)

    async def ttl(self, key: str) -> Any:
        return await self._bottom().ttl(key)

    async def expire(self, key: str, ttl: float | None) -> bool:
        bottom = self._bottom()
        changed = await bottom.expire(key, ttl)
        for tier in self.tiers:
            if tier.local and tier is not bottom:
                await tier.delete(key)  # refetched with the new lifetime
        return changed

    async def release(self, key: str, value: Any, payload: bytes) -> None:
        await self._bottom().release(key, value, payload)

    async def ping(self) -> None:
        for tier in self.shared:
            await tier.ping()

    async def aclose(self) -> None:
        for tier in self.tiers:
            await tier.aclose()
