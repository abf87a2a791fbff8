"""The lean Redis connection of the enqueue path: replies counted, dead peers noticed."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.servers import RedisServer
from zephyr_celery._redis import wire as _redis_wire


async def replies_to(params: dict[str, object], timeout: float) -> _redis_wire.Replies:
    loop = asyncio.get_running_loop()
    return await _redis_wire.connect(params, lambda: _redis_wire.Replies(loop, timeout))


async def test_replies_resolve_each_submission_in_order(redis_server: RedisServer) -> None:
    params = _redis_wire.plain_params(redis_server.url(3))
    assert params is not None
    wire = await replies_to(params, 5)
    try:
        first = wire.submit(_redis_wire.pack([("LPUSH", ("q", "a")), ("LPUSH", ("q", "b"))]), 2)
        second = wire.submit(_redis_wire.pack([("PUBLISH", ("nobody", "x"))]), 1)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
    finally:
        wire.close()


async def test_a_peer_that_never_answers_fails_the_wait_after_the_reply_timeout() -> None:
    """A dead host sends no reset: without a timeout `await job.delay()` would hang."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    loop = asyncio.get_running_loop()
    accepting = loop.run_in_executor(None, lambda: accepted.append(silent.accept()[0]))
    try:
        port = silent.getsockname()[1]
        wire = await replies_to({"host": "127.0.0.1", "port": port, "db": 0}, 0.3)
        await accepting
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match=r"no reply from Redis in 0\.3s"):
            await asyncio.wait_for(wire.submit(_redis_wire.pack([("LPUSH", ("q", "a"))]), 1), 10)
        assert 0.25 <= time.monotonic() - started < 5
        assert wire.closed  # the next send connects again
    finally:
        for connection in accepted:
            connection.close()
        silent.close()
