"""Cross-process invalidation of local tiers over Redis pub/sub.

Every write a tiered cache makes to Redis is published, in the same command as the
write (a Lua script), on one channel per Redis server; each process subscribes once per
server (on the background runner loop) and drops the named keys from its local tiers,
typically within a millisecond or two. Messages a process sent itself are skipped.

On Sentinel the channel lives on the master the Sentinels name (the subscription is
opened through them, and re-opened on the new master after a fail-over; a replica
also delivers what its master publishes). On Redis Cluster each shard has its own
channel (``_cluster.channel_for_slot``), written with ``SPUBLISH`` in the same script as
the write; each process subscribes to every shard's channel on a plain connection to
its master (``SSUBSCRIBE``) and loses the subscription, flushing its local tiers, when
any master fails: a Cluster fail-over flushes local tiers like an outage does.

When the subscription is lost (Redis down, connection cut, no PONG within
``LOST_AFTER`` seconds) every local tier is flushed and ``healthy`` turns False, so
tiered caches bypass their local tiers until the subscription is back (and flushed once
more: messages may have been missed in between). ``epoch`` increases with every
invalidation, so a reader that fetched from Redis while an invalidation arrived does
not put a value that may be stale into its local tier. When a Redis tier comes back
after an outage, :func:`flush_local_tiers` flushes the local tiers over it as well (the
subscription may have stayed up while the server stopped answering commands).

redis-py opens and subscribes the connection (URL, TLS, auth); then its socket is handed
to :class:`_Receiver`, an ``asyncio.Protocol`` that parses messages with ``hiredis`` in
the socket's read callback: no coroutine per message on a thread that competes with the
app for the GIL (every write this process announces comes back to it too).

Private internals used: redis-py's ``Connection._writer`` (the asyncio ``StreamWriter``
of the subscribed connection, whose transport is given a new protocol), tested with
redis-py 8.1.

Fork safety and cancellation use ``zephyr_core._background`` (``PerProcess``,
``current_pid``, ``cancel_on_loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from zephyr_cache._cluster import cluster_options, masters_with_channels
from zephyr_cache._memory import MemoryBackend
from zephyr_cache._redis_pool import sentinel_manager
from zephyr_cache._runner import runner
from zephyr_core import get_settings, mask_url
from zephyr_core._background import PerProcess, cancel_on_loop, current_pid
from zephyr_core._topology import RedisTopology, on_failover

logger = logging.getLogger("zephyr_cache")

CHANNEL = "zephyr:cache:invalidate"
PING_EVERY = 1.0
LOST_AFTER = 3.0
MAX_BACKOFF = 1.0

_sender: PerProcess[str] = PerProcess(lambda: uuid.uuid4().hex)


def sender_id() -> str:
    """This process's id in messages (new after a fork)."""
    return _sender.get()


# How this process's messages start (``message`` writes the sender first).
_own_prefix: PerProcess[bytes] = PerProcess(lambda: f'{{"s":"{sender_id()}"'.encode())


def message(keys: list[str] | None = None, prefix: str | None = None) -> str:
    """The payload announcing that ``keys`` changed, or everything under ``prefix``."""
    body: dict[str, Any] = {"s": sender_id()}
    if prefix is not None:
        body["p"] = prefix
    else:
        body["k"] = keys or []
    return json.dumps(body, separators=(",", ":"))


class InvalidationChannel:
    """The subscription of this process to one Redis server's invalidation channel."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.healthy = False
        self.epoch = 0
        self.losses = 0  # subscriptions lost so far
        self.locals: list[MemoryBackend] = []
        self.ready = threading.Event()  # set whenever a subscription is confirmed
        self._task: asyncio.Task[None] | None = None
        self._pid = current_pid()
        self._stopping = False
        self._starting = threading.Lock()

    def attach(self, local: MemoryBackend) -> None:
        """Drop keys from ``local`` when other processes change them."""
        if local not in self.locals:
            self.locals.append(local)

    def ensure(self) -> None:
        """Listen again if this process has no listener (e.g. a forked worker)."""
        if self._pid != current_pid():
            # The parent's listener thread did not survive fork: nothing told us about
            # changes since, so forget everything and subscribe on our own.
            self._pid = current_pid()
            self._task = None
            self.healthy = False
            self.ready = threading.Event()
            self._starting = threading.Lock()
            self._flush()
        if self._task is None and not self._stopping:
            self.start()

    def start(self) -> None:
        """Subscribe in the background (idempotent, from any thread)."""
        with self._starting:
            if self._task is None:

                async def spawn() -> None:
                    self._task = asyncio.get_running_loop().create_task(self._listen())

                runner().submit(spawn()).result()

    def stop(self) -> None:
        """Unsubscribe and stop listening; local tiers are bypassed from now on."""
        self._stopping = True
        self._lost()
        cancel_on_loop(self._task)
        self._task = None

    def _flush(self) -> None:
        self.epoch += 1
        for local in self.locals:
            local.flush()

    def _lost(self) -> None:
        was_healthy = self.healthy
        self.healthy = False
        self.ready.clear()
        self._flush()
        if was_healthy:
            self.losses += 1
        if was_healthy and not self._stopping:
            logger.warning(
                "cache invalidation channel on %s lost: local tiers are flushed and "
                "bypassed until it is back",
                mask_url(self.url),
            )

    def _handle(self, data: bytes) -> None:
        if data.startswith(_own_prefix.get()):
            return  # our own announcement, skipped before parsing it
        try:
            body = json.loads(data)
        except ValueError:
            return
        if body.get("s") == sender_id():
            return
        self.epoch += 1
        if "p" in body:
            for local in self.locals:
                local.flush()
            return
        for key in body.get("k", ()):
            for local in self.locals:
                local.remove(key)

    async def _listen(self) -> None:
        backoff = 0.05
        topology = get_settings().redis_topology(self.url)
        while not self._stopping:
            subscribed: list[_Subscribed] = []
            try:
                if topology.kind == "cluster":
                    subscribed = await _subscribe_shards(topology, self._handle)
                else:
                    subscribed = [await _subscribe(topology, self.url, self._handle)]
                self._flush()  # anything cached before now may have missed a message
                self.healthy = True
                self.ready.set()
                backoff = 0.05
                receivers = [s.receiver for s in subscribed]
                pinged = time.monotonic()
                while not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await asyncio.wait(
                                [asyncio.shield(r.closed) for r in receivers],
                                return_when=asyncio.FIRST_COMPLETED,
                            )
                    if any(r.closed.done() for r in receivers):
                        raise ConnectionError("the server closed the subscription")
                    now = time.monotonic()
                    if any(now - r.heard > LOST_AFTER for r in receivers):
                        raise ConnectionError(f"no PONG for {LOST_AFTER}s")
                    if now - pinged >= PING_EVERY:
                        pinged = now
                        for receiver in receivers:
                            receiver.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug(
                    "invalidation listener on %s: %r", mask_url(self.url), exc, exc_info=True
                )
            finally:
                self._lost()
                for subscription in subscribed:
                    await subscription.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


class _Subscribed:
    """One subscribed connection whose socket a :class:`_Receiver` reads."""

    def __init__(self, client: Redis, pubsub: PubSub, receiver: _Receiver, owner: Any) -> None:
        self.client = client
        self.pubsub = pubsub
        self.receiver = receiver
        self.owner = owner  # a Sentinel manager to close as well, or None

    async def aclose(self) -> None:
        """Close everything, even when the listener is cancelled meanwhile (``stop()``
        while it cleans up after a lost subscription): an interrupted close left the
        client's pool, and its sockets, to the garbage collector."""
        closing = asyncio.ensure_future(self._close())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await closing
            raise

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self.client.aclose()
        if self.owner is not None:
            with contextlib.suppress(Exception):
                await self.owner.aclose()


_LISTENER_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": None}


async def _hand_over(
    client: Redis,
    pubsub: PubSub,
    kind: str,
    handle: Callable[[bytes], None],
    owner: Any = None,
) -> _Subscribed:
    """Check the subscription was confirmed, then give its socket to a :class:`_Receiver`."""
    try:
        confirmation = await pubsub.get_message(timeout=2.0)
        if not confirmation or confirmation.get("type") != kind:
            raise ConnectionError(f"no {kind} confirmation")
        connection = pubsub.connection
        assert connection is not None
        # Messages that came with the confirmation, then hand the socket over.
        while await connection.can_read():
            reply = await connection.read_response(push_request=True)
            if reply and reply[0] in _MESSAGES:
                handle(reply[2])
        receiver = _Receiver(handle)
        transport = connection._writer.transport
        transport.set_protocol(receiver)
        receiver.connection_made(transport)  # set_protocol does not call it
    except BaseException:
        await _Subscribed(client, pubsub, None, owner).aclose()  # type: ignore[arg-type]
        raise
    return _Subscribed(client, pubsub, receiver, owner)


async def _subscribe(
    topology: RedisTopology, url: str, handle: Callable[[bytes], None]
) -> _Subscribed:
    """SUBSCRIBE on the server (single) or on the master the Sentinels name."""
    owner: Sentinel | None = None
    if topology.kind == "sentinel":
        assert topology.master_name is not None
        owner = sentinel_manager(topology)
        options: dict[str, Any] = {"db": topology.db, **_LISTENER_OPTIONS}
        if topology.username:
            options["username"] = topology.username
        if topology.password:
            options["password"] = topology.password
        if topology.tls:
            options.update(ssl=True, **topology.ssl_options)
        client = owner.master_for(topology.master_name, retry=Retry(NoBackoff(), 0), **options)
    else:
        client = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **_LISTENER_OPTIONS)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(CHANNEL)
    except BaseException:
        await _Subscribed(client, pubsub, None, owner).aclose()  # type: ignore[arg-type]
        raise
    return await _hand_over(client, pubsub, "subscribe", handle, owner)


async def _subscribe_shards(
    topology: RedisTopology, handle: Callable[[bytes], None]
) -> list[_Subscribed]:
    """SSUBSCRIBE to every shard's channel, on a plain connection to its master.

    redis-py's async ``ClusterPubSub`` can follow sharded channels, but reads them
    through ``get_sharded_message`` polling each node in turn; a plain connection per
    master lets the socket's own callback parse messages as on a single server, and a
    lost master (killed, or its slots moved: Redis then sends ``sunsubscribe``) ends the
    subscription, which is re-resolved from the slot map.
    """
    targets = await masters_with_channels(
        topology, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    options = {k: v for k, v in cluster_options(topology).items() if k != "startup_nodes"}
    subscribed: list[_Subscribed] = []
    try:
        for host, port, channel in targets:
            client = Redis(
                host=host, port=port, retry=Retry(NoBackoff(), 0), **options, **_LISTENER_OPTIONS
            )
            pubsub = client.pubsub()
            try:
                await pubsub.ssubscribe(channel)
            except BaseException:
                await _Subscribed(client, pubsub, None, None).aclose()  # type: ignore[arg-type]
                raise
            subscribed.append(await _hand_over(client, pubsub, "ssubscribe", handle))
    except BaseException:
        for subscription in subscribed:
            await subscription.aclose()
        raise
    return subscribed


#: Replies carrying a message: plain and sharded pub/sub.
_MESSAGES = (b"message", b"smessage")


class _Receiver(asyncio.Protocol):
    """Reads the subscribed connection: each message handled in the socket's callback.

    The listener shares the GIL with the app's threads and receives every write this
    process announces too; redis-py's ``PubSub.get_message`` costs several coroutine
    layers per message (about half a raw Redis ``SET`` here), this costs a parse.
    """

    def __init__(self, handle: Callable[[bytes], None]) -> None:
        self.handle = handle
        self.reader = hiredis.Reader()
        self.heard = time.monotonic()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        reader = self.reader
        reader.feed(data)
        reply = reader.gets()
        while reply is not False:
            if isinstance(reply, list):
                if reply[0] in _MESSAGES:
                    self.handle(reply[2])
                elif reply[0] == b"sunsubscribe" and self.transport is not None:
                    # Redis dropped a sharded subscription (its slot moved): resubscribe.
                    self.transport.close()
            reply = reader.gets()

    def ping(self) -> None:
        if self.transport is not None:
            self.transport.write(b"*1\r\n$4\r\nPING\r\n")

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


_channels: dict[str, InvalidationChannel] = {}


def _after_fork_in_child() -> None:
    # Local tiers copied from the parent cannot be trusted without a listener.
    for channel in _channels.values():
        channel.healthy = False
        channel._flush()


os.register_at_fork(after_in_child=_after_fork_in_child)


def channel_for(url: str) -> InvalidationChannel:
    """The process's channel for the Redis server at ``url`` (started on first use)."""
    channel = _channels.get(url)
    if channel is None or channel._stopping:
        channel = _channels[url] = InvalidationChannel(url)
        channel.start()
    return channel


def flush_local_tiers(url: str) -> None:
    """Flush this process's local tiers over the Redis server at ``url`` (it came back)."""
    channel = _channels.get(url)
    if channel is not None:
        channel._flush()


def _flush_on_failover(topology: RedisTopology, old: object, new: object) -> None:
    # A new master may lack writes the old one acknowledged: local copies may be newer.
    flush_local_tiers(topology.url)


on_failover(_flush_on_failover)


def stop_all() -> None:
    """Stop every channel (used when caches are reconfigured)."""
    for channel in list(_channels.values()):
        channel.stop()
    _channels.clear()
