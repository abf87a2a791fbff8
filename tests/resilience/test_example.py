"""examples/shop calls examples/inventory (a real `zephyr serve` process) through its
load balancer and breaker; `zephyr up` starts SERVICE_REGISTRY entries that name an app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, port_open, wait_until
from zephyr_core import ConfigError, Settings, get_settings
from zephyr_resilience._up import processes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def shop(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zephyr_core", "serve", "--app", "examples.inventory.app:app",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 30, "the inventory service")
        registry = {"inventory": [f"http://127.0.0.1:{port}"]}
        monkeypatch.setenv("SERVICE_REGISTRY", json.dumps(registry))
        get_settings.cache_clear()
        from examples.shop import inventory
        from examples.shop.app import app

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            yield client, proc.pid
        await inventory.close_inventory()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
async def test_shop_reads_stock_through_the_balancer(
    shop: tuple[httpx.AsyncClient, int],
) -> None:
    client, inventory_pid = shop
    answer = await client.get("/products/1/stock")
    assert answer.status_code == 200
    assert answer.json()["in_stock"] == 12
    assert (await client.get("/products/99/stock")).status_code == 404
    os.kill(inventory_pid, signal.SIGKILL)
    statuses = [(await client.get("/products/1/stock")) for _ in range(7)]
    assert [r.status_code for r in statuses] == [503] * 7
    # five failures open the shop's breaker: then it answers without trying
    assert "unreachable" in statuses[0].json()["detail"]
    assert "circuit breaker 'shop.inventory' is open" in statuses[-1].json()["detail"]


def test_up_starts_local_services_that_name_an_app() -> None:
    settings = Settings(
        SERVICE_REGISTRY={
            "inventory": [{"url": "http://127.0.0.1:8001", "app": "examples.inventory.app:app"}],
            "payments": ["http://payments:8000"],
            "remote": [{"url": "http://10.0.0.9:8000", "app": "x.app:app"}],
        }
    )
    specs = processes(settings, {})
    assert [spec.name for spec in specs] == ["inventory"]
    argv = specs[0].argv
    assert argv[1:] == ["-m", "zephyr_core", "serve", "--app", "examples.inventory.app:app",
                        "--host", "127.0.0.1", "--port", "8001"]  # fmt: skip
    assert specs[0].url == "http://127.0.0.1:8001"


def test_up_refuses_a_malformed_app() -> None:
    settings = Settings(SERVICE_REGISTRY={"svc": [{"url": "http://127.0.0.1:1", "app": "nope"}]})
    with pytest.raises(ConfigError, match=r"SERVICE_REGISTRY"):
        processes(settings, {})


def test_settings_refuse_a_bad_registry() -> None:
    with pytest.raises(ConfigError, match=r"SERVICE_REGISTRY.*weight=0"):
        Settings(SERVICE_REGISTRY={"svc": [{"url": "http://a:1", "weight": 0}]})
    with pytest.raises(ConfigError, match=r"SERVICE_REGISTRY.*'svc'.*empty"):
        Settings(SERVICE_REGISTRY={"svc": []})
    with pytest.raises(ConfigError, match=r"SERVICE_REGISTRY.*'ftp://a'"):
        Settings(SERVICE_REGISTRY={"svc": ["ftp://a"]})
    assert Settings(LOAD_BALANCER_STRATEGY="p2c").LOAD_BALANCER_STRATEGY == "p2c"
