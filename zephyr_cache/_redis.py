"""The Redis tier: a store over aiocache's ``RedisCache``, guarded for fail-open.

Connections and pools are in ``_redis_pool``; what a failure costs is in ``_failopen``.
Here: which commands each operation sends, and what it answers when they fail.

- Writes announced on the invalidation channel (a Redis cache under a local tier) run
  as one cached Lua script (``EVALSHA``, falling back to ``EVAL`` after a script
  flush) that ``PUBLISH``-es (``SPUBLISH`` on Cluster) and writes: one command, atomic.
- ``set_many`` is one script whatever the timeout (``SET ... PX`` per key): one round
  trip, all or nothing.
- ``incr`` does not fail open: it raises :class:`CacheError` while Redis is down, when
  the call fails and on overflow past a signed 64-bit integer. Only a counter that
  ``incr`` creates gets the default timeout (``SET key 0 NX PX`` before ``INCRBY``).
- A ``get`` on a key holding another Redis type (``WRONGTYPE``) is a miss with a
  warning, never an outage.
- Deletes and clears that could not be confirmed are replayed (``_failopen.Unconfirmed``)
  before the next call once Redis answers; when an outage ends, or the Sentinels name a
  new master (a fail-over), this process's local tiers over the same server are flushed.
- A ``set`` that timed out returns False, but Redis may still apply it when it
  answers (its announcement then drops local copies elsewhere, as for any write).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from zephyr_cache._exceptions import CacheError
from zephyr_cache._failopen import BACKEND_ERRORS, Guard
from zephyr_cache._invalidation import CHANNEL, flush_local_tiers, message
from zephyr_cache._memory import MISSING
from zephyr_cache._redis_pool import LARGE, RedisBackend, RedisConnector
from zephyr_cache._serializers import BadSignature, Serializer
from zephyr_cache._stats import TierStats
from zephyr_cache._stores import Store

__all__ = ["RedisBackend", "RedisConnector", "RedisStore"]

logger = logging.getLogger("zephyr_cache")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Script:
    """A Lua script run by its SHA1 (EVALSHA), sent whole (EVAL) when Redis lacks it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)


# Each script announces first, then writes: atomic either way, and on Cluster a script
# whose SPUBLISH is refused (another shard's channel) has written nothing.

# KEYS: keys; ARGV: px ('' = no expiry), channel, message ('' = none), payloads...
_SET = """
if ARGV[3] ~= '' then redis.call('{publish}', ARGV[2], ARGV[3]) end
local px = ARGV[1]
for i, key in ipairs(KEYS) do
  if px == '' then redis.call('SET', key, ARGV[i + 3])
  else redis.call('SET', key, ARGV[i + 3], 'PX', px) end
end
return 1
"""

# KEYS: keys; ARGV: channel, message ('' = none). Returns how many existed.
_DELETE = """
if ARGV[2] ~= '' then redis.call('{publish}', ARGV[1], ARGV[2]) end
local n = 0
for _, key in ipairs(KEYS) do n = n + redis.call('DEL', key) end
return n
"""

# KEYS: counter; ARGV: delta, px of a new counter ('' = none), channel, message.
# The total is read back as text: Lua numbers are doubles (exact only to 2**53).
_INCR = """
if ARGV[4] ~= '' then redis.call('{publish}', ARGV[3], ARGV[4]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], '0', 'NX', 'PX', ARGV[2]) end
redis.call('INCRBY', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
"""

# KEYS: the key; ARGV: channel, message, then one command naming KEYS[1] (on Cluster,
# where a MULTI with a PUBLISH cannot be routed to the key's shard).
_CALL = """
redis.call('{publish}', ARGV[1], ARGV[2])
return redis.call(unpack(ARGV, 3))
"""

_RELEASE = _Script(
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class Scripts:
    """The scripts that announce writes, with ``PUBLISH`` or (on Cluster) ``SPUBLISH``."""

    def __init__(self, publish: str) -> None:
        self.set = _Script(_SET.replace("{publish}", publish))
        self.delete = _Script(_DELETE.replace("{publish}", publish))
        self.incr = _Script(_INCR.replace("{publish}", publish))
        self.call = _Script(_CALL.replace("{publish}", publish))


PLAIN = Scripts("PUBLISH")
SHARDED = Scripts("SPUBLISH")


def _px(ttl: float | None) -> int | str:
    return max(1, int(ttl * 1000)) if ttl else ""


class RedisStore(Store):
    """A Redis server through aiocache's ``RedisCache`` (see the module docstring).

    With ``publish`` on, writes are announced on the invalidation channel in the same
    command so local tiers elsewhere drop the keys. ``ClusterStore`` (``_cluster_store``)
    overrides the hooks below for Redis Cluster.
    """

    scripts = PLAIN

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
        if connector.guard is not guard:
            # One guard per Redis cache, whichever stores use it: tie it to the pools.
            connector.guard = guard
            guard.operation_timeout = connector.operation_timeout
            url = connector.url
            guard.on_recovery.append(lambda: flush_local_tiers(url))

    # -- hooks (Redis Cluster overrides them) ------------------------------------

    async def _get_payload(self, key: str) -> bytes | None:
        """GET through aiocache's ``RedisCache``."""
        payload: bytes | None = await self.connector.backend().get(key)
        return payload

    async def _set_payload(self, key: str, payload: bytes, ttl: float | None) -> None:
        """SET (with EX/PX) through aiocache's ``RedisCache``."""
        await self.connector.backend().set(key, payload, ttl=_ttl(ttl))

    async def _channel(self, key: str) -> str:
        """The channel announcing a write of ``key``."""
        return CHANNEL

    async def _by_channel(self, keys: list[str]) -> list[tuple[str, list[str]]]:
        """``keys`` split into batches one script may write, each with its channel."""
        return [(CHANNEL, keys)]

    async def _announce(self, client: Any, note: str, key: str) -> None:
        """Announce ``note`` (a change of ``key``, or a prefix) outside a script."""
        await client.publish(CHANNEL, note)

    async def _delete_keys(self, client: Any, keys: list[str], publish: bool) -> int:
        """Delete ``keys`` (announced when ``publish``); how many existed."""
        deleted = 0
        for channel, batch in await self._by_channel(keys):
            note = message(batch) if publish else ""
            deleted += int(await self.scripts.delete(client, batch, [channel, note]))
        return deleted

    async def _call_announced(self, client: Any, key: str, command: tuple[Any, ...]) -> Any:
        """Run ``command`` on ``key`` and announce the change, atomically."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.execute_command(*command)
            pipe.execute_command("PUBLISH", CHANNEL, message([key]))
            return (await pipe.execute())[0]

    # -- helpers -----------------------------------------------------------------

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

    def _failed(
        self, exc: BaseException, operation: str, key: object, strict: bool = False
    ) -> None:
        self.stats.errors += 1
        self.guard.failed(exc, operation, key, strict=strict)

    async def _usable(self) -> bool:
        """The slow path of a call after a failure: False while bypassed; replays first."""
        guard = self.guard
        if guard.bypassed():
            return False
        if guard.unconfirmed:
            return await self._replay()
        return True

    async def _replay(self) -> bool:
        """Send the deletes and clears Redis did not confirm; True when it answered."""
        guard = self.guard
        keys, prefixes, dropped = guard.unconfirmed.take()
        if dropped:
            logger.warning(
                "%s: %d unconfirmed deletes were forgotten during the outage (more than "
                "the %d kept); those entries may be served until they expire",
                guard.where,
                dropped,
                len(keys),
            )
        try:
            backend = self.connector.backend()
            for publish in (True, False):
                batch = [key for key, announce in keys.items() if announce is publish]
                for start in range(0, len(batch), 1000):
                    await self._delete_keys(backend.client, batch[start : start + 1000], publish)
            for prefix, publish in prefixes.items():
                await backend.delete_prefix(prefix)
                if publish:
                    await self._announce(backend.client, message(prefix=prefix), prefix)
        except BACKEND_ERRORS as exc:
            for key, publish in keys.items():
                guard.remember([key], publish)
            for prefix, publish in prefixes.items():
                guard.remember_prefix(prefix, publish)
            self._failed(exc, "replaying unconfirmed deletes", None)
            return False
        guard.succeeded()
        return True

    async def _run(self, script: _Script, keys: list[str], args: list[Any], size: int) -> Any:
        """Run a script; a large payload gets its own client and a longer time budget."""
        backend = self.connector.backend()
        if size < LARGE:
            return await script(backend.client, keys, args)
        async with asyncio.timeout(backend.budget(size)):
            return await script(backend.bulk, keys, args)

    # -- reads -------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        guard = self.guard
        if guard.troubled and not await self._usable():
            self.stats.misses += 1
            return MISSING
        try:
            payload = await self._get_payload(key)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET", key)
            self.stats.misses += 1
            return MISSING
        if guard.troubled:
            guard.succeeded()
        return self._decode(payload)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        guard = self.guard
        if guard.troubled and not await self._usable():
            self.stats.misses += 1
            return MISSING, None
        try:
            async with self.connector.backend().client.pipeline(transaction=False) as pipe:
                payload, pttl = await pipe.get(key).pttl(key).execute()
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET", key)
            self.stats.misses += 1
            return MISSING, None
        if guard.troubled:
            guard.succeeded()
        return self._decode(payload), (pttl / 1000 if pttl and pttl > 0 else None)

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        guard = self.guard
        if guard.troubled and not await self._usable():
            self.stats.misses += len(keys)
            return [MISSING] * len(keys)
        try:
            payloads = await self.connector.backend().multi_get(list(keys))
        except BACKEND_ERRORS as exc:
            self._failed(exc, "MGET", list(keys))
            self.stats.misses += len(keys)
            return [MISSING] * len(keys)
        if guard.troubled:
            guard.succeeded()
        return [self._decode(p) for p in payloads]

    async def get_many_with_ttl(self, keys: Sequence[str]) -> list[tuple[Any, float | None]]:
        """Values and remaining lifetimes in one round trip (for filling local tiers)."""
        guard = self.guard
        if guard.troubled and not await self._usable():
            self.stats.misses += len(keys)
            return [(MISSING, None)] * len(keys)
        try:
            async with self.connector.backend().client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key).pttl(key)
                replies = await pipe.execute()
        except BACKEND_ERRORS as exc:
            self._failed(exc, "GET", list(keys))
            self.stats.misses += len(keys)
            return [(MISSING, None)] * len(keys)
        if guard.troubled:
            guard.succeeded()
        return [
            (self._decode(payload), pttl / 1000 if pttl and pttl > 0 else None)
            for payload, pttl in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def ttl(self, key: str) -> Any:
        guard = self.guard
        if guard.troubled and not await self._usable():
            return MISSING
        try:
            pttl = await self.connector.backend().client.pttl(key)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "PTTL", key)
            return MISSING
        if guard.troubled:
            guard.succeeded()
        if pttl == -2:
            return MISSING
        return None if pttl == -1 else pttl / 1000

    # -- writes ------------------------------------------------------------------

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        guard = self.guard
        if guard.troubled and not await self._usable():
            return False
        try:
            if not self.publish and len(payload) < LARGE:
                await self._set_payload(key, payload, ttl)
            else:
                note = message([key]) if self.publish else ""
                args = [_px(ttl), await self._channel(key), note, payload]
                await self._run(self.scripts.set, [key], args, len(payload))
        except BACKEND_ERRORS as exc:
            self._failed(exc, "SET", key)
            return False
        if guard.troubled:
            guard.succeeded()
        return True

    async def set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> bool:
        if not items:
            return True
        guard = self.guard
        if guard.troubled and not await self._usable():
            return False
        keys = [key for key, _, _ in items]
        try:
            await self._set_many(items, ttl)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "SET (set_many)", keys)
            return False
        if guard.troubled:
            guard.succeeded()
        return True

    async def _set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> None:
        """One script writing every item (all or nothing)."""
        keys = [key for key, _, _ in items]
        payloads = [payload for _, _, payload in items]
        note = message(keys) if self.publish else ""
        size = sum(map(len, payloads))
        args = [_px(ttl), await self._channel(keys[0]), note, *payloads]
        await self._run(self.scripts.set, keys, args, size)

    async def _write(
        self, operation: str, key: str, command: tuple[Any, ...], strict: bool = False
    ) -> tuple[bool, Any]:
        """Run one command (in a MULTI with its announcement when publishing).

        Returns (done, reply); ``strict`` raises CacheError instead of failing open.
        """
        guard = self.guard
        if guard.troubled and not await self._usable():
            if strict:
                guard.refuse(operation, key)
                raise CacheError(
                    f"{guard.where}: {operation} {key!r} refused: Redis did not answer"
                )
            return False, None
        client = self.connector.backend().client
        try:
            if self.publish:
                reply = await self._call_announced(client, key, command)
            else:
                reply = await client.execute_command(*command)
        except BACKEND_ERRORS as exc:
            self._failed(exc, operation, key, strict)
            return False, None
        if guard.troubled:
            guard.succeeded()
        return True, reply

    async def add(
        self, key: str, value: Any, payload: bytes, ttl: float | None, *, strict: bool = False
    ) -> bool:
        """SET NX. Failing open (``strict`` False) a tier that is down answers True, so
        a lock or a group token never blocks; ``strict`` raises CacheError instead."""
        command: tuple[Any, ...] = ("SET", key, payload, "NX")
        if ttl:
            command = (*command, "PX", _px(ttl))
        done, reply = await self._write("SET NX", key, command, strict)
        return not done or reply is not None

    async def delete(self, key: str) -> bool:
        return bool(await self._delete([key]))

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self._delete(list(keys))

    async def _delete(self, keys: list[str]) -> int:
        guard = self.guard
        if guard.troubled and not await self._usable():
            guard.remember(keys, self.publish)
            return 0
        try:
            if self.publish:
                deleted = await self._delete_keys(self.connector.backend().client, keys, True)
            else:
                deleted = await self.connector.backend().client.delete(*keys)
        except BACKEND_ERRORS as exc:
            # Not confirmed: Redis may or may not have applied it. Replay it later.
            guard.remember(keys, self.publish)
            self._failed(exc, "DEL", keys[0] if len(keys) == 1 else keys)
            return 0
        if guard.troubled:
            guard.succeeded()
        return int(deleted)

    async def clear(self, prefix: str) -> None:
        guard = self.guard
        if guard.troubled and not await self._usable():
            guard.remember_prefix(prefix, self.publish)
            return
        try:
            backend = self.connector.backend()
            await backend.delete_prefix(prefix)
            if self.publish:
                await self._announce(backend.client, message(prefix=prefix), prefix)
        except BACKEND_ERRORS as exc:
            guard.remember_prefix(prefix, self.publish)
            self._failed(exc, "CLEAR", prefix + "*")
            return
        if guard.troubled:
            guard.succeeded()

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        guard = self.guard
        if guard.troubled and not await self._usable():
            guard.refuse("incr", key)
            raise CacheError(f"{guard.where}: incr {key!r} refused: Redis did not answer")
        if not INT64_MIN <= delta <= INT64_MAX:
            raise CacheError(f"{guard.where}: incr {key!r} by {delta}: overflows a 64-bit integer")
        note = message([key]) if self.publish else ""
        try:
            total = await self.scripts.incr(
                self.connector.backend().client,
                [key],
                [delta, _px(ttl), await self._channel(key), note],
            )
        except BACKEND_ERRORS as exc:
            text = str(exc)
            if "not an integer" in text or "WRONGTYPE" in text:
                raise TypeError(f"the value under {key!r} is not an integer") from None
            if "overflow" in text:
                raise CacheError(
                    f"{guard.where}: incr {key!r} by {delta}: overflows a 64-bit integer "
                    "(the counter is unchanged)"
                ) from None
            self._failed(exc, "incr", key, strict=True)
            raise  # unreachable: strict raises CacheError
        if guard.troubled:
            guard.succeeded()
        return int(total)

    async def expire(self, key: str, ttl: float | None) -> bool:
        command = ("PERSIST", key) if not ttl else ("PEXPIRE", key, _px(ttl))
        done, reply = await self._write("EXPIRE", key, command)
        if not done:
            return False
        if not ttl and reply == 0:  # PERSIST answers 0 when there was no expiry
            return await self.ttl(key) is not MISSING
        return bool(reply)

    async def release(self, key: str, value: Any, payload: bytes) -> None:
        guard = self.guard
        if guard.troubled and not await self._usable():
            return
        try:
            client = self.connector.backend().client
            if await _RELEASE(client, [key], [payload]) and self.publish:
                await self._announce(client, message([key]), key)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "release lock", key)
            return
        if guard.troubled:
            guard.succeeded()

    async def ping(self) -> None:
        await self.connector.backend().client.ping()

    async def aclose(self) -> None:
        await self.connector.aclose()


def _ttl(ttl: float | None) -> int | float | None:
    # aiocache sends int TTLs as SETEX (seconds) and floats as PSETEX (milliseconds).
    if ttl is None or float(ttl).is_integer():
        return None if ttl is None else int(ttl)
    return float(ttl)
