"""Real failures under load: a backend SIGKILLed, then one frozen with SIGSTOP, during 600
GETs through the balancer. No request fails; none waits past twice the timeout."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.resilience.processes import Backend
from zephyr_resilience import HealthCheck, LoadBalancer

pytestmark = pytest.mark.slow


async def drive(
    client: httpx.AsyncClient, total: int, on: dict[int, object], concurrency: int = 10
) -> tuple[int, float]:
    """Send ``total`` GETs ``concurrency`` at a time; call on[n]() once n were sent.
    Returns (failures, slowest seconds)."""
    counter = iter(range(total))
    failures = 0
    slowest = 0.0

    async def worker() -> None:
        nonlocal failures, slowest
        for number in counter:
            action = on.get(number)
            if action is not None:
                await asyncio.to_thread(action)  # type: ignore[arg-type]
            started = time.perf_counter()
            try:
                (await client.get("/who")).raise_for_status()
            except httpx.HTTPError:
                failures += 1
            slowest = max(slowest, time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures, slowest


async def wait_for(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_killed_backend_costs_no_request_and_comes_back(
    own_backends: list[Backend],
) -> None:
    victim = own_backends[0]
    interval = 0.5
    lb = LoadBalancer(
        services={"svc": [b.url for b in own_backends]},
        health_check=HealthCheck(endpoint="/health", interval=interval, timeout=0.5, retries=2),
        eject_after=3,
        ejection_time=0.5,
        timeout=2.0,
    )

    def entry() -> dict[str, object]:
        return next(e for e in lb.status()["svc"] if e["url"] == victim.url)

    killed_at: list[float] = []
    out_at: list[float] = []

    def kill() -> None:
        victim.kill()
        killed_at.append(time.monotonic())

    async def watch_ejection() -> None:
        while not killed_at or entry()["available"]:
            await asyncio.sleep(0.005)
        out_at.append(time.monotonic())

    async with lb, lb.client("svc") as client:
        await lb.wait_health_round()
        watcher = asyncio.create_task(watch_ejection())
        failures, _ = await drive(client, 600, {150: kill})
        assert failures == 0
        await asyncio.wait_for(watcher, interval + 2)
        assert out_at[0] - killed_at[0] <= interval, "not out of rotation within one interval"
        victim.start()  # the same port
        await wait_for(lambda: entry()["available"], interval * 2 + 2, "re-admission")
        seen = {(await client.get("/who")).json()["port"] for _ in range(12)}
        assert victim.port in seen


async def test_frozen_backend_costs_no_idempotent_request(own_backends: list[Backend]) -> None:
    frozen = own_backends[0]
    timeout = 0.5
    lb = LoadBalancer(
        services={"svc": [b.url for b in own_backends]},
        health_check=HealthCheck(endpoint="/health", interval=0.5, timeout=0.3, retries=1),
        eject_after=2,
        ejection_time=30,
        timeout=timeout,
    )
    async with lb, lb.client("svc") as client:
        await lb.wait_health_round()
        try:
            # Five at a time: the machine's own stalls (shared cores) stay out of the figure.
            failures, slowest = await drive(client, 600, {100: frozen.freeze}, concurrency=5)
        finally:
            frozen.thaw()
        assert failures == 0
        assert slowest <= 2 * timeout, f"a request waited {slowest:.3f}s"
        entry = next(e for e in lb.status()["svc"] if e["url"] == frozen.url)
        assert entry["failures"] >= 1
