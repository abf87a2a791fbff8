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

Subscribing is ``_subscriptions`` (one server, or the master the Sentinels name) and
``_shard_subscriptions`` (every master of a Cluster): redis-py opens and subscribes the
connection, then a protocol parses messages in the socket's read callback.

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
from typing import Any

from zephyr_cache._memory import MemoryBackend
from zephyr_cache._runner import runner
from zephyr_cache._shard_subscriptions import subscribe_shards
from zephyr_cache._subscriptions import Subscribed, subscribe
from zephyr_core import get_settings, mask_url
from zephyr_core._background import PerProcess, cancel_on_loop, current_pid
from zephyr_core._failovers import on_failover
from zephyr_core._topology import RedisTopology

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
            subscribed: list[Subscribed] = []
            try:
                if topology.kind == "cluster":
                    subscribed = await subscribe_shards(topology, self._handle)
                else:
                    subscribed = [await subscribe(topology, self.url, CHANNEL, self._handle)]
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
