"""@job end to end on a real broker (Redis and RabbitMQ) with an in-process worker."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zephyr_celery import JobFailed, JobHandle, JobTimeout, failure_store, job
from zephyr_celery.testing import InProcessWorker

pytestmark = pytest.mark.usefixtures("jobs_worker")


async def test_async_job_result_comes_back_through_wait() -> None:
    @job(name="jobs.add")
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    handle = await add.delay(2, 3)
    assert isinstance(handle, JobHandle)
    assert await handle.wait(timeout=30) == 5
    assert await handle.status() == "SUCCESS"


async def test_sync_job_runs_on_worker_and_inline() -> None:
    @job(name="jobs.multiply")
    def multiply(a: int, b: int) -> int:
        return a * b

    assert multiply(3, 4) == 12  # calling runs it here
    handle = await multiply.delay(6, 7)
    assert await handle.wait(timeout=30) == 42


async def test_calling_an_async_job_runs_it_inline_without_a_message() -> None:
    ran_in: list[str] = []

    @job(name="jobs.where")
    async def where() -> str:
        ran_in.append(threading.current_thread().name)
        return "here"

    assert await where() == "here"
    assert ran_in == [threading.current_thread().name]


async def test_handle_is_a_json_friendly_job_id() -> None:
    @job(name="jobs.noop")
    async def noop() -> None:
        return None

    handle = await noop.delay()
    assert json.loads(json.dumps({"job_id": handle})) == {"job_id": handle.id}
    # A handle rebuilt from the stored id waits the same.
    assert await JobHandle(handle.id).wait(timeout=30) is None


def test_delay_sync_from_synchronous_code() -> None:
    @job(name="jobs.shout")
    async def shout(word: str) -> str:
        return word.upper()

    handle = shout.delay_sync("hi")

    async def wait() -> str:
        return await handle.wait(timeout=30)

    assert asyncio.run(wait()) == "HI"


async def test_keyword_arguments_travel() -> None:
    @job(name="jobs.greet")
    async def greet(name: str, *, greeting: str = "hello") -> str:
        return f"{greeting} {name}"

    handle = await greet.delay("ada", greeting="hi")
    assert await handle.wait(timeout=30) == "hi ada"


async def test_async_jobs_share_one_long_lived_loop_per_worker_process() -> None:
    @job(name="jobs.loop_id")
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    first = await (await loop_id.delay()).wait(timeout=30)
    second = await (await loop_id.delay()).wait(timeout=30)
    assert first == second
    assert first != id(asyncio.get_running_loop())


async def test_client_opened_by_one_job_is_usable_by_the_next(redis_url: str) -> None:
    import redis.asyncio as aioredis

    clients: dict[str, Any] = {}

    @job(name="jobs.use_pool")
    async def use_pool(key: str) -> int:
        if "c" not in clients:
            clients["c"] = aioredis.Redis.from_url(redis_url)
        return int(await clients["c"].incr(key))

    assert await (await use_pool.delay("n")).wait(timeout=30) == 1
    assert await (await use_pool.delay("n")).wait(timeout=30) == 2
    await (await _close_on_worker_loop(clients["c"])).wait(timeout=30)


async def _close_on_worker_loop(client: Any) -> JobHandle[None]:
    @job(name="jobs.close_client")
    async def close_client() -> None:
        await client.aclose()

    return await close_client.delay()


async def test_failure_surfaces_type_message_and_traceback() -> None:
    @job(retry=0, name="jobs.explode")
    async def explode(what: str) -> None:
        raise ValueError(f"bad {what}")

    handle = await explode.delay("input")
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=30)
    assert caught.value.exc_type == "ValueError"
    assert caught.value.exc_message == "bad input"
    assert caught.value.job_id == handle
    assert "raise ValueError" in (caught.value.remote_traceback or "")
    assert await handle.status() == "FAILURE"


class Unsendable:
    """Not JSON: neither its instances nor exceptions carrying them."""


class CustomError(Exception):
    """A class the caller may not have: its constructor needs two arguments."""

    def __init__(self, code: int, thing: object) -> None:
        super().__init__(code, thing)
        self.code = code


@pytest.mark.parametrize(
    ("raised", "exc_type"),
    [
        (lambda: CustomError(7, Unsendable()), "CustomError"),
        (lambda: RuntimeError(Unsendable(), {1, 2}), "RuntimeError"),
        (lambda: KeyError(b"\xff bytes"), "KeyError"),
    ],
    ids=["custom-class-unjsonable-arg", "set-and-object-args", "bytes-arg"],
)
async def test_exception_json_cannot_carry_still_surfaces_as_job_failed(
    raised: Any, exc_type: str
) -> None:
    @job(retry=0, name="jobs.raises_odd")
    async def raises_odd() -> None:
        raise raised()

    handle = await raises_odd.delay()
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=30)
    assert caught.value.exc_type == exc_type


async def test_result_json_cannot_carry_fails_the_job() -> None:
    @job(retry=0, name="jobs.returns_object")
    async def returns_object() -> Any:
        return Unsendable()

    with pytest.raises(JobFailed):
        await (await returns_object.delay()).wait(timeout=30)


async def test_retries_until_success_then_result() -> None:
    attempts = 0

    @job(
        retry=2, delay=60, name="jobs.flaky"
    )  # the testing worker runs retries without their delay
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError("try again")
        return "ok"

    assert await (await flaky.delay()).wait(timeout=30) == "ok"
    assert attempts == 3


async def test_exhausted_retries_are_recorded_in_the_failure_store(jobs_app: Any) -> None:
    attempts = 0

    @job(retry=2, delay=1, name="jobs.always_fails")
    def always_fails(order_id: int, *, reason: str) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError(f"order {order_id}: {reason}")

    handle = await always_fails.delay(42, reason="card declined")
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=30)
    assert attempts == 3
    assert caught.value.exc_message == "order 42: card declined"

    store = failure_store(jobs_app)
    record = store.get(handle)
    assert record is not None
    assert record.name == always_fails.name
    assert (record.args, record.kwargs) == ([42], {"reason": "card declined"})
    assert (record.exc_type, record.message) == ("RuntimeError", "order 42: card declined")
    assert "RuntimeError" in record.traceback
    assert record.attempts == 3
    assert abs(record.failed_at - datetime.now(UTC).timestamp()) < 60
    assert [r.id for r in store.recent()] == [handle.id]
    assert store.remove(handle) is True
    assert store.get(handle) is None
    store.close()


async def test_a_job_that_recovers_leaves_no_failure_record(jobs_app: Any) -> None:
    calls = 0

    @job(retry=1, name="jobs.second_time_lucky")
    async def second_time_lucky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("blip")
        return calls

    handle = await second_time_lucky.delay()
    assert await handle.wait(timeout=30) == 2
    store = failure_store(jobs_app)
    assert store.get(handle) is None
    store.close()


async def test_wait_timeout_raises_job_timeout_and_the_job_can_be_waited_again() -> None:
    release = threading.Event()

    @job(name="jobs.blocked")
    def blocked() -> str:
        release.wait(30)
        return "done"

    handle = await blocked.delay()
    with pytest.raises(JobTimeout) as caught:
        await handle.wait(timeout=0.2)
    assert caught.value.job_id == handle
    assert isinstance(caught.value, TimeoutError)
    release.set()
    assert await handle.wait(timeout=30) == "done"


async def test_job_timeout_option_fails_a_slow_async_attempt() -> None:
    @job(retry=0, timeout=0.2, name="jobs.slow")
    async def slow() -> None:
        await asyncio.sleep(30)

    with pytest.raises(JobFailed) as caught:
        await (await slow.delay()).wait(timeout=30)
    assert caught.value.exc_type == "TimeoutError"
    assert "timeout of 0.2s" in caught.value.exc_message


async def test_apply_async_with_countdown_runs_later() -> None:
    @job(name="jobs.stamp")
    async def stamp() -> float:
        return datetime.now(UTC).timestamp()

    sent = datetime.now(UTC).timestamp()
    handle = await stamp.apply_async(countdown=1)
    assert await handle.status() == "PENDING"
    ran = await handle.wait(timeout=30)
    assert ran - sent >= 0.9


async def test_apply_async_with_eta_args_and_kwargs() -> None:
    @job(name="jobs.pair")
    async def pair(a: int, *, b: int) -> list[int]:
        return [a, b]

    eta = datetime.now(UTC) + timedelta(milliseconds=300)
    handle = await pair.apply_async([1], {"b": 2}, eta=eta)
    assert await handle.wait(timeout=30) == [1, 2]


async def test_many_concurrent_waits_on_one_loop() -> None:
    @job(name="jobs.square")
    async def square(n: int) -> int:
        return n * n

    handles = [await square.delay(n) for n in range(200)]
    results = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    assert results == [n * n for n in range(200)]


async def test_two_waits_on_the_same_job_both_resolve() -> None:
    @job(name="jobs.one")
    async def one() -> int:
        return 1

    handle = await one.delay()
    first, second = await asyncio.gather(handle.wait(timeout=30), handle.wait(timeout=30))
    assert first == second == 1


async def test_waiting_after_the_job_finished_reads_the_stored_result(
    jobs_worker: InProcessWorker,
) -> None:
    @job(name="jobs.early")
    async def early() -> str:
        return "stored"

    handle = await early.delay()
    # A second, independent handle started after completion must not hang.
    assert await handle.wait(timeout=30) == "stored"
    assert await JobHandle(handle.id).wait(timeout=5) == "stored"


async def test_job_enqueued_by_a_job() -> None:
    @job(name="jobs.child")
    async def child(n: int) -> int:
        return n + 1

    @job(name="jobs.parent")
    async def parent(n: int) -> str:
        handle = await child.delay(n)
        return str(handle)

    child_id = await (await parent.delay(1)).wait(timeout=30)
    assert await JobHandle(child_id).wait(timeout=30) == 2
