"""The Redis tier: an aiocache ``RedisCache`` per event loop, guarded for fail-open.

redis-py's asyncio connections belong to the loop that opened them, so each running
loop (the app's, the sync-function runner's, a test's) gets its own aiocache cache and
connection pool. The pool fails fast instead of retrying: ``socket_timeout`` and
``socket_connect_timeout`` are the operation timeout (100 ms by default) and redis-py's
retries are off, so fail-open decides what a failure costs, not a backoff loop.
aiocache's own ``asyncio.wait_for`` wrapper is off (``timeout=None``): it costs a task
per call and the socket timeouts already bound every operation.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from aiocache import RedisCache
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from zephyr_cache._failopen import BACKEND_ERRORS, Guard, logger
from zephyr_cache._invalidation import CHANNEL, message
from zephyr_cache._memory import MISSING
from zephyr_cache._serializers import BadSignature, RawBytes, Serializer
from zephyr_cache._stats import TierStats
from zephyr_cache._stores import Store


class RedisBackend(RedisCache):  # type: ignore[misc]
    """aiocache's ``RedisCache`` with its pool built from a URL (TLS, users, sockets)."""

    def __init__(self, url: str, operation_timeout: float, max_connections: int | None) -> None:
        def pool_from_url(**_aiocache_args: Any) -> ConnectionPool:
            # aiocache passes host/port/db/password; the URL carries those and more.
            return ConnectionPool.from_url(
                url,
                socket_timeout=operation_timeout,
                socket_connect_timeout=operation_timeout,
                retry=Retry(NoBackoff(), 0),
                max_connections=max_connections,
                decode_responses=False,
            )

        super().__init__(serializer=RawBytes(), timeout=None, connection_pool_class=pool_from_url)
        self.url = url

    async def _set(
        self, key: str, value: Any, ttl: Any = None, _cas_token: Any = None, _conn: Any = None
    ) -> Any:
        # aiocache 0.12 calls SETEX/PSETEX, which redis-py 8 deprecates: SET EX/PX.
        if _cas_token is not None:
            return await super()._set(key, value, ttl, _cas_token, _conn)
        if ttl is None:
            return await self.client.set(key, value)
        if isinstance(ttl, float):
            return await self.client.set(key, value, px=max(1, int(ttl * 1000)))
        return await self.client.set(key, value, ex=ttl)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (SCAN, never KEYS)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        deleted = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.client.unlink(*batch)
        return deleted

    async def aclose(self) -> None:
        """Close the connection pool (aiocache's ``close`` uses a deprecated call)."""
        await self.client.aclose()


class RedisConnector:
    """Hands out the :class:`RedisBackend` of the running event loop."""

    def __init__(self, url: str, operation_timeout: float, max_connections: int | None) -> None:
        self.url = url
        self.operation_timeout = operation_timeout
        self.max_connections = max_connections
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisBackend] = (
            weakref.WeakKeyDictionary()
        )

    def backend(self) -> RedisBackend:
        """This loop's aiocache cache (created on first use)."""
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            backend = RedisBackend(self.url, self.operation_timeout, self.max_connections)
            self._backends[loop] = backend
        return backend

    async def aclose(self) -> None:
        """Close the running loop's pool."""
        loop = asyncio.get_running_loop()
        backend = self._backends.pop(loop, None)
        if backend is not None:
            await backend.aclose()

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """Loops that still hold a pool."""
        return list(self._backends.keys())


_DOWN: Any = type("Down", (), {})()  # a write that was dropped (tier down or failing)

_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class RedisStore(Store):
    """A Redis server through aiocache's ``RedisCache``, guarded for fail-open.

    With ``publish`` on, writes are announced on the invalidation channel in the same
    ``MULTI`` so local tiers elsewhere drop the keys.
    """

    def __init__(
        self,
        name: str,
        stats: TierStats,
        connector: RedisConnector,
        serializer: Serializer,
        guard: Guard,
    ) -> None:
        super().__init__(name, stats)
        self.connector = connector
        self.serializer = serializer
        self.guard = guard
        self.publish = False

    def _decode(self, payload: bytes | None) -> Any:
        if payload is None:
            self.stats.misses += 1
            return MISSING
        try:
            value = self.serializer.loads(payload)
        except (ValueError, TypeError, BadSignature) as exc:
            # Unreadable (another serializer, a bad signature): a miss, never a crash.
            self.stats.errors += 1
            self.stats.misses += 1
            logger.warning("%s: unreadable cache entry skipped (%s)", self.guard.where, exc)
            return MISSING
        self.stats.hits += 1
        return value

    def _failed(self, exc: BaseException, operation: str) -> None:
        self.stats.errors += 1
        self.guard.failed(exc, operation)

    def _up(self) -> bool:
        guard = self.guard
        return not (guard.down_until and guard.bypassed())

    def _ok(self) -> None:
        if self.guard.in_outage:
            self.guard.succeeded()

    async def get(self, key: str) -> Any:
        if not self._up():
            self.stats.misses += 1
            return MISSING
        try:
            payload = await self.connector.backend().get(key)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET")
            self.stats.misses += 1
            return MISSING
        self._ok()
        return self._decode(payload)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        if not self._up():
            self.stats.misses += 1
            return MISSING, None
        try:
            async with self.connector.backend().client.pipeline(transaction=False) as pipe:
                payload, pttl = await pipe.get(key).pttl(key).execute()
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET")
            self.stats.misses += 1
            return MISSING, None
        self._ok()
        return self._decode(payload), (pttl / 1000 if pttl and pttl > 0 else None)

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        if not self._up():
            self.stats.misses += len(keys)
            return [MISSING] * len(keys)
        try:
            payloads = await self.connector.backend().multi_get(list(keys))
        except BACKEND_ERRORS as exc:
            self._failed(exc, "MGET")
            self.stats.misses += len(keys)
            return [MISSING] * len(keys)
        self._ok()
        return [self._decode(p) for p in payloads]

    async def get_many_with_ttl(self, keys: Sequence[str]) -> list[tuple[Any, float | None]]:
        """Values and remaining lifetimes in one round trip (for filling local tiers)."""
        if not self._up():
            self.stats.misses += len(keys)
            return [(MISSING, None)] * len(keys)
        try:
            async with self.connector.backend().client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key).pttl(key)
                replies = await pipe.execute()
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET")
            self.stats.misses += len(keys)
            return [(MISSING, None)] * len(keys)
        self._ok()
        return [
            (self._decode(payload), pttl / 1000 if pttl and pttl > 0 else None)
            for payload, pttl in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def _write(self, operation: str, keys: list[str], *commands: tuple[Any, ...]) -> Any:
        """Run commands (in a MULTI with the announcement when publishing)."""
        if not self._up():
            return _DOWN
        client = self.connector.backend().client
        try:
            if self.publish:
                async with client.pipeline(transaction=True) as pipe:
                    for name, *args in commands:
                        pipe.execute_command(name, *args)
                    pipe.execute_command("PUBLISH", CHANNEL, message(keys))
                    results = await pipe.execute()
                result = results[0]
            else:
                results = []
                for name, *args in commands:
                    results.append(await client.execute_command(name, *args))
                result = results[0]
        except BACKEND_ERRORS as exc:
            self._failed(exc, operation)
            return _DOWN
        self._ok()
        return result

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        if not self.publish:
            if not self._up():
                return False
            try:
                await self.connector.backend().set(key, payload, ttl=_ttl(ttl))
            except BACKEND_ERRORS as exc:
                self._failed(exc, "SET")
                return False
            self._ok()
            return True
        args: tuple[Any, ...] = ("SET", key, payload)
        if ttl:
            args = (*args, "PX", max(1, int(ttl * 1000)))
        return await self._write("SET", [key], args) is not _DOWN

    async def set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> bool:
        if not items:
            return True
        commands: list[tuple[Any, ...]] = [
            ("MSET", *[part for key, _, payload in items for part in (key, payload)])
        ]
        if ttl:
            commands += [("PEXPIRE", key, max(1, int(ttl * 1000))) for key, _, _ in items]
        done = await self._write("MSET", [key for key, _, _ in items], *commands)
        return done is not _DOWN

    async def add(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        args: tuple[Any, ...] = ("SET", key, payload, "NX")
        if ttl:
            args = (*args, "PX", max(1, int(ttl * 1000)))
        # A tier that is down does not block a lock or a group token: fail open.
        result = await self._write("SET NX", [key], args)
        return result is _DOWN or result is not None

    async def delete(self, key: str) -> bool:
        result = await self._write("DEL", [key], ("DEL", key))
        return result is not _DOWN and bool(result)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self._write("DEL", list(keys), ("DEL", *keys))

    async def clear(self, prefix: str) -> None:
        if not self._up():
            return
        try:
            backend = self.connector.backend()
            await backend.delete_prefix(prefix)
            if self.publish:
                await backend.client.publish(CHANNEL, message(prefix=prefix))
        except BACKEND_ERRORS as exc:
            self._failed(exc, "CLEAR")
            return
        self._ok()

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        if not self._up():
            return delta
        client = self.connector.backend().client
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incrby(key, delta)
                if ttl:
                    # Only a new counter gets the default timeout (PEXPIRE ... NX).
                    pipe.execute_command("PEXPIRE", key, max(1, int(ttl * 1000)), "NX")
                if self.publish:
                    pipe.execute_command("PUBLISH", CHANNEL, message([key]))
                results = await pipe.execute(raise_on_error=True)
        except BACKEND_ERRORS as exc:
            if _not_integer(exc):
                raise TypeError(f"the value under {key!r} is not an integer") from None
            self._failed(exc, "INCRBY")
            return delta
        self._ok()
        total: int = results[0]
        return total

    async def ttl(self, key: str) -> Any:
        if not self._up():
            return MISSING
        try:
            pttl = await self.connector.backend().client.pttl(key)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "PTTL")
            return MISSING
        self._ok()
        if pttl == -2:
            return MISSING
        return None if pttl == -1 else pttl / 1000

    async def expire(self, key: str, ttl: float | None) -> bool:
        command = ("PERSIST", key) if not ttl else ("PEXPIRE", key, max(1, int(ttl * 1000)))
        result = await self._write("EXPIRE", [key], command)
        if result is _DOWN:
            return False
        if not ttl and result == 0:  # PERSIST answers 0 when there was no expiry
            return await self.ttl(key) is not MISSING
        return bool(result)

    async def release(self, key: str, value: Any, payload: bytes) -> None:
        if not self._up():
            return
        try:
            client = self.connector.backend().client
            if await client.eval(_RELEASE, 1, key, payload) and self.publish:
                await client.publish(CHANNEL, message([key]))
        except BACKEND_ERRORS as exc:
            self._failed(exc, "release lock")

    async def ping(self) -> None:
        await self.connector.backend().client.ping()

    async def aclose(self) -> None:
        await self.connector.aclose()


def _ttl(ttl: float | None) -> int | float | None:
    # aiocache sends int TTLs as SETEX (seconds) and floats as PSETEX (milliseconds).
    if ttl is None or float(ttl).is_integer():
        return None if ttl is None else int(ttl)
    return float(ttl)


def _not_integer(exc: BaseException) -> bool:
    return "not an integer" in str(exc)
