"""Breaker state shared between processes through Redis, without blocking the event loop.

pybreaker's ``CircuitRedisStorage`` uses the synchronous redis client: every call
through the breaker would block the loop on a round trip. Here pybreaker keeps its
state in memory, as usual, and this module mirrors the transitions:

- a transition in this process is written to a hash ``zephyr:breaker:<name>`` and
  published on the channel of the same name, in one EVAL, from a task on the loop;
- a follower task subscribes to that channel (and reads the hash after subscribing,
  so nothing published in between is missed) and applies what other processes
  publish to the local breaker.

Calls never wait on Redis. When it is unreachable the breaker works on its local
state, one warning is logged, and the follower reconnects with a growing delay
(0.2 s to 5 s), logging once when it is back. Failure counts stay per process: what
is shared is the state (closed, open, half-open) and when it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from zephyr_core import ConfigError, mask_url
from zephyr_core._urls import redis_url_problem

if TYPE_CHECKING:
    from zephyr_resilience._breaker import CircuitBreaker

logger = logging.getLogger("zephyr_resilience.breaker")

# HSET + PUBLISH in one round trip.
_PUBLISH = """
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'opened_at', ARGV[3])
return redis.call('PUBLISH', KEYS[1], ARGV[1])
"""


class SharedState:
    """Mirrors one breaker's transitions to and from Redis."""

    def __init__(self, url: str, breaker: CircuitBreaker) -> None:
        if not isinstance(url, str) or (problem := redis_url_problem(url)):
            raise ConfigError(
                f"storage={url!r}: expected None or a redis:// URL"
                + (f" ({problem})" if isinstance(url, str) else ""),
                field="storage",
            )
        self.url = url
        self.breaker = breaker
        self.key = f"zephyr:breaker:{breaker.name}"
        self.origin = uuid.uuid4().hex
        self.connected = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._warned = False
        #: Connection attempts of the follower so far (it retries while Redis is down).
        self.attempts = 0

    def ensure_started(self) -> None:
        """Start following on the running loop (cheap when already started)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self.connected = asyncio.Event()
        self._client = Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2.0)
        self._task = loop.create_task(self._follow(), name=f"breaker-follow:{self.breaker.name}")

    def _warn(self, exc: BaseException) -> None:
        self.connected.clear()
        if not self._warned:
            self._warned = True
            logger.warning(
                "circuit breaker %r: shared state at %s is unreachable (%s: %s); "
                "using local state until it answers",
                self.breaker.name,
                mask_url(self.url),
                type(exc).__name__,
                exc,
            )

    async def _follow(self) -> None:
        assert self._client is not None
        delay = 0.2
        while True:
            self.attempts += 1
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.key)
                stored = await self._client.hgetall(self.key)
                if stored:
                    self._apply(stored.get(b"state"), stored.get(b"opened_at"))
                if self._warned:
                    self._warned = False
                    logger.info("circuit breaker %r: shared state is back", self.breaker.name)
                self.connected.set()
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["data"])
            except (RedisError, OSError) as exc:
                self._warn(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_message(self, data: bytes) -> None:
        try:
            payload: dict[str, Any] = json.loads(data)
        except ValueError:
            return
        if payload.get("origin") == self.origin:
            return
        self._apply(payload.get("state"), payload.get("opened_at"))

    def _apply(self, state: Any, opened_at: Any) -> None:
        if isinstance(state, bytes):
            state = state.decode()
        if state not in ("closed", "open", "half-open"):
            return
        try:
            when = float(opened_at or 0)
        except (TypeError, ValueError):
            when = 0.0
        self.breaker._apply_remote(state, when)

    def publish(self, state: str, opened_at: float) -> None:
        """Send a local transition, from a task (never waits on Redis)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync call outside any loop: local state only
            return
        if loop is not self._loop or self._client is None:
            return
        task = loop.create_task(self._publish(state, opened_at))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, state: str, opened_at: float) -> None:
        assert self._client is not None
        payload = json.dumps({"state": state, "opened_at": opened_at, "origin": self.origin})
        try:
            await self._client.eval(_PUBLISH, 1, self.key, payload, state, repr(opened_at))
        except (RedisError, OSError) as exc:
            self._warn(exc)

    async def aclose(self) -> None:
        """Stop the follower, finish pending publishes, close the connection."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None
        self._loop = None
