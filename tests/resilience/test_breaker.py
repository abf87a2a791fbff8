"""CircuitBreaker: opens after exactly failure_threshold failures, rejects without calling,
half-opens after recovery_timeout on an injected clock, closes after success_threshold."""

from __future__ import annotations

import asyncio
import logging

import pybreaker
import pytest
from prometheus_client import REGISTRY

from zephyr_core import ConfigError, ZephyrError
from zephyr_resilience import CircuitBreaker, CircuitBreakerError


class ServiceUnavailable(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_pybreaker_async_bug_is_real_and_ours_opens() -> None:
    """pybreaker's own decorator on an async def counts the coroutine as a success."""
    raw = pybreaker.CircuitBreaker(fail_max=2)

    @raw
    async def failing_raw() -> None:
        raise ServiceUnavailable

    for _ in range(5):
        with pytest.raises(ServiceUnavailable):
            asyncio.run(failing_raw())
    assert raw.current_state == "closed"  # the bug: never opens

    ours = CircuitBreaker(failure_threshold=2, name="regression")

    @ours
    async def failing() -> None:
        raise ServiceUnavailable

    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            asyncio.run(failing())
    assert ours.state == "open"
    with pytest.raises(CircuitBreakerError):
        asyncio.run(failing())


async def test_full_cycle_async() -> None:
    clock = FakeClock()
    calls = {"n": 0}
    breaker = CircuitBreaker(
        failure_threshold=3,
        recovery_timeout=60,
        expected_exception=ServiceUnavailable,
        success_threshold=2,
        name="cycle",
        clock=clock,
    )
    healthy = {"ok": False}

    @breaker
    async def call() -> str:
        calls["n"] += 1
        if not healthy["ok"]:
            raise ServiceUnavailable("down")
        return "ok"

    for attempt in range(3):
        assert breaker.state == "closed", attempt
        with pytest.raises(ServiceUnavailable):
            await call()
    assert breaker.state == "open" and calls["n"] == 3
    with pytest.raises(CircuitBreakerError) as info:
        await call()
    assert calls["n"] == 3  # rejected without calling
    assert info.value.state == "open" and info.value.retry_after == pytest.approx(60)
    assert isinstance(info.value, ZephyrError) and isinstance(
        info.value, pybreaker.CircuitBreakerError
    )
    clock.now += 59.9
    with pytest.raises(CircuitBreakerError):
        await call()
    clock.now += 0.2
    healthy["ok"] = True
    assert await call() == "ok"
    assert breaker.state == "half-open"  # one of two successes
    assert await call() == "ok"
    assert breaker.state == "closed"


async def test_failed_trial_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=5, name="reopen", clock=clock)

    @breaker
    async def call() -> None:
        raise ServiceUnavailable

    with pytest.raises(ServiceUnavailable):
        await call()
    clock.now += 5
    with pytest.raises(ServiceUnavailable):
        await call()  # the trial ran and failed
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerError):
        await call()


async def test_half_open_admits_at_most_max_calls() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_timeout=1, half_open_max_calls=2, name="trials", clock=clock
    )
    gate = asyncio.Event()
    started = []

    @breaker
    async def call(fail: bool = False) -> str:
        started.append(1)
        if fail:
            raise ServiceUnavailable
        await gate.wait()
        return "ok"

    with pytest.raises(ServiceUnavailable):
        await call(fail=True)
    clock.now += 1
    trials = [asyncio.create_task(call()) for _ in range(2)]
    while len(started) < 3:
        await asyncio.sleep(0)  # let both trials start
    with pytest.raises(CircuitBreakerError) as info:
        await call()
    assert info.value.state == "half-open"
    assert len(started) == 3  # the third never ran
    gate.set()
    assert await asyncio.gather(*trials) == ["ok", "ok"]
    assert breaker.state == "closed"


def test_sync_functions_and_context_managers() -> None:
    breaker = CircuitBreaker(failure_threshold=2, name="sync")

    @breaker
    def divide(a: int, b: int) -> float:
        return a / b

    assert divide(4, 2) == 2
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            divide(1, 0)
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerError), breaker:
        raise AssertionError("not reached")


async def test_async_context_manager_counts_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=2, name="ctx")
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            async with breaker:
                raise ServiceUnavailable
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerError):
        async with breaker:
            raise AssertionError("not reached")


@pytest.mark.parametrize(
    ("expected", "exclude"),
    [
        (ServiceUnavailable, None),
        ((ServiceUnavailable, TimeoutError), None),
        (lambda exc: isinstance(exc, ServiceUnavailable), None),
        (Exception, KeyError),
    ],
)
async def test_only_expected_exceptions_count(expected: object, exclude: object) -> None:
    breaker = CircuitBreaker(
        failure_threshold=1,
        expected_exception=expected,  # type: ignore[arg-type]
        exclude=exclude,  # type: ignore[arg-type]
        name="expected",
    )

    @breaker
    async def call(exc: Exception) -> None:
        raise exc

    for _ in range(3):
        with pytest.raises(KeyError):
            await call(KeyError("business error"))
    assert breaker.state == "closed"
    with pytest.raises(ServiceUnavailable):
        await call(ServiceUnavailable())
    assert breaker.state == "open"


async def test_cancellation_is_not_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=1, name="cancel")

    started = asyncio.Event()

    @breaker
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()  # inside the guarded call
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "closed" and breaker.failure_count == 0


async def test_metrics_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(failure_threshold=1, name="metered")

    @breaker
    async def call(ok: bool) -> None:
        if not ok:
            raise ServiceUnavailable

    def value(metric: str, **labels: str) -> float:
        found = REGISTRY.get_sample_value(metric, {"name": "metered", **labels})
        return found or 0.0

    await call(True)
    with (
        caplog.at_level(logging.INFO, "zephyr_resilience.breaker"),
        pytest.raises(ServiceUnavailable),
    ):
        await call(False)
    with pytest.raises(CircuitBreakerError):
        await call(True)
    assert value("zephyr_circuit_breaker_state") == 1
    assert value("zephyr_circuit_breaker_calls_total", outcome="success") == 1
    assert value("zephyr_circuit_breaker_calls_total", outcome="failure") == 1
    assert value("zephyr_circuit_breaker_calls_total", outcome="rejected") == 1
    assert any("'metered': closed -> open" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"recovery_timeout": -1}, "recovery_timeout"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"expected_exception": "ValueError"}, "expected_exception"),
        ({"storage": "redis://localhost:6379/0"}, "name"),
        ({"storage": "http://x", "name": "n"}, "storage"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
    assert field in str(info.value)


def test_proposal_example_shape() -> None:
    @CircuitBreaker(failure_threshold=5, recovery_timeout=60, expected_exception=ServiceUnavailable)
    async def call_external_service() -> dict[str, str]:
        return {"ok": "yes"}

    assert asyncio.run(call_external_service()) == {"ok": "yes"}


async def test_state_and_calls_on_the_metrics_endpoint() -> None:
    import httpx

    from zephyr_core._asgi import wrap

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not reached: /metrics is answered by the wrapper")

    breaker = CircuitBreaker(failure_threshold=1, name="scraped")

    @breaker
    async def call() -> None:
        raise ServiceUnavailable

    with pytest.raises(ServiceUnavailable):
        await call()
    transport = httpx.ASGITransport(app=wrap(app))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        text = (await client.get("/metrics")).text
    assert 'zephyr_circuit_breaker_state{name="scraped"} 1.0' in text
    assert 'zephyr_circuit_breaker_calls_total{name="scraped",outcome="failure"} 1.0' in text
    assert 'zephyr_circuit_breaker_transitions_total{name="scraped",to="open"} 1.0' in text
