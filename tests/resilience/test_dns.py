"""DNS discovery against a real (small) DNS server: records added and removed are
followed on the next resolution."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.resilience.dns_server import DnsServer
from tests.resilience.processes import Backend
from zephyr_core import ConfigError
from zephyr_resilience import DnsDiscovery, LoadBalancer


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.close()


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.01)


async def test_resolves_a_and_aaaa(dns_server: DnsServer) -> None:
    dns_server.records["inventory.shop"] = ["10.0.0.2", "10.0.0.1", "fd00::5"]
    source = DnsDiscovery(
        "inventory", "inventory.shop", 8000, nameservers=["127.0.0.1"],
        nameserver_port=dns_server.port, path="/api",
    )  # fmt: skip
    assert [spec.url for spec in await source.resolve()] == [
        "http://10.0.0.1:8000/api",
        "http://10.0.0.2:8000/api",
        "http://[fd00::5]:8000/api",
    ]
    dns_server.records.pop("inventory.shop")
    assert await source.resolve() == []  # NXDOMAIN: no instances


async def test_balancer_follows_the_records(dns_server: DnsServer, backends: list[Backend]) -> None:
    # All three backends listen on 127.0.0.1; the records pick which loopback addresses
    # name instances, so use one backend's port and vary 127.0.0.x.
    port = backends[0].port
    dns_server.records["inventory.local"] = ["127.0.0.1"]
    source = DnsDiscovery(
        "inventory", "inventory.local", port, interval=0.1, nameservers=["127.0.0.1"],
        nameserver_port=dns_server.port,
    )  # fmt: skip
    lb = LoadBalancer(services={}, health_check=None, discovery=[source])

    def urls() -> list[str]:
        return [e["url"] for e in lb.status()["inventory"]]

    async with lb:
        await lb.start()
        await wait_for(lambda: urls() == [f"http://127.0.0.1:{port}"], 5, "first resolution")
        async with lb.client("inventory") as client:
            assert (await client.get("/who")).json()["port"] == port
        dns_server.records["inventory.local"] = ["127.0.0.1", "127.0.0.2"]
        await wait_for(lambda: len(urls()) == 2, 5, "a new record")
        dns_server.records["inventory.local"] = ["127.0.0.2"]
        await wait_for(lambda: urls() == [f"http://127.0.0.2:{port}"], 5, "a removed record")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"host": ""}, "host"), ({"port": 0}, "port"), ({"scheme": "ftp"}, "scheme"),
     ({"interval": 0}, "interval")],
)  # fmt: skip
def test_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    options: dict[str, object] = {"host": "x", "port": 80, **kwargs}
    with pytest.raises(ConfigError, match=field):
        DnsDiscovery("svc", **options)  # type: ignore[arg-type]
