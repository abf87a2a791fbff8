"""A Redis pub/sub subscription whose socket an ``asyncio.Protocol`` reads.

redis-py opens and subscribes the connection (URL, TLS, auth, the Sentinels' master);
once the subscription is confirmed its socket is handed to :class:`Receiver`, which
parses messages with ``hiredis`` in the socket's read callback: no coroutine per
message on a thread that competes with the app for the GIL (every write a process
announces comes back to it too). :func:`subscribe` subscribes on one server or on the
master the Sentinels name; ``_shard_subscriptions`` on every master of a Redis Cluster.

The subscribed connection's asyncio ``StreamWriter`` is redis-py's private ``_writer``:
its transport is given a new protocol (tested with redis-py 8.1).

Private internals used:

- ``redis.asyncio.connection.AbstractConnection._writer``
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from zephyr_cache._redis_pool import sentinel_manager
from zephyr_core._topology import RedisTopology


class Subscribed:
    """One subscribed connection whose socket a :class:`Receiver` reads."""

    def __init__(self, client: Redis, pubsub: PubSub, receiver: Receiver, owner: Any) -> None:
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


LISTENER_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": None}


async def hand_over(
    client: Redis,
    pubsub: PubSub,
    kind: str,
    handle: Callable[[bytes], None],
    owner: Any = None,
) -> Subscribed:
    """Check the subscription was confirmed, then give its socket to a :class:`Receiver`."""
    try:
        confirmation = await pubsub.get_message(timeout=2.0)
        if not confirmation or confirmation.get("type") != kind:
            raise ConnectionError(f"no {kind} confirmation")
        connection = pubsub.connection
        assert connection is not None
        # Messages that came with the confirmation, then hand the socket over.
        while await connection.can_read():
            reply = await connection.read_response(push_request=True)
            if reply and reply[0] in MESSAGES:
                handle(reply[2])
        receiver = Receiver(handle)
        transport = connection._writer.transport
        transport.set_protocol(receiver)
        receiver.connection_made(transport)  # set_protocol does not call it
    except BaseException:
        await Subscribed(client, pubsub, None, owner).aclose()  # type: ignore[arg-type]
        raise
    return Subscribed(client, pubsub, receiver, owner)


async def subscribe(
    topology: RedisTopology, url: str, channel: str, handle: Callable[[bytes], None]
) -> Subscribed:
    """SUBSCRIBE to ``channel`` on the server (single) or on the master the Sentinels name."""
    owner: Sentinel | None = None
    if topology.kind == "sentinel":
        assert topology.master_name is not None
        owner = sentinel_manager(topology)
        options: dict[str, Any] = {"db": topology.db, **LISTENER_OPTIONS}
        if topology.username:
            options["username"] = topology.username
        if topology.password:
            options["password"] = topology.password
        if topology.tls:
            options.update(ssl=True, **topology.ssl_options)
        client = owner.master_for(topology.master_name, retry=Retry(NoBackoff(), 0), **options)
    else:
        client = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **LISTENER_OPTIONS)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
    except BaseException:
        await Subscribed(client, pubsub, None, owner).aclose()  # type: ignore[arg-type]
        raise
    return await hand_over(client, pubsub, "subscribe", handle, owner)


#: Replies carrying a message: plain and sharded pub/sub.
MESSAGES = (b"message", b"smessage")


class Receiver(asyncio.Protocol):
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
                if reply[0] in MESSAGES:
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
