"""LoadBalancer against real uvicorn backends: an httpx client per service, strategies,
health, ejection, NoHealthyEndpoint, status(), safe retries, bad input."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.resilience.processes import Backend
from tests.servers import free_port
from zephyr_core import ConfigError, get_settings
from zephyr_resilience import (
    CircuitBreaker,
    CircuitBreakerError,
    HealthCheck,
    LoadBalancer,
    NoHealthyEndpoint,
    RetryBudget,
)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def ports(client: httpx.AsyncClient, count: int) -> Counter[int]:
    seen: Counter[int] = Counter()
    for _ in range(count):
        response = await client.get("/who")
        response.raise_for_status()
        seen[response.json()["port"]] += 1
    return seen


async def test_client_is_an_httpx_client_on_the_chosen_endpoint(backends: list[Backend]) -> None:
    lb = LoadBalancer(services={"svc": [b.url for b in backends]}, health_check=None)
    async with lb, lb.client("svc") as client:
        assert isinstance(client, httpx.AsyncClient)
        answer = (await client.post("/echo?x=1", content=b"body")).json()
        assert answer["method"] == "POST" and answer["query"] == "x=1"
        assert answer["body"] == "body" and answer["host"] == f"127.0.0.1:{answer['port']}"
        assert await ports(client, 30) == {b.port: 10 for b in backends}
        with pytest.raises(ConfigError, match=r"'svc'.*absolute URL"):
            await client.get("http://example.com/x")
    # the pools survive a client's close: a second client reuses them
    async with lb.client("svc") as again:
        assert (await again.get("/who")).status_code == 200
    await lb.aclose()


async def test_endpoint_path_prefix_is_kept(backends: list[Backend]) -> None:
    lb = LoadBalancer(services={"svc": [backends[0].url + "/api"]}, health_check=None)
    async with lb, lb.client("svc") as client:
        assert (await client.get("/echo")).json()["path"] == "/api/echo"


async def test_weighted_sends_three_of_four(backends: list[Backend]) -> None:
    services = {"svc": [{"url": backends[0].url, "weight": 3}, backends[1].url]}
    lb = LoadBalancer(services=services, strategy="weighted", health_check=None)
    async with lb, lb.client("svc") as client:
        assert await ports(client, 40) == {backends[0].port: 30, backends[1].port: 10}


async def test_least_connections_and_p2c_serve_every_request(backends: list[Backend]) -> None:
    for strategy in ("least_connections", "p2c"):
        lb = LoadBalancer(
            services={"svc": [b.url for b in backends]}, strategy=strategy, health_check=None
        )
        async with lb, lb.client("svc") as client:
            results = await asyncio.gather(*(client.get("/who") for _ in range(30)))
            assert all(r.status_code == 200 for r in results)
            assert all(e["in_flight"] == 0 for e in lb.status()["svc"])


async def test_connect_errors_go_to_another_endpoint(backends: list[Backend]) -> None:
    lb = LoadBalancer(
        services={"svc": [dead_url(), backends[0].url]},
        strategy="round_robin",
        health_check=None,
        eject_after=100,
    )
    async with lb, lb.client("svc") as client:
        for _ in range(6):
            assert (await client.post("/who")).status_code == 200  # not sent: safe for POST
        status = lb.status()["svc"]
        assert status[0]["failures"] >= 3 and "ConnectError" in status[0]["last_error"]


async def test_passive_ejection_and_status(backends: list[Backend]) -> None:
    dead = dead_url()
    lb = LoadBalancer(
        services={"svc": [dead, backends[0].url, backends[1].url]},
        health_check=None,
        eject_after=2,
        ejection_time=60,
    )
    async with lb, lb.client("svc") as client:
        await ports(client, 12)
        entry = next(e for e in lb.status()["svc"] if e["url"] == dead)
        assert entry["ejected"] and entry["ejections"] == 1 and not entry["available"]
        assert entry["ejected_for"] > 50
        requests_before = entry["requests"]
        await ports(client, 12)
        assert next(e for e in lb.status()["svc"] if e["url"] == dead)["requests"] == (
            requests_before
        )


async def test_5xx_answers_eject_but_are_returned(backends: list[Backend]) -> None:
    lb = LoadBalancer(services={"svc": [backends[0].url]}, health_check=None, eject_after=1)
    async with lb, lb.client("svc") as client:
        assert (await client.get("/status/503")).status_code == 503
        # a lone endpoint is never ejected: that would be 100% of the service
        assert lb.status()["svc"][0]["available"]


async def test_no_healthy_endpoint_is_an_httpx_transport_error() -> None:
    lb = LoadBalancer(services={"svc": [dead_url(), dead_url()]}, health_check=None, retries=1)
    async with lb, lb.client("svc") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/who")  # both tried: the last error is raised
        for endpoint in lb._services["svc"].endpoints:
            endpoint.healthy = False
        with pytest.raises(httpx.TransportError) as info:
            await client.get("/who")
        assert isinstance(info.value, NoHealthyEndpoint)
        assert "'svc'" in str(info.value)


async def test_active_checks_mark_unhealthy_and_back(own_backends: list[Backend]) -> None:
    lb = LoadBalancer(
        services={"svc": [b.url for b in own_backends]},
        health_check=HealthCheck(endpoint="/health", interval=0.2, timeout=0.5, retries=2),
    )
    async with lb:
        await lb.wait_health_round()
        assert all(e["healthy"] for e in lb.status()["svc"])
        async with httpx.AsyncClient() as plain:
            await plain.post(own_backends[0].url + "/sick")
        await lb.wait_health_round()
        await lb.wait_health_round()
        assert [e["healthy"] for e in lb.status()["svc"]] == [False, True, True]
        async with lb.client("svc") as client:
            seen = await ports(client, 20)
        assert own_backends[0].port not in seen


async def test_post_is_not_retried_once_sent(own_backends: list[Backend]) -> None:
    frozen = own_backends[0]
    lb = LoadBalancer(
        services={"svc": [frozen.url, own_backends[1].url]},
        strategy="round_robin",
        health_check=None,
        timeout=0.3,
    )
    async with lb, lb.client("svc") as client:
        await ports(client, 4)  # warm connections to both
        frozen.freeze()
        try:
            outcomes = []
            for _ in range(2):
                try:
                    await client.post("/echo", content=b"order")
                    outcomes.append("ok")
                except httpx.ReadTimeout:
                    outcomes.append("timeout")
            assert sorted(outcomes) == ["ok", "timeout"]  # the POST to it was not resent
            # the same with GET is retried on the other endpoint
            for _ in range(2):
                assert (await client.get("/who")).json()["port"] == own_backends[1].port
        finally:
            frozen.thaw()


async def test_retry_budget_stops_amplification() -> None:
    lb = LoadBalancer(
        services={"svc": [dead_url() for _ in range(4)]},
        health_check=None,
        retries=3,
        eject_after=10_000,
        retry_budget=RetryBudget(percent=0.2, min_per_second=0),
    )
    async with lb, lb.client("svc") as client:
        for _ in range(50):
            with pytest.raises(httpx.ConnectError):
                await client.get("/who")
    attempts = sum(e["requests"] for e in lb.status()["svc"])
    assert attempts <= 50 * 1.2


async def test_breaker_per_service_fails_fast(backends: list[Backend]) -> None:
    dead = dead_url()
    lb = LoadBalancer(
        services={"down": [dead], "up": [backends[0].url]},
        health_check=None,
        retries=0,
        breaker=CircuitBreaker(failure_threshold=2, recovery_timeout=60, name="lb"),
    )
    async with lb, lb.client("down") as down, lb.client("up") as up:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                await down.get("/who")
        with pytest.raises(CircuitBreakerError):
            await down.get("/who")
        assert lb.status()["down"][0]["requests"] == 2  # no connection attempt
        assert (await up.get("/who")).status_code == 200  # its own breaker
        assert lb.status()["down"][0]["breaker"] == "open"


async def test_register_and_deregister_at_run_time(backends: list[Backend]) -> None:
    lb = LoadBalancer(services={"svc": [backends[0].url]}, health_check=None)
    async with lb, lb.client("svc") as client:
        lb.register("svc", backends[1].url)
        assert set(await ports(client, 4)) == {backends[0].port, backends[1].port}
        lb.deregister("svc", backends[0].url)
        assert set(await ports(client, 4)) == {backends[1].port}
        lb.register("new", backends[2].url)
    assert lb.services == ["new", "svc"]


def test_settings_registry_and_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SERVICE_REGISTRY", '{"users": ["http://a:8000", {"url": "http://b:8000", "weight": 2}]}'
    )
    monkeypatch.setenv("LOAD_BALANCER_STRATEGY", "p2c")
    monkeypatch.setenv("LOAD_BALANCER_HEALTH_INTERVAL", "7")
    get_settings.cache_clear()
    lb = LoadBalancer()
    assert lb.services == ["users"] and lb.strategy == "p2c"
    assert lb.health_check == HealthCheck(endpoint="/health", interval=7)
    assert [e["weight"] for e in lb.status()["users"]] == [1, 2]


@pytest.mark.parametrize(
    ("services", "kwargs", "names"),
    [
        ({"svc": []}, {}, "'svc'.*empty"),
        ({"svc": ["not a url"]}, {}, "'not a url'"),
        ({"svc": ["ftp://host"]}, {}, "ftp://host"),
        ({"svc": [{"url": "http://a", "weight": 0}]}, {}, "weight=0"),
        ({"svc": [{"url": "http://a", "weight": -2}]}, {}, "weight=-2"),
        ({"svc": ["http://a"]}, {"strategy": "fastest"}, "strategy='fastest'.*p2c"),
        ({"svc": ["http://a"]}, {"timeout": -1}, "timeout=-1"),
        ({"svc": ["http://a"]}, {"retries": -1}, "retries=-1"),
        ({"svc": ["http://a"]}, {"max_ejection_percent": 120}, "max_ejection_percent=120"),
        ({"svc": "http://a"}, {}, "list of endpoints"),
    ],
)
def test_bad_input_fails_at_construction(
    services: dict[str, object], kwargs: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        LoadBalancer(services=services, health_check=None, **kwargs)  # type: ignore[arg-type]


def test_unknown_service_names_the_known_ones() -> None:
    lb = LoadBalancer(services={"users": ["http://a"]}, health_check=None)
    with pytest.raises(ConfigError, match=r"'payments'.*users"):
        lb.client("payments")


@pytest.mark.parametrize(
    "kwargs",
    [{"interval": 0}, {"timeout": -1}, {"retries": 0}, {"endpoint": "health"}],
)
def test_bad_health_check(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        HealthCheck(**kwargs)  # type: ignore[arg-type]
