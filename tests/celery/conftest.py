"""Job fixtures: a Celery app on a private broker, and an in-process worker for it.

``broker_settings`` is parametrised over Redis and RabbitMQ (results stay on the
private Redis either way), so every test that uses ``jobs_app``/``jobs_worker``
runs on both brokers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from zephyr_celery import create_app, set_app, testing
from zephyr_celery.testing import InProcessWorker
from zephyr_core import Settings

BROKERS = ["redis", "rabbitmq"]


@pytest.fixture(params=BROKERS)
def jobs_settings(request: pytest.FixtureRequest, redis_url: str) -> Settings:
    """Settings for a private broker: the session Redis, or a RabbitMQ vhost."""
    if request.param == "redis":
        return Settings(JOB_QUEUE_URL=redis_url)
    rabbitmq_url = request.getfixturevalue("rabbitmq_url")
    return Settings(
        JOB_QUEUE_BACKEND="rabbitmq", JOB_QUEUE_URL=rabbitmq_url, JOB_RESULT_URL=redis_url
    )


@pytest.fixture
def redis_settings(redis_url: str) -> Settings:
    """Settings for the session Redis only (tests that are about Redis itself)."""
    return Settings(JOB_QUEUE_URL=redis_url)


def _app_for(settings: Settings) -> Iterator[Any]:
    app = create_app(settings)
    if settings.JOB_QUEUE_BACKEND == "rabbitmq":
        app.control.purge()  # the vhost lives for the session: start from an empty queue
    set_app(app)
    try:
        yield app
    finally:
        set_app(None)
        app.close()


@pytest.fixture
def jobs_app(jobs_settings: Settings) -> Iterator[Any]:
    """The process-wide app for this test, on the parametrised broker."""
    yield from _app_for(jobs_settings)


@pytest.fixture
def redis_app(redis_settings: Settings) -> Iterator[Any]:
    """The process-wide app for this test, on Redis."""
    yield from _app_for(redis_settings)


@pytest.fixture
def jobs_worker(jobs_app: Any) -> Iterator[InProcessWorker]:
    """An in-process worker for ``jobs_app``, with retry delays off."""
    with testing.worker(jobs_app) as worker:
        yield worker


@pytest.fixture
async def redis_client(jobs_worker: InProcessWorker, redis_url: str) -> AsyncIterator[Any]:
    """The proposal's fixture: a Redis client, with a worker running the jobs."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
