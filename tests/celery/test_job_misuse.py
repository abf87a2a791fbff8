"""``@job`` misuse fails at decoration (or at ``delay``), naming what is wrong; arguments
that do not match a job's signature fail on the worker at once, without retries."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from zephyr_celery import JobFailed, JobHandle, failure_store, get_app, job, set_app, testing
from zephyr_celery._job import Job
from zephyr_celery._messages import MAX_DEPTH
from zephyr_celery._registry import registered_jobs
from zephyr_core import ConfigError

# -- names -----------------------------------------------------------------------------


def _factory(k: int, name: str | None = None) -> Job[Any, Any]:
    def inner(x: int) -> int:
        return x * k

    return job(inner) if name is None else job(name=name)(inner)


def test_a_factory_made_job_without_a_name_is_refused(redis_app: Any) -> None:
    before = registered_jobs()
    with pytest.raises(ConfigError) as caught:
        _factory(10)
    assert caught.value.field == "name"
    message = str(caught.value)
    assert "<locals>.inner" in message and "name=" in message
    assert registered_jobs() == before


async def test_factory_made_jobs_with_their_own_names_run_their_own_function(
    jobs_worker: Any,
) -> None:
    times10 = _factory(10, name="misuse.times10")
    times100 = _factory(100, name="misuse.times100")
    assert await (await times10.delay(2)).wait(timeout=30) == 20
    assert await (await times100.delay(2)).wait(timeout=30) == 200


async def test_with_an_in_process_worker_local_jobs_are_numbered_apart(
    jobs_worker: Any,
) -> None:
    # The proposal's TestJobQueue defines its jobs inside the tests, without name=:
    # while an in-process worker runs, each local job gets a name of its own.
    times10 = _factory(10)
    times100 = _factory(100)
    assert times10.name != times100.name
    assert times10.name.startswith(f"{__name__}._factory.<locals>.inner#")
    assert await (await times10.delay(2)).wait(timeout=30) == 20
    assert await (await times100.delay(2)).wait(timeout=30) == 200


def test_a_lambda_is_refused_with_our_error_and_registers_nothing(redis_url: str) -> None:
    set_app(None)
    try:
        before = registered_jobs()
        with pytest.raises(ConfigError) as caught:
            job(lambda x: x)
        assert "<lambda>" in str(caught.value) and "name=" in str(caught.value)
        assert registered_jobs() == before
        # Every later app still registers every job.
        for _ in range(2):
            set_app(None)
            app = get_app()
            assert set(registered_jobs()) <= set(app.tasks)
    finally:
        set_app(None)


async def test_a_named_lambda_is_a_job(jobs_worker: Any) -> None:
    double = job(name="misuse.double")(lambda x: 2 * x)
    assert await (await double.delay(21)).wait(timeout=30) == 42


def test_a_name_taken_by_another_function_is_refused(redis_app: Any) -> None:
    job(name="misuse.taken")(_module_sum)
    with pytest.raises(ConfigError) as caught:
        job(name="misuse.taken")(_module_other)
    assert "misuse.taken" in str(caught.value) and "name=" in str(caught.value)
    assert registered_jobs()["misuse.taken"].fn is _module_sum


def _module_sum(a: int, b: int, c: int) -> int:
    return a + b + c


def _module_other() -> None: ...


# -- the kind of function -------------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


async def _async_generator() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize("fn", [_generator, _async_generator], ids=["generator", "async"])
def test_a_generator_function_is_refused(redis_app: Any, fn: Callable[..., Any]) -> None:
    before = registered_jobs()
    with pytest.raises(ConfigError) as caught:
        job(name="misuse.generator")(fn)
    assert "generator function cannot be a job" in str(caught.value)
    assert registered_jobs() == before


def test_an_instance_method_is_refused_saying_what_to_do(redis_app: Any) -> None:
    with pytest.raises(ConfigError) as caught:

        class Mailer:
            @job(name="misuse.send")
            def send(self, to: str) -> None: ...

    message = str(caught.value)
    assert "a method cannot be a job" in message
    assert "module-level function" in message and "@staticmethod" in message
    assert "misuse.send" not in registered_jobs()


def test_a_bound_method_is_refused(redis_app: Any) -> None:
    class Mailer:
        def send(self, to: str) -> None: ...

    with pytest.raises(ConfigError, match="a method cannot be a job"):
        job(name="misuse.bound")(Mailer().send)


async def test_a_staticmethod_is_a_job_either_way_round(jobs_worker: Any) -> None:
    class Maths:
        @job(name="misuse.square")
        @staticmethod
        def square(x: int) -> int:
            return x * x

        @staticmethod
        @job(name="misuse.cube")
        def cube(x: int) -> int:
            return x * x * x

    assert await (await Maths.square.delay(3)).wait(timeout=30) == 9
    assert await (await Maths.cube.delay(3)).wait(timeout=30) == 27


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"rate_limit": "-5/s"}, "rate_limit"),
        ({"rate_limit": "nan/s"}, "rate_limit"),
        ({"queue": "mail queue"}, "queue"),
        ({"queue": "mail,bulk"}, "queue"),
        ({"name": "celery.backend_cleanup"}, "name"),
        ({"name": "my job"}, "name"),
    ],
)
def test_bad_option_is_refused_naming_it(
    redis_app: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        job(**options)
    assert caught.value.field == field
    assert f"@job({field}=" in str(caught.value) and "expected" in str(caught.value)


def test_an_unknown_option_is_a_type_error_listing_the_options(redis_app: Any) -> None:
    with pytest.raises(TypeError, match=r"retries.*accepted: retry"):
        job(retries=3)  # type: ignore[call-overload]


# -- arguments ----------------------------------------------------------------------------


def _takes(payload: Any, other: Any = None) -> None: ...


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _cycle() -> Any:
    value: list[Any] = []
    value.append({"self": value})
    return value


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (({1: "a"},), {}, r"argument 'payload' has a dict key 1 \(a int\) at payload"),
        (
            ({"ok": [{"x": {2.5: 1}}]},),
            {},
            r"dict key 2.5 \(a float\) at payload\['ok'\]\[0\]\['x'\]",
        ),
        (("fine",), {"other": {None: 1}}, "argument 'other' has a dict key None"),
        ((_deep(10_000),), {}, f"argument 'payload' nests .* deeper than {MAX_DEPTH}"),
        ((_cycle(),), {}, "argument 'payload' nests .* contains itself"),
    ],
    ids=["int-key", "nested-float-key", "none-key-kwarg", "too-deep", "cycle"],
)
async def test_arguments_json_would_change_are_refused_naming_them(
    redis_app: Any, redis_url: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    takes = job(_takes)
    with pytest.raises(TypeError, match=expected):
        await takes.delay(*args, **kwargs)
    with pytest.raises(TypeError, match=expected):
        await takes.apply_async(args, kwargs, countdown=5)  # Celery's path
    with pytest.raises(TypeError, match=expected):
        takes.delay_sync(*args, **kwargs)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.llen("celery") == 0
    finally:
        client.close()


async def test_nesting_within_the_limit_travels(jobs_worker: Any) -> None:
    echo = job(name="misuse.echo")(lambda value: value)
    value = _deep(MAX_DEPTH - 1)
    assert await (await echo.delay(value)).wait(timeout=30) == value


# -- on the worker -------------------------------------------------------------------------


async def test_arguments_that_do_not_match_fail_at_once_without_retries(
    jobs_app: Any,
) -> None:
    add3 = job(retry=3, delay=60, name="misuse.add3")(_module_sum)
    client = Celery("plain", broker=jobs_app.conf.broker_url, set_as_current=False)
    try:
        async with testing.worker(jobs_app, fast_retries=False):
            # A plain Celery producer (as `celery call` is) sends one argument of three.
            sent = client.send_task(add3.name, args=[1])
            handle: JobHandle[int] = JobHandle(sent.id, jobs_app)
            with pytest.raises(JobFailed) as caught:
                # Retried, the job would wait 60 s before its next attempt.
                await handle.wait(timeout=20)
            assert await handle.status() == "FAILURE"
    finally:
        client.close()
    failed = caught.value
    assert failed.exc_type == "TypeError"
    assert "misuse.add3 was sent arguments that do not match its signature" in (failed.exc_message)
    assert "missing a required argument: 'b'" in failed.exc_message
    store = failure_store(jobs_app)
    try:
        record = store.get(sent.id)
    finally:
        store.close()
    assert record is not None and record.attempts == 1


async def test_a_type_error_inside_the_job_is_still_retried(jobs_worker: Any) -> None:
    attempts: list[int] = []

    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise TypeError("a bug on the first try")
        return x

    flaky_job = job(retry=1, name="misuse.flaky")(flaky)
    assert await (await flaky_job.delay(7)).wait(timeout=30) == 7
    assert attempts == [7, 7]
