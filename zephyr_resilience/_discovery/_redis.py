"""Registration in Redis with a TTL heartbeat, and the discovery that reads it.

An instance is a member (its URL) of the sorted set ``zephyr:registry:<service>``,
scored with the time it expires. :class:`Registration` refreshes the score every
``ttl / 3`` seconds to ``now + 2 * ttl / 3`` and publishes on the channel of the same
name when it joins or leaves; :class:`RedisDiscovery` reads the live members on each
message and every ``interval`` seconds. A killed instance stops refreshing, so it
disappears within ``2 * ttl / 3 + interval`` seconds (within the TTL when
``interval <= ttl / 3``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from zephyr_core import ConfigError, get_settings, mask_url
from zephyr_core._urls import redis_url_problem
from zephyr_resilience._discovery import Update
from zephyr_resilience._endpoints import EndpointSpec, parse_entry

logger = logging.getLogger("zephyr_resilience.discovery")


def _key(service: str) -> str:
    return f"zephyr:registry:{service}"


def _redis_url(url: str | None) -> str:
    url = url or get_settings().CACHE_URL
    if problem := redis_url_problem(url):
        raise ConfigError(f"registry URL {mask_url(url)!r}: {problem}", field="redis_url")
    return url


class Registration:
    """One instance announced in the registry while it runs.

    Use ``async with register_instance("inventory", "http://10.0.0.5:8001"):`` or
    ``await registration.start()`` / ``await registration.aclose()``.
    """

    def __init__(self, service: str, url: str, redis_url: str | None, ttl: float) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigError(f"ttl={ttl!r}: expected a number of seconds > 0", field="ttl")
        self.service = service
        self.url = parse_entry(service, url).url
        self.redis_url = _redis_url(redis_url)
        self.ttl = float(ttl)
        self._client: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    async def _beat(self) -> None:
        assert self._client is not None
        now = time.time()
        key = _key(self.service)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {self.url: now + self.ttl * 2 / 3})
            pipe.publish(key, b"changed")
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._beat()
                if self._warned:
                    self._warned = False
                    logger.info("registry: %s is announced again", self.url)
            except (RedisError, OSError) as exc:
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "registry at %s unreachable (%s); %r keeps trying",
                        mask_url(self.redis_url),
                        exc,
                        self.service,
                    )
            await asyncio.sleep(self.ttl / 3)

    async def start(self) -> None:
        """Announce the instance now and keep announcing it."""
        if self._task is not None:
            return
        self._client = Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def aclose(self) -> None:
        """Stop announcing and leave the registry at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            key = _key(self.service)
            with contextlib.suppress(RedisError, OSError):
                await self._client.zrem(key, self.url)
                await self._client.publish(key, b"changed")
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Registration:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def register_instance(
    service: str, url: str, *, redis_url: str | None = None, ttl: float = 10.0
) -> Registration:
    """Announce ``url`` as an instance of ``service`` in the Redis registry.

    Args:
        service: The service name balancers ask for.
        url: Where this instance answers (``http://host:port``).
        redis_url: The registry's Redis (default: the ``CACHE_URL`` setting).
        ttl: Seconds after which a silent instance is gone.

    Returns:
        A :class:`Registration`: ``async with`` it, or ``await`` its ``start()``.
    """
    return Registration(service, url, redis_url, ttl)


class RedisDiscovery:
    """The instances of ``service`` announced in the Redis registry.

    Args:
        service: The service name.
        redis_url: The registry's Redis (default: the ``CACHE_URL`` setting).
        interval: Seconds between reads when no change is published.
    """

    def __init__(self, service: str, redis_url: str | None = None, interval: float = 1.0) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ConfigError(f"interval={interval!r}: expected a number of seconds > 0")
        self.service = service
        self.redis_url = _redis_url(redis_url)
        self.interval = float(interval)

    async def watch(self, update: Update) -> None:
        key = _key(self.service)
        client: Any = Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=5)
        last: list[str] | None = None
        warned = False
        try:
            while True:
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe(key)
                    while True:
                        members = await client.zrangebyscore(key, time.time(), "+inf")
                        urls = sorted(m.decode() for m in members)
                        if urls != last:
                            last = urls
                            update([EndpointSpec(url) for url in urls])
                        warned = False
                        await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=self.interval
                        )
                except (RedisError, OSError) as exc:
                    if not warned:
                        warned = True
                        logger.warning(
                            "service %r: registry at %s unreachable (%s); keeping %d endpoints",
                            self.service,
                            mask_url(self.redis_url),
                            exc,
                            len(last or []),
                        )
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
                await asyncio.sleep(self.interval)
        finally:
            await client.aclose()
