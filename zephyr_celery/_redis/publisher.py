"""Publishing to a Redis broker from the event loop, in kombu's exact format.

A job message is two Redis commands: ``LPUSH`` of kombu's envelope onto the queue's
list and ``PUBLISH`` of Celery's ``task-sent`` event. They are made one of two ways:

- rendered from a per-route template cut from Celery's own output and checked
  against it (:mod:`zephyr_celery._redis.templates`), when the route allows; or
- by Celery's ``send_task_message`` as usual (routing, the message, the event),
  through a kombu producer of the real Redis transport, with only the last step
  changed: kombu's Redis channel hands its final commands to a publish batch
  (``_publish_batch``, the hook ``Producer.batch()`` uses) which records them
  instead of sending them.

Either way the commands go out on the publisher's own connection from the event
loop: the loop never blocks, a caller resumes once Redis has replied to its
commands, and the commands of every job enqueued in the same loop iteration share
one write. Workers consume the messages unchanged.

Used when the broker is a plain ``redis://`` URL (an address, a database and
credentials) or a ``sentinel://`` one (no TLS), without a global key prefix (the
commands would need it); otherwise the publisher thread does it.

On Sentinel each new connection goes to the master the Sentinels name at that
moment (:mod:`.master`). A lost connection, or a ``-READONLY`` reply (the server
was demoted to replica by a fail-over), drops the connection and the commands are
sent again on a new one, under Celery's publish retry policy: a ``delay()`` either
gets its message onto the current master or raises. A message the old master took
just before it died may be lost with it (Redis replicates asynchronously) unless
JOB_ENQUEUE_REPLICAS asks for ``WAIT`` (:mod:`.replicas`): then a ``WAIT N timeout``
follows the messages on their connection (one for those sent in the same loop
iteration), and a ``delay()`` whose message fewer than N replicas confirmed raises.

Private internals used:

- ``kombu.Producer._batch_local``
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from zephyr_celery._broker import SENTINEL_ALIAS
from zephyr_celery._redis import replicas as _replicas
from zephyr_celery._redis import wire as _wire
from zephyr_celery._redis.master import Target, app_topology, lean_target
from zephyr_celery._redis.templates import Sampler, Template, make_template
from zephyr_celery._redis.wire import pack

# Connection losses a send retries under Celery's publish retry policy.
_RETRIED: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
# On Sentinel, a -READONLY reply too: the server was demoted, the master is elsewhere.
_RETRIED_ON_SENTINEL = (*_RETRIED, ReadOnlyError)


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


def capture(app: Any, producer: Any, name: str, message: Any, options: dict[str, Any]) -> Any:
    """Run Celery's send_task_message on a Redis ``producer``; return the commands it
    produced, unsent (kombu's ``(name, args)`` pairs)."""
    collector = _Collector()
    local = producer._batch_local
    local.current = _CaptureState(collector)
    try:
        app.amqp.send_task_message(producer, name, message, declare=[], retry=False, **options)
    finally:
        del local.current
    return collector.commands


class RedisPublisher:
    """Sends one app's job messages from one event loop, pipelining what queues up."""

    def __init__(self, app: Any, producer: Any) -> None:
        self.app = app
        self.producer = producer
        self.loop = asyncio.get_running_loop()
        target = broker_target(app)
        assert target is not None  # eligible() checked
        self._target = target
        self._retried: tuple[type[Exception], ...] = (
            _RETRIED_ON_SENTINEL if target.follows_master else _RETRIED
        )
        # JOB_ENQUEUE_REPLICAS: a WAIT after the messages, on their connection.
        self._replicas = _replicas.for_app(app)
        self._wait = _replicas.wait_command(self._replicas)
        self._group: tuple[_wire.Replies, asyncio.Future[int]] | None = None
        # The broker's socket_timeout (30 s from our settings), as kombu's would.
        timeout = (app.conf.broker_transport_options or {}).get("socket_timeout")
        self._reply_timeout = float(timeout or _wire.REPLY_TIMEOUT)
        if self._replicas.count:  # a WAIT must not look like a dead peer
            self._reply_timeout += self._replicas.timeout
        self._wire: _wire.Replies | None = None
        self._connecting: asyncio.Future[_wire.Replies] | None = None
        self._templates: dict[Hashable, Template | None] = {}
        self._forks = _forks
        self._closer = asyncio.get_running_loop().create_task(self._close_with_loop())
        policy = dict(app.conf.task_publish_retry_policy or {})
        self._retry_policy = (
            int(policy.get("max_retries") or 0) if app.conf.task_publish_retry else 0,
            float(policy.get("interval_start", 0) or 0),
            float(policy.get("interval_step", 0.2) or 0),
            float(policy.get("interval_max", 1) or 0),
        )
        self._repr_limits = (
            app.amqp.argsrepr_maxsize,
            app.amqp.kwargsrepr_maxsize,
            app.conf.task_repr_maxlevels,
        )

    # -- making messages ----------------------------------------------------------

    def commands_for(self, name: str, message: Any, options: dict[str, Any]) -> list[Any]:
        """Run Celery's send_task_message and return the Redis commands it produced."""
        commands: list[Any] = capture(self.app, self.producer, name, message, options)
        return commands

    def template(self, key: Hashable, sample: Sampler) -> Template | None:
        """The template of the route ``key`` (made on first use; ``None``: use Celery).

        ``sample`` builds and captures a message of that route through Celery.
        """
        if self._forks != _forks:  # a forked child: origin, pid and hostname changed
            self._templates.clear()
            self._forks = _forks
        try:
            return self._templates[key]
        except KeyError:
            pass
        args_max, kwargs_max, maxlevels = self._repr_limits
        found = None
        if args_max == kwargs_max:  # one limit for both (Celery's default)
            found = make_template(sample, self.app.thread_oid, args_max, maxlevels)
        self._templates[key] = found
        return found

    # -- sending ------------------------------------------------------------------

    async def send(self, name: str, message: Any, options: dict[str, Any]) -> None:
        """Send a message Celery built (its commands captured from send_task_message)."""
        commands = self.commands_for(name, message, options)
        await self.send_packed(pack(commands), len(commands))

    async def send_packed(self, packed: bytes, replies: int) -> None:
        """Send packed commands and wait for their replies, retrying on a lost
        connection as Celery's publish retry policy says (a retried message can be
        delivered twice: at-least-once).

        With JOB_ENQUEUE_REPLICAS the messages sent on a connection in one loop
        iteration share one WAIT, sent after them (it counts the replicas that have
        everything the connection wrote before it); a resent message gets its own.

        Raises:
            ReplicaShortfall: JOB_ENQUEUE_REPLICAS: the message is on the master but
                fewer replicas than asked confirmed it in time.
        """
        wire = self._wire
        if self._wait and (wire is None or wire.closed):
            # Connect first, so that a burst of first messages shares WAITs too
            # (each with its own would make Redis run them one after another).
            with contextlib.suppress(*self._retried):
                wire = await self._connection()
        if wire is not None and not wire.closed:  # the usual case, kept short
            try:
                if not self._wait:
                    await wire.submit(packed, replies)
                    return
                sent = wire.submit(packed, replies)
                confirming = self._confirmation(wire)
                await sent
                self._replicas.check(await confirming)
                return
            except self._retried as exc:
                if not self._retry_policy[0]:
                    raise
                self._drop(wire, exc)
                failed = 1
        else:
            failed = 0
        if self._wait:  # sent on its own: its own WAIT right behind it
            packed += self._wait
            replies += 1
        retries, interval, step, ceiling = self._retry_policy
        while True:
            if failed:
                await asyncio.sleep(interval)
                interval = min(interval + step, ceiling)
            try:
                wire = await self._connection()
                confirmed = await wire.submit(packed, replies, last=bool(self._wait))
            except self._retried as exc:
                failed += 1
                if failed > retries:
                    raise
                self._drop(wire, exc)
                continue
            if self._wait:
                self._replicas.check(confirmed)
            return

    def _confirmation(self, wire: _wire.Replies) -> asyncio.Future[int]:
        """WAIT's reply for what is sent on ``wire`` in this loop iteration: one WAIT,
        sent once the iteration's messages are (so it follows every one of them)."""
        group = self._group
        if group is None or group[0] is not wire:
            future: asyncio.Future[int] = self.loop.create_future()
            future.add_done_callback(_retrieved)  # members that failed never await it
            group = self._group = (wire, future)
            self.loop.call_soon(self._send_wait, group)
        return group[1]

    def _send_wait(self, group: tuple[_wire.Replies, asyncio.Future[int]]) -> None:
        if self._group is group:
            self._group = None  # later messages need a WAIT after them: a new group
        wire, future = group
        wire.submit(self._wait, 1, last=True).add_done_callback(
            lambda waited: _settle(future, waited)
        )

    def _drop(self, wire: _wire.Replies | None, exc: BaseException) -> None:
        """After ``exc``: a READONLY reply means the server is a replica now; close
        the connection so the next one goes to the master Sentinel names."""
        if wire is not None and isinstance(exc, ReadOnlyError) and not wire.closed:
            wire.close()

    async def _connection(self) -> _wire.Replies:
        wire = self._wire
        if wire is not None and not wire.closed:
            return wire
        connecting = self._connecting
        if connecting is None or connecting.done():
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connected)
        return await asyncio.shield(connecting)

    async def _connect(self) -> _wire.Replies:
        # On Sentinel, ask for the master now: after a fail-over it is another server.
        params = await self._target.params()
        loop = asyncio.get_running_loop()
        wire: _wire.Replies = await _wire.connect(
            params, lambda: _wire.Replies(loop, self._reply_timeout)
        )
        return wire

    def _connected(self, connecting: asyncio.Future[_wire.Replies]) -> None:
        if not connecting.cancelled() and connecting.exception() is None:
            self._wire = connecting.result()

    async def _close_with_loop(self) -> None:
        # Lives as long as the loop: cancelled at its shutdown, it closes the connection.
        try:
            await asyncio.Event().wait()
        finally:
            if self._wire is not None:
                self._wire.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # marks it retrieved: no "never retrieved" log


def _settle(future: asyncio.Future[Any], source: asyncio.Future[Any]) -> None:
    """Give ``future`` the outcome of ``source``."""
    if future.done():
        return
    if source.cancelled():
        future.cancel()
    elif (error := source.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(source.result())


_eligible: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def eligible(app: Any) -> bool:
    """Whether ``app``'s broker can take the asyncio path (decided once per app)."""
    last = _last()
    if last is not None and last.app is app:  # it has a publisher: it is
        return True
    found = _eligible.get(app)
    if found is None:
        found = _eligible[app] = _check_eligible(app)
    return found


def _check_eligible(app: Any) -> bool:
    options = app.conf.broker_transport_options or {}
    return (
        not options.get("global_keyprefix")
        and not app.conf.broker_use_ssl
        and broker_target(app) is not None
    )


def broker_target(app: Any) -> Target | None:
    """Where the fast path sends ``app``'s messages: a ``redis://`` server or the
    master of a ``sentinel://`` URL; ``None`` when it cannot (TLS, a socket, options)."""
    url = str(app.conf.broker_url or "")
    # Our settings hand kombu the Sentinels as zephyr-sentinel:// URLs (the scheme
    # picks our transport; see zephyr_celery._broker): the same URL list otherwise.
    url = url.replace(f"{SENTINEL_ALIAS}://", "sentinel://")
    if not url.startswith(("redis://", "sentinel://")):
        return None
    return lean_target(app_topology(app, url, app.conf.broker_transport_options))


_lock = threading.Lock()
_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, RedisPublisher]] = (
    weakref.WeakKeyDictionary()
)
_producers: dict[int, tuple[weakref.ref[Any], Any]] = {}


def _make_producer(app: Any) -> Any:
    # Connecting the channel does I/O (it checks the server): done in a thread, once.
    producer = app.amqp.Producer(app.connection_for_write(), auto_declare=False)
    _ = producer.channel
    return producer


# Forks of this process so far (templates hold the pid and the node name).
_forks = 0


def _forked() -> None:
    global _forks, _last
    _forks += 1
    _last = _none


os.register_at_fork(after_in_child=_forked)


# The publisher found last, with its loop: most calls ask for the same one again.
# (Weakly: a publisher lives as long as its loop, and keeps its app alive.)
def _none() -> RedisPublisher | None:
    return None


_last: Callable[[], RedisPublisher | None] = _none


def current(app: Any) -> RedisPublisher | None:
    """The publisher :func:`publisher_for` returned last, if it is the running loop's
    for ``app`` (the usual case, found without a coroutine)."""
    last = _last()
    if last is not None and last.app is app and last.loop is asyncio.get_running_loop():
        return last
    return None


async def publisher_for(app: Any) -> RedisPublisher:
    """The running loop's publisher for ``app``."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last()
    if last is not None and last.loop is loop and last.app is app:
        return last
    by_app = _publishers.get(loop)
    if by_app is None:
        by_app = _publishers[loop] = {}
    publisher = by_app.get(id(app))
    if publisher is None or publisher.app is not app:
        # The first jobs of a loop may be sent all at once: one of them makes the
        # publisher (a producer connects in a thread), the others wait for it.
        making = _making.get((loop, id(app)))
        if making is None or making.done():
            making = _making[(loop, id(app))] = loop.create_task(_make_publisher(app, by_app))
            making.add_done_callback(lambda _: _making.pop((loop, id(app)), None))
        publisher = await asyncio.shield(making)
    _last = weakref.ref(publisher)
    return publisher


_making: dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Task[RedisPublisher]] = {}


async def _make_publisher(app: Any, by_app: dict[int, RedisPublisher]) -> RedisPublisher:
    found = _producers.get(id(app))
    # (The id of an app gone may be another app's now: the producer must be its own.)
    producer = found[1] if found is not None and found[0]() is app else None
    if producer is None or producer.connection is None:
        producer = await asyncio.to_thread(_make_producer, app)
        with _lock:
            _producers[id(app)] = (weakref.ref(app), producer)
    publisher = by_app[id(app)] = RedisPublisher(app, producer)
    return publisher
