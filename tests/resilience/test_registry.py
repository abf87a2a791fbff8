"""Registration in a private Redis: balancers see instances arrive, leave, and vanish
within the TTL after a SIGKILL; ``zephyr serve --register NAME`` announces itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.resilience.processes import Backend
from tests.servers import free_port, port_open
from zephyr_core import ConfigError
from zephyr_resilience import LoadBalancer, RedisDiscovery, register_instance

REPO = Path(__file__).resolve().parents[2]


async def wait_for(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def urls(lb: LoadBalancer, service: str) -> list[str]:
    return [entry["url"] for entry in lb.status()[service]]


async def test_instances_arrive_and_leave(redis_url: str, backends: list[Backend]) -> None:
    lb = LoadBalancer(
        health_check=None, services={}, discovery=[RedisDiscovery("inventory", redis_url)]
    )
    async with lb:
        await lb.start()
        assert urls(lb, "inventory") == []
        async with register_instance("inventory", backends[0].url, redis_url=redis_url):
            await wait_for(lambda: urls(lb, "inventory") == [backends[0].url], 5, "arrival")
            async with lb.client("inventory") as client:
                assert (await client.get("/who")).json()["port"] == backends[0].port
        # a clean exit leaves at once (published), long before the TTL
        await wait_for(lambda: urls(lb, "inventory") == [], 2, "departure")


@pytest.mark.slow
async def test_zephyr_serve_register_and_sigkill(redis_url: str) -> None:
    port = free_port()
    ttl = 10.0  # register_instance's default, which `zephyr serve --register` uses
    env = {**os.environ, "PYTHONPATH": str(REPO), "CACHE_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zephyr_core", "serve", "--app", "tests.resilience.backend:app",
         "--port", str(port), "--register", "inventory", "--log-level", "warning"],
        cwd=REPO, env=env,
    )  # fmt: skip
    lb = LoadBalancer(
        health_check=None,
        services={},
        discovery=[RedisDiscovery("inventory", redis_url, interval=0.5)],
    )
    try:
        async with lb:
            await lb.start()
            expected = f"http://127.0.0.1:{port}"
            await wait_for(lambda: urls(lb, "inventory") == [expected], 30, "registration")
            assert port_open(port)
            async with lb.client("inventory") as client:
                assert (await client.get("/who")).status_code == 200
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            gone_after = await wait_for(lambda: urls(lb, "inventory") == [], ttl + 1, "expiry")
            assert gone_after <= ttl
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
async def test_zephyr_serve_register_leaves_at_sigterm(redis_url: str) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CACHE_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zephyr_core", "serve", "--app", "tests.resilience.backend:app",
         "--port", str(port), "--register", "inventory", "--log-level", "warning"],
        cwd=REPO, env=env,
    )  # fmt: skip
    lb = LoadBalancer(
        health_check=None, services={}, discovery=[RedisDiscovery("inventory", redis_url)]
    )
    try:
        async with lb:
            await lb.start()
            await wait_for(lambda: len(urls(lb, "inventory")) == 1, 30, "registration")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 20) == 0
            # withdrawn at shutdown (published), not left to the 10 s TTL
            assert await wait_for(lambda: urls(lb, "inventory") == [], 3, "departure") < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_register_rejects_bad_input() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zephyr_core", "serve", "--app", "tests.resilience.backend:app",
         "--port", str(free_port()), "--register", "inventory", "--workers", "2"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--register works with one worker" in done.stderr
    assert "Traceback" not in done.stderr


def test_register_instance_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="malformed URL"):
        register_instance("svc", "not a url", redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="ttl=0"):
        register_instance("svc", "http://a:1", redis_url="redis://127.0.0.1:6379/0", ttl=0)
