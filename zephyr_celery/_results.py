"""Waiting for job results on the result backend's pub/sub, without polling.

Celery's Redis backend writes each result under its key and publishes it on a
channel of the same name. A waiter subscribes to that channel, and once Redis has
confirmed the subscription reads the key once, which closes the race with a result
stored before the subscription. One pub/sub connection per event loop and result
Redis carries every wait of that loop; subscriptions are sent in batches.

A reconnection resubscribes everything still awaited and reads the keys again, so a
result published while the connection was down is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Celery's states after which a job's result no longer changes.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

Decode = Callable[[bytes], dict[str, Any]]


class ResultWaiter:
    """Every result wait of one event loop on one result Redis."""

    def __init__(self, url: str, decode: Decode) -> None:
        self.url = url
        self.decode = decode
        self._client = aioredis.Redis.from_url(url)
        self._waiting: dict[bytes, list[asyncio.Future[dict[str, Any]]]] = {}
        self._subscribe: set[bytes] = set()
        self._unsubscribe: set[bytes] = set()
        self._check: set[bytes] = set()
        self._wake = asyncio.Event()
        self._check_wake = asyncio.Event()
        # A channel of our own keeps the connection subscribed while nothing waits.
        self._own = f"zephyr:waiter:{uuid.uuid4().hex}".encode()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._checker = asyncio.get_running_loop().create_task(self._check_loop())

    async def wait(self, key: bytes, timeout: float | None) -> dict[str, Any]:
        """The stored meta of ``key`` once its job is done (raises TimeoutError)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        futures = self._waiting.get(key)
        if futures is None:
            self._waiting[key] = [future]
            self._unsubscribe.discard(key)
            self._subscribe.add(key)
            self._wake.set()
        else:
            futures.append(future)
        try:
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        finally:
            if not future.done() or future.cancelled():
                self._forget(key, future)

    def _forget(self, key: bytes, future: asyncio.Future[dict[str, Any]]) -> None:
        futures = self._waiting.get(key)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(future)
        if not futures:
            del self._waiting[key]
            self._subscribe.discard(key)
            self._unsubscribe.add(key)
            self._wake.set()

    def _deliver(self, key: bytes, raw: bytes | None) -> None:
        if raw is None or key not in self._waiting:
            return
        try:
            meta = self.decode(raw)
        except Exception as exc:  # an unreadable result still ends the wait
            meta = {"status": "FAILURE", "result": _undecodable(exc), "traceback": None}
        if meta.get("status") not in READY_STATES:
            return  # RETRY, STARTED: the job is not finished yet
        for future in self._waiting.pop(key):
            if not future.done():
                future.set_result(meta)
        self._unsubscribe.add(key)
        self._wake.set()

    async def _run(self) -> None:
        backoff = 0.05
        try:
            while True:
                try:
                    await self._session()
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    # Whatever was subscribed must be again, and read again.
                    self._subscribe |= set(self._waiting)
                    self._unsubscribe.clear()
                    self._wake.set()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                else:
                    backoff = 0.05
        finally:
            self._checker.cancel()
            await _quietly(self._checker)
            await _quietly(self._client.aclose())

    async def _session(self) -> None:
        pubsub: Any = self._client.pubsub()
        try:
            await pubsub.subscribe(self._own)
            sender = asyncio.create_task(self._send_subscriptions(pubsub))
            try:
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    kind, channel = message["type"], cast(bytes, message["channel"])
                    if kind == "message":
                        self._deliver(channel, cast(bytes, message["data"]))
                    elif kind == "subscribe" and channel in self._waiting:
                        self._check.add(channel)
                        self._check_wake.set()
            finally:
                sender.cancel()
                await _quietly(sender)
        finally:
            await _quietly(pubsub.aclose())

    async def _send_subscriptions(self, pubsub: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._subscribe:
                channels, self._subscribe = list(self._subscribe), set()
                await pubsub.subscribe(*channels)
            if self._unsubscribe:
                channels = [c for c in self._unsubscribe if c not in self._waiting]
                self._unsubscribe = set()
                if channels:
                    await pubsub.unsubscribe(*channels)

    async def _check_loop(self) -> None:
        while True:
            await self._check_wake.wait()
            self._check_wake.clear()
            keys = [k for k in self._check if k in self._waiting]
            self._check = set()
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                try:
                    values = await self._client.mget(chunk)
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    continue  # the reconnection reads them again
                for key, raw in zip(chunk, values, strict=True):
                    self._deliver(key, cast(bytes | None, raw))

    def close(self) -> None:
        """Stop waiting; the connections close as the task ends."""
        self._task.cancel()


async def _quietly(awaitable: Any) -> None:
    """Await a cleanup step, bounded: closing must not hang the loop's shutdown."""
    with contextlib.suppress(BaseException):
        async with asyncio.timeout(2):
            await awaitable


def _undecodable(exc: Exception) -> dict[str, Any]:
    return {"exc_type": type(exc).__name__, "exc_message": [f"unreadable result: {exc}"]}


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ResultWaiter]] = (
    weakref.WeakKeyDictionary()
)


def waiter_for(url: str, decode: Decode) -> ResultWaiter:
    """The waiter of the running loop for the result Redis at ``url``."""
    loop = asyncio.get_running_loop()
    by_url = _waiters.get(loop)
    if by_url is None:
        by_url = _waiters[loop] = {}
    waiter = by_url.get(url)
    if waiter is None or waiter._task.done():
        waiter = by_url[url] = ResultWaiter(url, decode)
    return waiter


async def read(url: str, key: bytes) -> bytes | None:
    """The value stored under ``key`` now (for status checks)."""
    loop = asyncio.get_running_loop()
    by_url = _waiters.get(loop) or {}
    waiter = by_url.get(url)
    if waiter is not None and not waiter._task.done():
        return cast(bytes | None, await waiter._client.get(key))
    client = aioredis.Redis.from_url(url)
    try:
        return cast(bytes | None, await client.get(key))
    finally:
        await client.aclose()
