"""JobHandle: a str that waits, and how stored results turn into values or JobFailed."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from typing import Any

import pytest
import redis

from tests.servers import RedisServer
from zephyr_celery import JobFailed, JobHandle, JobTimeout, create_app, job, set_app, testing
from zephyr_celery._handle import outcome
from zephyr_core import Settings


def test_handle_is_its_id() -> None:
    handle: JobHandle[int] = JobHandle("0f1e")
    assert handle == "0f1e"
    assert handle.id == "0f1e" and type(handle.id) is str
    assert json.dumps(handle) == '"0f1e"'
    assert repr(handle) == "JobHandle('0f1e')"
    assert {handle: 1}["0f1e"] == 1
    for copied in (pickle.loads(pickle.dumps(handle)), copy.copy(handle)):
        assert copied == handle and isinstance(copied, JobHandle)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"status": "SUCCESS", "result": {"ok": True}}, {"ok": True}),
        ({"status": "SUCCESS", "result": None}, None),
        ({"status": "SUCCESS", "result": [1, "2"]}, [1, "2"]),
    ],
)
def test_outcome_of_success_is_the_result(meta: dict[str, Any], expected: Any) -> None:
    assert outcome("id", meta) == expected


@pytest.mark.parametrize(
    ("meta", "exc_type", "message"),
    [
        (
            {
                "status": "FAILURE",
                "result": {"exc_type": "ValueError", "exc_message": ["bad"], "exc_module": "x"},
                "traceback": "Traceback...",
            },
            "ValueError",
            "bad",
        ),
        (
            {
                "status": "FAILURE",
                "result": {"exc_type": "NotImportable", "exc_message": [1, "two"]},
            },
            "NotImportable",
            "1, two",
        ),
        ({"status": "REVOKED", "result": {"exc_type": "TaskRevokedError"}}, "TaskRevokedError", ""),
        ({"status": "FAILURE", "result": "plain text"}, "Exception", "plain text"),
    ],
)
def test_outcome_of_failure_is_job_failed_without_importing(
    meta: dict[str, Any], exc_type: str, message: str
) -> None:
    with pytest.raises(JobFailed) as caught:
        outcome("the-id", meta)
    assert caught.value.exc_type == exc_type
    assert caught.value.exc_message == message
    assert caught.value.job_id == "the-id"
    assert caught.value.state == meta["status"]
    assert caught.value.remote_traceback == meta.get("traceback")


async def test_unknown_job_is_pending_and_wait_times_out(redis_app: Any) -> None:
    handle: JobHandle[Any] = JobHandle("never-enqueued")
    assert await handle.status() == "PENDING"
    with pytest.raises(JobTimeout, match=r"within 0\.1s"):
        await handle.wait(timeout=0.1)


async def test_negative_timeout_is_refused(redis_app: Any) -> None:
    with pytest.raises(ValueError, match="timeout=-1"):
        await JobHandle("x").wait(timeout=-1)


async def test_wait_survives_a_redis_restart(own_redis: RedisServer) -> None:
    """A wait started before Redis restarts gets the result stored after it."""
    app = create_app(Settings(JOB_QUEUE_URL=own_redis.url()))
    set_app(app)
    try:

        @job(name="handle.later")
        async def later(x: int) -> int:
            return x

        handle = await later.delay(5)
        waiting = asyncio.ensure_future(handle.wait(timeout=60))
        await asyncio.sleep(0)  # let the wait subscribe
        await asyncio.to_thread(own_redis.restart)
        with testing.worker(app):
            assert await waiting == 5
    finally:
        set_app(None)


async def test_wait_does_not_block_the_event_loop(redis_app: Any, redis_url: str) -> None:
    """While a handle waits, other coroutines keep running on the same loop."""
    handle: JobHandle[Any] = JobHandle("slow-job")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.ensure_future(ticker())
    with pytest.raises(JobTimeout):
        await handle.wait(timeout=0.5)
    ticking.cancel()
    assert ticks >= 20
    # Storing the result afterwards, as a worker would, lets a new wait return.
    client = redis.Redis.from_url(redis_url)
    key = redis_app.backend.get_key_for_task("slow-job")
    client.set(key, json.dumps({"status": "SUCCESS", "result": 1, "task_id": "slow-job"}))
    client.close()
    assert await handle.wait(timeout=5) == 1
