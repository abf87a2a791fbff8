"""Bad input fails early: at decoration, and at ``delay`` before anything is sent."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest
import redis

from zephyr_celery import SyncJob, job
from zephyr_celery._job import AsyncJob
from zephyr_celery._registry import registered_jobs
from zephyr_core import ConfigError


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"retry": -1}, "retry"),
        ({"retry": 1.5}, "retry"),
        ({"retry": True}, "retry"),
        ({"delay": -5}, "delay"),
        ({"delay": "60"}, "delay"),
        ({"delay": 10, "max_delay": 5}, "max_delay"),
        ({"backoff": "yes"}, "backoff"),
        ({"queue": ""}, "queue"),
        ({"queue": 3}, "queue"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": "10/fortnight"}, "rate_limit"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_option_raises_at_decoration_naming_it(
    redis_app: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        job(**options)
    assert caught.value.field == field
    assert f"{field}=" in str(caught.value)
    assert "expected" in str(caught.value)


def test_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    from zephyr_celery import set_app
    from zephyr_core import get_settings

    monkeypatch.setenv("JOB_QUEUE_URL", redis_url)
    monkeypatch.setenv("JOB_RETRY_ATTEMPTS", "5")
    monkeypatch.setenv("JOB_RETRY_DELAY", "7")
    get_settings.cache_clear()
    set_app(None)
    try:

        @job(name="jobs_options.defaults")
        def defaults() -> None: ...

        assert (defaults.retry, defaults.delay_seconds) == (5, 7.0)
        assert defaults.task.max_retries == 5
        assert defaults.task.app.conf.broker_url == redis_url
    finally:
        set_app(None)


def test_options_reach_the_celery_task(redis_app: Any) -> None:
    @job(retry=2, delay=3, queue="mail", priority=7, rate_limit="10/s", name="mail.send")
    async def send() -> None: ...

    task = redis_app.tasks["mail.send"]
    assert task is send.task
    assert (task.max_retries, task.default_retry_delay) == (2, 3.0)
    assert task.rate_limit == "10/s"
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    # Celery's own sends (retries, beat, send_task) route by task_routes.
    route = redis_app.amqp.router.route({}, "mail.send", (), {})
    assert (route["queue"].name, route["priority"]) == ("mail", 7)
    assert (
        redis_app.amqp.router.route({"queue": "other"}, "mail.send", (), {})["queue"].name
        == "other"
    )


def test_sync_timeout_maps_to_celery_time_limits(redis_app: Any) -> None:
    @job(timeout=30, name="jobs_options.slow")
    def slow() -> None: ...

    assert (slow.task.soft_time_limit, slow.task.time_limit) == (30.0, 35.0)


def test_async_or_sync_is_chosen_at_decoration(redis_app: Any) -> None:
    @job(name="jobs_options.a")
    async def a() -> None: ...

    @job(name="jobs_options.s")
    def s() -> None: ...

    assert isinstance(a, AsyncJob) and a.is_async
    assert isinstance(s, SyncJob) and not s.is_async


def test_decorator_keeps_the_function_identity(redis_app: Any) -> None:
    @job(retry=1, name="jobs_options.documented")
    async def documented(x: int) -> int:
        """Docs survive."""
        return x

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs survive."
    assert documented.__wrapped__ is not None  # type: ignore[attr-defined]
    assert documented.name == "jobs_options.documented"


def _module_level(x: int) -> int:
    return x


def test_default_name_is_module_and_qualname(redis_app: Any) -> None:
    made = job(_module_level)
    assert made.name == f"{__name__}._module_level"
    assert redis_app.tasks[made.name].zephyr_job is made


def test_name_collision_between_two_functions_raises_naming_both(redis_app: Any) -> None:
    @job(name="billing.charge")
    def charge() -> None: ...

    with pytest.raises(ConfigError) as caught:

        @job(name="billing.charge")
        def other() -> None: ...

    message = str(caught.value)
    assert "billing.charge" in message
    assert "charge" in message and "other" in message
    assert registered_jobs()["billing.charge"] is charge


def test_redefining_the_same_function_replaces_it(redis_app: Any) -> None:
    def define() -> Any:
        @job(name="same.place")
        def same_place() -> int:
            return 1

        return same_place

    first, second = define(), define()
    assert registered_jobs()["same.place"] is second
    assert redis_app.tasks["same.place"].zephyr_job is second
    assert first is not second


def test_one_decorator_object_decorates_several_functions(redis_app: Any) -> None:
    retrying = job(retry=4)
    one, two = retrying(_one), retrying(_two)
    assert (one.retry, two.retry) == (4, 4)
    assert one.name != two.name


def _one() -> None: ...


def _two() -> None: ...


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((Opaque(),), {}, "'payload'"),
        (("ok",), {"extra": {1, 2}}, "'extra'"),
        (("ok",), {"extra": lambda: None}, "'extra'"),
    ],
    ids=["object", "set-kwarg", "function"],
)
async def test_unsendable_argument_raises_type_error_naming_it_and_sends_nothing(
    redis_app: Any, redis_url: str, args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    @job(name="jobs_options.consume")
    async def consume(payload: Any, extra: Any = None) -> None: ...

    with pytest.raises(TypeError) as caught:
        await consume.delay(*args, **kwargs)
    assert named in str(caught.value)
    assert consume.name in str(caught.value)
    with pytest.raises(TypeError):
        consume.delay_sync(*args, **kwargs)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen("celery") == 0
    finally:
        client.close()


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        uuid.UUID(int=5),
        decimal.Decimal("1.5"),
        {"nested": [1, 2.5, None, True, "x"]},
        b"\x00raw",
    ],
    ids=["datetime", "uuid", "decimal", "nested", "bytes"],
)
async def test_values_kombu_json_carries_are_accepted(redis_app: Any, value: Any) -> None:
    @job(name="jobs_options.consume_carried")
    async def consume(payload: Any) -> None: ...

    handle = await consume.delay(value)
    assert isinstance(handle, str)


async def test_wrong_arguments_are_not_enqueued(redis_app: Any, redis_url: str) -> None:
    @job(name="jobs_options.takes_one")
    async def takes_one(a: int) -> None: ...

    with pytest.raises(TypeError):
        await takes_one.delay(1, 2)  # type: ignore[call-arg]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen("celery") == 0
    finally:
        client.close()


async def test_apply_async_rejects_bad_options(redis_app: Any) -> None:
    @job(name="jobs_options.target")
    async def target() -> None: ...

    with pytest.raises(ConfigError):
        await target.apply_async(priority=11)
    with pytest.raises(ValueError):
        await target.apply_async(countdown=-1)


async def test_apply_async_queue_and_priority_land_in_the_message(
    redis_app: Any, redis_url: str
) -> None:
    import json

    @job(name="jobs_options.routed")
    async def routed() -> None: ...

    handle = await routed.apply_async(queue="reports", priority=0)
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lindex("reports", 0)
    finally:
        client.close()
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["id"] == handle
    assert message["headers"]["task"] == routed.name
    assert message["content-type"] == "application/json"
    assert message["properties"]["delivery_info"]["routing_key"] == "reports"
