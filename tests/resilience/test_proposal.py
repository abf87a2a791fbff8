"""The proposal's load balancing and circuit breaker examples, as written (imports adapted),
against real backends."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from tests.resilience.processes import Backend
from zephyr_core import get_settings
from zephyr_resilience import CircuitBreaker, CircuitBreakerError, HealthCheck, LoadBalancer


async def test_load_balancing_example(
    backends: list[Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the proposal's service_registry dict, given through the SERVICE_REGISTRY setting
    service_registry = {
        "user_service": [b.url for b in backends],
        "payment_service": [backends[0].url, backends[1].url],
    }
    monkeypatch.setenv("SERVICE_REGISTRY", json.dumps(service_registry))
    get_settings.cache_clear()

    app = FastAPI()
    load_balancer = LoadBalancer(
        strategy="round_robin",  # round_robin, least_connections, weighted
        health_check=HealthCheck(endpoint="/health", interval=30, timeout=5, retries=3),
    )

    @app.get("/user/{user_id}")
    async def get_user_proxy(user_id: int) -> dict[str, object]:
        async with load_balancer.client("user_service") as client:
            response = await client.get(f"/users/{user_id}")
            return dict(response.json())

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        ports = {(await client.get("/user/1")).json()["port"] for _ in range(3)}
    assert ports == {b.port for b in backends}
    assert load_balancer.services == ["payment_service", "user_service"]
    await load_balancer.aclose()


class ServiceUnavailable(Exception):
    pass


async def test_circuit_breaker_example(backends: list[Backend]) -> None:
    url = backends[0].url + "/status/503"

    @CircuitBreaker(failure_threshold=5, recovery_timeout=60, expected_exception=ServiceUnavailable)
    async def call_external_service() -> object:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
            if response.status_code >= 500:
                raise ServiceUnavailable("External service error")
            return response.json()

    for _ in range(5):
        with pytest.raises(ServiceUnavailable):
            await call_external_service()
    with pytest.raises(CircuitBreakerError):
        await call_external_service()
    name = "test_circuit_breaker_example.<locals>.call_external_service"
    assert REGISTRY.get_sample_value("zephyr_circuit_breaker_state", {"name": name}) == 1
