"""Waiting for job results on the result backend's pub/sub, without polling.

Celery's Redis backend writes each result under its key and publishes it on a
channel of the same name. A waiter subscribes to that channel, and once Redis has
confirmed the subscription reads the key once, which closes the race with a result
stored before the subscription. One pub/sub connection per event loop and result
Redis carries every wait of that loop: the waits of one loop iteration share one
SUBSCRIBE, finished ones are unsubscribed in batches, and on a plain ``redis://``
or ``unix://`` URL the connection is a lean protocol of our own
(:mod:`zephyr_celery._redis.wire`) rather than redis-py's general client.

A reconnection resubscribes everything still awaited and reads the keys again, so a
result published while the connection was down is not missed. On a ``sentinel://``
result URL each connection goes to the master the Sentinels name at that moment
(:mod:`.master`; the reads use redis-py's ``Sentinel.master_for`` client): after a
fail-over the waiter subscribes on the promoted master and reads again what was
stored there meanwhile. While Redis cannot be
reached the waiter says so (:attr:`ResultWaiter.down`): a wait whose timeout passes
then fails with :class:`Unreachable`, not a timeout, and so does every wait once
Redis has been unreachable for :data:`UNREACHABLE_AFTER` seconds.
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
from redis.exceptions import RedisError

from zephyr_celery._redis import wire as _wire
from zephyr_celery._redis.master import Target, lean_target
from zephyr_core._redis_clients import async_client
from zephyr_core._topology import RedisTopology, parse_redis_url

# Celery's states after which a job's result no longer changes.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

Decode = Callable[[bytes], dict[str, Any]]

#: Channels of finished waits are unsubscribed in batches: at most this many...
UNSUBSCRIBE_BATCH = 1000
#: ...or after this many seconds.
UNSUBSCRIBE_DELAY = 0.05

#: Seconds the result Redis may stay unreachable before every wait fails with
#: :class:`Unreachable` (a restart takes a few; longer is an outage to report).
UNREACHABLE_AFTER = 60.0

# What the connections raise when Redis is gone (or refuses us: a wrong password).
_DOWN = (RedisError, OSError)


class Unreachable(Exception):
    """The result Redis cannot be reached: a wait ends with this (cause attached)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class ResultWaiter:
    """Every result wait of one event loop on one result Redis."""

    def __init__(self, url: str, decode: Decode, topology: RedisTopology | None = None) -> None:
        self.url = url
        self.decode = decode
        self._loop = asyncio.get_running_loop()
        topology = topology or _topology(url)
        self._client = _client(url, topology)  # reads the stored results
        # Plain and Sentinel URLs get the lean pub/sub connection; others redis-py's.
        self._target: Target | None = lean_target(topology)
        self._waiting: dict[bytes, list[asyncio.Future[dict[str, Any]]]] = {}
        # Channels to (un)subscribe on the current connection, sent in batches.
        self._subscribe: set[bytes] = set()
        self._unsubscribe: set[bytes] = set()
        self._send: Callable[[str, list[bytes]], None] | None = None
        self._flush_soon = False
        self._unsubscribe_timer: asyncio.TimerHandle | None = None
        self._check: set[bytes] = set()
        self._check_wake = asyncio.Event()
        self._backoff = 0.05
        #: Since when (loop time) Redis cannot be reached, and why; ``None`` when up.
        self.down_since: float | None = None
        self.down_cause: BaseException | None = None
        # redis-py's pub/sub needs a subscription to read from while nothing waits.
        self._own = f"zephyr:waiter:{uuid.uuid4().hex}".encode()
        self._task = self._loop.create_task(self._run())
        self._checker = self._loop.create_task(self._check_loop())

    async def wait(self, key: bytes, timeout: float | None) -> dict[str, Any]:
        """The stored meta of ``key`` once its job is done.

        Raises:
            TimeoutError: ``timeout`` passed (check :attr:`down` for why).
            Unreachable: Redis has been unreachable for ``UNREACHABLE_AFTER`` seconds.
        """
        if self.down_since is not None and (
            self._loop.time() - self.down_since >= UNREACHABLE_AFTER
        ):
            raise Unreachable(self.down_cause or RedisConnectionError("Redis is down"))
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        futures = self._waiting.get(key)
        if futures is None:
            self._waiting[key] = [future]
            self._unsubscribe.discard(key)
            self._subscribe.add(key)
            if not self._flush_soon:  # one SUBSCRIBE for all waits of this iteration
                self._flush_soon = True
                self._loop.call_soon(self._flush)
        else:
            futures.append(future)
        timer = None if timeout is None else self._loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if future.cancelled() or not future.done() or future.exception() is not None:
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
            self._unsubscribe_later(key)

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
        self._unsubscribe_later(key)

    def _on_push(self, kind: bytes, channel: bytes, data: Any) -> None:
        if kind == b"message":
            self._deliver(channel, data)
        elif kind == b"subscribe" and channel in self._waiting:
            # Subscribed: a result stored before this moment is read instead.
            self._check.add(channel)
            self._check_wake.set()

    # -- (un)subscribing --------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_soon = False
        if self._send is not None and self._subscribe:
            channels = list(self._subscribe)
            self._subscribe.clear()
            self._send("SUBSCRIBE", channels)

    def _unsubscribe_later(self, key: bytes) -> None:
        # Nothing is lost by unsubscribing late (a message nobody waits for is
        # dropped), so channels are let go in batches, not one command per result.
        unsubscribe = self._unsubscribe
        unsubscribe.add(key)
        if len(unsubscribe) >= UNSUBSCRIBE_BATCH:
            self._flush_unsubscribe()
        elif self._unsubscribe_timer is None:
            self._unsubscribe_timer = self._loop.call_later(
                UNSUBSCRIBE_DELAY, self._flush_unsubscribe
            )

    def _flush_unsubscribe(self) -> None:
        if self._unsubscribe_timer is not None:
            self._unsubscribe_timer.cancel()
            self._unsubscribe_timer = None
        channels = [c for c in self._unsubscribe if c not in self._waiting]
        self._unsubscribe.clear()
        if self._send is not None and channels:
            self._send("UNSUBSCRIBE", channels)

    # -- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                try:
                    if self._target is not None:
                        await self._session(await self._target.params())
                    else:
                        await self._session_redis_py()
                except _DOWN as exc:
                    # Whatever was subscribed must be again, and read again.
                    self._subscribe |= set(self._waiting)
                    self._unsubscribe.clear()
                    self._went_down(exc)
                    await asyncio.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, 2.0)
        finally:
            self._send = None
            if self._unsubscribe_timer is not None:
                self._unsubscribe_timer.cancel()
            self._checker.cancel()
            await _quietly(self._checker)
            await _quietly(self._client.aclose())

    def _went_down(self, exc: BaseException) -> None:
        now = self._loop.time()
        if self.down_since is None:
            self.down_since = now
        self.down_cause = exc
        if now - self.down_since >= UNREACHABLE_AFTER:
            self.fail_all()

    def fail_all(self) -> None:
        """End every wait with :class:`Unreachable` (Redis has been gone too long)."""
        cause = self.down_cause or RedisConnectionError("Redis cannot be reached")
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(Unreachable(cause))
        self._subscribe.clear()

    @property
    def down(self) -> bool:
        """Whether the waiter has no connection to Redis now (it keeps retrying)."""
        return self.down_since is not None

    def _start_sending(self, send: Callable[[str, list[bytes]], None]) -> None:
        """A connection is up: send through it, first what is waited for now."""
        self.down_since = self.down_cause = None
        self._backoff = 0.05
        self._unsubscribe.clear()  # a new connection has no old subscriptions
        self._send = send
        self._flush()

    async def _session(self, params: dict[str, Any]) -> None:
        loop = self._loop
        wire: _wire.PubSub = await _wire.connect(params, lambda: _wire.PubSub(loop, self._on_push))
        try:
            self._start_sending(
                lambda command, channels: wire.send(_wire.pack([(command, tuple(channels))]))
            )
            await wire.lost  # raises once the connection is gone
        finally:
            self._send = None
            wire.close()

    async def _session_redis_py(self) -> None:
        pubsub: Any = self._client.pubsub()
        commands: list[tuple[str, list[bytes]]] = []
        wake = asyncio.Event()

        def send(command: str, channels: list[bytes]) -> None:
            commands.append((command, channels))
            wake.set()

        async def sender() -> None:
            while True:
                await wake.wait()
                wake.clear()
                while commands:
                    command, channels = commands.pop(0)
                    if command == "SUBSCRIBE":
                        await pubsub.subscribe(*channels)
                    else:
                        await pubsub.unsubscribe(*channels)

        try:
            await pubsub.subscribe(self._own)
            self._start_sending(send)
            sending = asyncio.create_task(sender())
            try:
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        kind = str(message["type"]).encode()
                        self._on_push(kind, cast(bytes, message["channel"]), message["data"])
            finally:
                sending.cancel()
                await _quietly(sending)
        finally:
            self._send = None
            await _quietly(pubsub.aclose())

    async def _check_loop(self) -> None:
        backoff = 0.05
        while True:
            await self._check_wake.wait()
            self._check_wake.clear()
            keys = [k for k in self._check if k in self._waiting]
            self._check = set()
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                try:
                    values = await self._client.mget(chunk)
                except _DOWN:
                    # Subscribed, but the read failed (Redis still loading its data
                    # after a restart answers LOADING, say): read them again soon. A
                    # result stored before the subscription would be missed otherwise.
                    self._check.update(keys[start:])
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    self._check_wake.set()
                    break
                backoff = 0.05
                for key, raw in zip(chunk, values, strict=True):
                    self._deliver(key, cast(bytes | None, raw))

    def close(self) -> None:
        """Stop waiting; the connections close as the task ends."""
        self._task.cancel()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


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


def _topology(url: str) -> RedisTopology | None:
    try:
        return parse_redis_url(url)
    except ValueError:  # a URL only redis-py reads (checked by Settings already)
        return None


def _client(url: str, topology: RedisTopology | None) -> aioredis.Redis:
    """A redis-py client for reads: on Sentinel, one that follows the master."""
    if topology is not None and topology.kind == "sentinel":
        return cast(aioredis.Redis, async_client(topology))
    return aioredis.Redis.from_url(url)


def waiter_for(url: str, decode: Decode, topology: RedisTopology | None = None) -> ResultWaiter:
    """The waiter of the running loop for the result Redis at ``url``.

    ``topology``: what ``url`` means with the app's settings (a Sentinel URL whose
    master name is in REDIS_SENTINEL_MASTER); parsed from ``url`` alone when omitted.
    """
    loop = asyncio.get_running_loop()
    by_url = _waiters.get(loop)
    if by_url is None:
        by_url = _waiters[loop] = {}
    waiter = by_url.get(url)
    if waiter is None or waiter._task.done():
        waiter = by_url[url] = ResultWaiter(url, decode, topology)
    return waiter


async def read(url: str, key: bytes, topology: RedisTopology | None = None) -> bytes | None:
    """The value stored under ``key`` now (for status checks)."""
    loop = asyncio.get_running_loop()
    by_url = _waiters.get(loop) or {}
    waiter = by_url.get(url)
    if waiter is not None and not waiter._task.done():
        return cast(bytes | None, await waiter._client.get(key))
    client = _client(url, topology or _topology(url))
    try:
        return cast(bytes | None, await client.get(key))
    finally:
        await client.aclose()
