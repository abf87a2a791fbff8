"""Publishing to a Redis broker from the event loop, in kombu's exact format.

Celery's ``send_task_message`` runs as usual (routing, the message, the
``task-sent`` event), through a kombu producer of the real Redis transport; only
the last step differs. kombu's Redis channel can hand its final commands
(``LPUSH`` of the message, ``PUBLISH`` of the event) to a publish batch instead of
sending them (``_publish_batch``, the hook ``Producer.batch()`` uses). We collect
them that way, then send them with redis.asyncio: the loop never blocks, and the
commands of every job enqueued in the same loop iteration share one pipelined
round trip. Workers consume the messages unchanged.

Used when the broker is a plain ``redis://`` URL without a global key prefix or
queue expiry (the commands would need them); otherwise the publisher thread does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Collector:
    """Stands in for kombu's PublishBatch: records the commands it is given."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


class _CaptureState:
    """The producer's batch state (``Producer._batch_local.current``) while capturing."""

    def __init__(self, collector: _Collector) -> None:
        self.collector = collector

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return channel.basic_publish(message, _publish_batch=self.collector, **kwargs)


class RedisPublisher:
    """Sends captured commands for one app on one event loop, pipelining what queues up."""

    def __init__(self, app: Any, producer: Any) -> None:
        self.app = app
        self.producer = producer
        self.client = aioredis.Redis.from_url(str(app.conf.broker_url))
        self._pending: list[tuple[list[tuple[str, tuple[Any, ...]]], asyncio.Future[None]]] = []
        self._flushing = False
        self._closer = asyncio.get_running_loop().create_task(self._close_with_loop())
        policy = dict(app.conf.task_publish_retry_policy or {})
        self._retry_policy = (
            int(policy.get("max_retries") or 0) if app.conf.task_publish_retry else 0,
            float(policy.get("interval_start", 0) or 0),
            float(policy.get("interval_step", 0.2) or 0),
            float(policy.get("interval_max", 1) or 0),
        )

    def commands_for(self, name: str, message: Any, options: dict[str, Any]) -> list[Any]:
        """Run Celery's send_task_message and return the Redis commands it produced."""
        collector = _Collector()
        local = self.producer._batch_local
        local.current = _CaptureState(collector)
        try:
            self.app.amqp.send_task_message(
                self.producer, name, message, declare=[], retry=False, **options
            )
        finally:
            del local.current
        return collector.commands

    async def send(self, name: str, message: Any, options: dict[str, Any]) -> None:
        commands = self.commands_for(name, message, options)
        if not self._flushing:
            # Nothing in flight: send straight away. Jobs enqueued meanwhile queue up
            # and go together in the next round trip.
            self._flushing = True
            try:
                await self._execute(commands)
            finally:
                if self._pending:
                    asyncio.get_running_loop().create_task(self._flush())
                else:
                    self._flushing = False
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        await future

    async def _flush(self) -> None:
        self._flushing = True
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._execute([c for commands, _ in batch for c in commands])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = False

    async def _execute(self, commands: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Send the commands in one write and read every reply, retrying on a lost
        connection as Celery's publish retry policy says (a retried batch can
        deliver a message twice: at-least-once)."""
        retries, interval, step, ceiling = self._retry_policy
        attempt = 0
        while True:
            try:
                await self._execute_once(commands)
                return
            except (RedisConnectionError, RedisTimeoutError, OSError):
                attempt += 1
                if attempt > retries:
                    raise
                await asyncio.sleep(interval)
                interval = min(interval + step, ceiling)

    async def _execute_once(self, commands: list[tuple[str, tuple[Any, ...]]]) -> None:
        pool: Any = self.client.connection_pool
        connection = await pool.get_connection()
        try:
            packed = connection.pack_commands([(name.upper(), *args) for name, args in commands])
            await connection.send_packed_command(packed)
            errors = []
            for _ in commands:
                reply = await connection.read_response()
                if isinstance(reply, ResponseError):
                    errors.append(reply)
            if errors:
                raise errors[0]
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def _close_with_loop(self) -> None:
        # Lives as long as the loop: cancelled at its shutdown, it closes the client.
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(2):
                    await self.client.aclose()


_eligible: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def eligible(app: Any) -> bool:
    """Whether ``app``'s broker can take the asyncio path (decided once per app)."""
    found = _eligible.get(app)
    if found is None:
        found = _eligible[app] = _check_eligible(app)
    return found


def _check_eligible(app: Any) -> bool:
    url = str(app.conf.broker_url or "")
    options = app.conf.broker_transport_options or {}
    return (
        url.startswith("redis://")
        and not options.get("global_keyprefix")
        and not app.conf.broker_use_ssl
    )


_lock = threading.Lock()
_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, RedisPublisher]] = (
    weakref.WeakKeyDictionary()
)
_producers: dict[int, Any] = {}


def _make_producer(app: Any) -> Any:
    # Connecting the channel does I/O (it checks the server): done in a thread, once.
    producer = app.amqp.Producer(app.connection_for_write(), auto_declare=False)
    _ = producer.channel
    return producer


async def publisher_for(app: Any) -> RedisPublisher:
    """The running loop's publisher for ``app``."""
    loop = asyncio.get_running_loop()
    by_app = _publishers.get(loop)
    if by_app is None:
        by_app = _publishers[loop] = {}
    publisher = by_app.get(id(app))
    if publisher is None or publisher.app is not app:
        producer = _producers.get(id(app))
        if producer is None or producer.connection is None:
            producer = await asyncio.to_thread(_make_producer, app)
            with _lock:
                _producers[id(app)] = producer
        publisher = by_app[id(app)] = RedisPublisher(app, producer)
    return publisher
