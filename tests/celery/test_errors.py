"""One error per failure: a broker or result Redis that is down (or out of memory)
raises our EnqueueError / ResultBackendError on every path, with the masked URL and
the library's error as the cause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from tests.celery.jobs_processes import with_password
from tests.servers import RabbitVhost, RedisServer, need
from zephyr_celery import (
    EnqueueError,
    JobHandle,
    JobTimeout,
    ResultBackendError,
    create_app,
    job,
    set_app,
    testing,
)
from zephyr_celery._redis import waiter as _waiter
from zephyr_core import Settings

PASSWORD = "s3cret"
#: Give up publishing within a second (the default rides out ~20 s of restart).
FAST_GIVE_UP = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def _ping() -> None: ...


def _use(app: Any) -> Iterator[Any]:
    set_app(app)
    try:
        yield app
    finally:
        set_app(None)
        app.close()


@pytest.fixture
def broker_app(own_redis: RedisServer) -> Iterator[Any]:
    """An app whose broker (and results) is a Redis of this test, with a password."""
    url = with_password(own_redis.url(0), password=PASSWORD)
    yield from _use(create_app(Settings(JOB_QUEUE_URL=url), task_publish_retry_policy=FAST_GIVE_UP))


def _assert_ours(error: EnqueueError | ResultBackendError, why: str) -> None:
    message = str(error)
    assert why in message
    assert PASSWORD not in message and "***" in message
    assert error.__cause__ is not None
    assert type(error.__cause__).__module__.split(".")[0] in ("redis", "kombu", "amqp", "builtins")


async def _send(path: str, ping: Any) -> JobHandle[Any]:
    if path == "fast":
        return await ping.delay()  # the event-loop publisher, from a template
    if path == "countdown":
        return await ping.apply_async(countdown=30)  # built by Celery
    return await asyncio.to_thread(ping.delay_sync)  # published by Celery in a thread


# -- enqueueing ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "countdown", "sync"])
async def test_delay_with_the_broker_down_raises_enqueue_error(
    broker_app: Any, own_redis: RedisServer, path: str
) -> None:
    ping = job(name="errors.ping")(_ping)
    await _send(path, ping)  # connected once: the broker then goes away
    own_redis.stop()
    with pytest.raises(EnqueueError) as caught:
        await _send(path, ping)
    error = caught.value
    _assert_ours(error, "cannot be reached")
    assert isinstance(error, ConnectionError)
    assert error.job_name == "errors.ping"
    assert error.broker_url.endswith(f"@127.0.0.1:{own_redis.port}/0")
    assert isinstance(error.__cause__, redis.ConnectionError | OSError | OperationalError)


@pytest.mark.parametrize("path", ["fast", "sync"])
async def test_delay_with_the_broker_down_from_the_start(
    broker_app: Any, own_redis: RedisServer, path: str
) -> None:
    ping = job(name="errors.ping")(_ping)
    own_redis.stop()
    with pytest.raises(EnqueueError) as caught:
        await _send(path, ping)
    _assert_ours(caught.value, "cannot be reached")


@pytest.mark.parametrize("path", ["fast", "countdown", "sync"])
async def test_delay_with_the_broker_out_of_memory_raises_enqueue_error(
    broker_app: Any, own_redis: RedisServer, path: str
) -> None:
    ping = job(name="errors.ping")(_ping)
    await _send(path, ping)
    admin = redis.Redis(port=own_redis.port)
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # below what it uses: every write is refused
        with pytest.raises(EnqueueError) as caught:
            await _send(path, ping)
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    _assert_ours(caught.value, "is out of memory")
    assert "maxmemory" in str(caught.value)


async def test_delay_on_rabbitmq_with_its_vhost_gone_raises_enqueue_error(
    redis_url: str,
) -> None:
    need(RabbitVhost.available(), "RabbitMQ at 127.0.0.1:5672 (with rabbitmqctl)")
    vhost = RabbitVhost()
    vhost.create()
    try:
        settings = Settings(
            JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=vhost.url(), JOB_RESULT_URL=redis_url
        )
        for app in _use(create_app(settings, task_publish_retry_policy=FAST_GIVE_UP)):
            ping = job(name="errors.ping")(_ping)
            await ping.delay()  # the publisher thread is connected
            vhost.delete()
            with pytest.raises(EnqueueError) as caught:
                await ping.delay()
            error = caught.value
            assert "guest:***@" in str(error) and ":guest@" not in str(error)
            assert error.__cause__ is not None
            with pytest.raises(EnqueueError):
                await asyncio.to_thread(ping.delay_sync)
            assert app is not None
    finally:
        vhost.delete()


# -- results ----------------------------------------------------------------------------


@pytest.fixture
def results_app(redis_url: str, own_redis: RedisServer) -> Iterator[Any]:
    """Broker on the session Redis, results on a Redis of this test (with a password)."""
    results = with_password(own_redis.url(0), password=PASSWORD)
    yield from _use(create_app(Settings(JOB_QUEUE_URL=redis_url, JOB_RESULT_URL=results)))


async def test_status_with_the_result_redis_down_raises_ours(
    results_app: Any, own_redis: RedisServer
) -> None:
    handle: JobHandle[Any] = JobHandle("an-id", results_app)
    assert await handle.status() == "PENDING"
    own_redis.stop()
    with pytest.raises(ResultBackendError) as caught:
        await handle.status()
    _assert_ours(caught.value, "cannot be reached")
    assert caught.value.job_id == "an-id"


async def test_wait_with_the_result_redis_down_says_so_not_did_not_finish(
    results_app: Any, own_redis: RedisServer
) -> None:
    handle: JobHandle[Any] = JobHandle("an-id", results_app)
    with pytest.raises(JobTimeout):  # Redis up: an honest timeout
        await handle.wait(timeout=0.2)
    own_redis.stop()
    with pytest.raises(ResultBackendError) as caught:
        await handle.wait(timeout=2)
    error = caught.value
    _assert_ours(error, "cannot be reached")
    assert not isinstance(error, JobTimeout) and "did not finish" not in str(error)


async def test_wait_without_a_timeout_ends_once_redis_is_gone_for_good(
    results_app: Any, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_waiter, "UNREACHABLE_AFTER", 2.0)
    ping = job(name="errors.ping")(_ping)
    handle = await ping.delay()  # nobody runs it
    waiting = asyncio.create_task(handle.wait())
    own_redis.stop()
    async with asyncio.timeout(30):
        with pytest.raises(ResultBackendError) as caught:
            await waiting
    _assert_ours(caught.value, "cannot be reached")


async def test_a_wait_rides_out_a_short_restart_of_the_result_redis(
    redis_url: str, own_redis: RedisServer
) -> None:
    # (No password here: the ACL user would not survive the restart.)
    settings = Settings(JOB_QUEUE_URL=redis_url, JOB_RESULT_URL=own_redis.url(0))
    for app in _use(create_app(settings)):
        pong = job(name="errors.pong")(_pong)
        handle = await pong.delay()
        waiting = asyncio.create_task(handle.wait(timeout=60))
        own_redis.stop()
        own_redis.start()
        async with testing.worker(app):
            assert await waiting == "pong"


def _pong() -> str:
    return "pong"
