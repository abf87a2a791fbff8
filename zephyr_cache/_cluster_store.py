"""The Redis tier on a Redis Cluster: the Redis store, made slot-aware.

Every operation of :class:`~zephyr_cache._redis.RedisStore` keeps its meaning (fail-open,
replayed deletes, strict ``incr`` and ``add``); what changes is where commands go:

- ``get`` and ``set`` call the cluster client directly (``SET ... PX``), not through
  aiocache's ``RedisCache`` wrapper (the rest already did).
- ``get_many`` is one ``MGET`` per slot, sent as one pipeline per node (redis-py's
  ``mget_nonatomic``); ``get_many_with_ttl`` one pipeline per node.
- ``set_many`` is one script per slot (all or nothing within a slot), sent as one
  pipeline per node: a node that fails drops its slots' items only, and the call
  returns False.
- ``clear()`` scans and unlinks on every master (``_cluster.ClusterBackend``).
- Announcements use ``SPUBLISH`` on the channel of the shard written to, inside the
  write's script (``_cluster`` explains the channels); a ``MULTI`` cannot route a
  ``PUBLISH`` with a key's command, so single-key writes that announce run as a script.
- Group tokens, stampede locks and counters are single keys: their commands route to
  the key's shard like any other.

Private internals used: none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from zephyr_cache._cluster import ClusterBackend
from zephyr_cache._invalidation import message
from zephyr_cache._redis import SHARDED, RedisStore, _px
from zephyr_cache._redis_pool import LARGE

#: What Redis answers a script that publishes on another shard's channel.
NOT_LOCAL = "non local key"


class ClusterStore(RedisStore):
    """A Redis Cluster tier (see the module docstring)."""

    scripts = SHARDED

    def _backend(self) -> ClusterBackend:
        backend = self.connector.backend()
        assert isinstance(backend, ClusterBackend)
        return backend

    # GET and SET go to the cluster client directly: aiocache's wrapper around them
    # (plugins, key building, logging) costs more than a cluster call's own overhead.
    async def _get_payload(self, key: str) -> bytes | None:
        payload: bytes | None = await self.connector.backend().client.get(key)
        return payload

    async def _set_payload(self, key: str, payload: bytes, ttl: float | None) -> None:
        client = self.connector.backend().client
        if not ttl:
            await client.set(key, payload)
        else:
            await client.set(key, payload, px=max(1, int(ttl * 1000)))

    async def _channel(self, key: str) -> str:
        backend = self._backend()
        await backend.ready()
        return backend.shards.channel(key)

    async def _by_channel(self, keys: list[str]) -> list[tuple[str, list[str]]]:
        by_slot: dict[int, list[str]] = {}
        for key in keys:
            by_slot.setdefault(key_slot(key.encode()), []).append(key)
        backend = self._backend()
        await backend.ready()
        return [(backend.shards.channel(batch[0]), batch) for batch in by_slot.values()]

    async def _announce(self, client: Any, note: str, key: str) -> None:
        await client.execute_command("SPUBLISH", await self._channel(key), note)

    async def _call_announced(self, client: Any, key: str, command: tuple[Any, ...]) -> Any:
        args = [await self._channel(key), message([key]), *command]
        return await self.scripts.call(client, [key], args)

    async def _delete_keys(self, client: Any, keys: list[str], publish: bool) -> int:
        if not publish:
            return int(await client.delete(*keys))  # one DEL per slot, a pipeline per node
        counts = await asyncio.gather(
            *(
                self.scripts.delete(client, batch, [channel, message(batch)])
                for channel, batch in await self._by_channel(keys)
            )
        )
        return sum(int(count) for count in counts)

    async def _set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> None:
        payloads = {key: payload for key, _, payload in items}
        size = sum(map(len, payloads.values()))
        backend = self._backend()
        client = backend.client if size < LARGE else backend.bulk
        px = _px(ttl)
        batches = await self._by_channel(list(payloads))

        async def send(script_command: str, script: str) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for channel, batch in batches:
                    note = message(batch) if self.publish else ""
                    args = [px, channel, note, *(payloads[key] for key in batch)]
                    pipe.execute_command(script_command, script, len(batch), *batch, *args)
                await pipe.execute()

        script = self.scripts.set
        async with asyncio.timeout(backend.budget(size) if size >= LARGE else None):
            try:
                await send("EVALSHA", script.sha)
            except NoScriptError:
                await send("EVAL", script.source)

    def _failed(
        self, exc: BaseException, operation: str, key: object, strict: bool = False
    ) -> None:
        if isinstance(exc, ResponseError) and NOT_LOCAL in str(exc):
            self._backend().shards.forget()  # the slot map moved on: read it again
        super()._failed(exc, operation, key, strict)
