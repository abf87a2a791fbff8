"""Stats on /metrics and in `zephyr cache stats`, `zephyr cache clear`, the readiness check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY, generate_latest

from tests.cache.conftest import REPO
from tests.servers import RedisServer
from zephyr_cache import configure, get_cache
from zephyr_cache._health import checks
from zephyr_core import Settings
from zephyr_core._health import run_checks

APP = """
from zephyr_cache import configure
configure({
    "default": {"backend": "redis", "url": "%s", "timeout": 300},
    "local": {"backend": "memory", "max_size": 100},
    "hot": {"backend": "tiered", "tiers": ["local", "default"]},
})
"""


async def test_stats_are_exported_to_prometheus(redis_url: str) -> None:
    configure({"default": {"backend": "redis", "url": redis_url}})
    cache = get_cache()
    await cache.set("k", 1)
    await cache.get("k")
    await cache.get("k")
    await cache.get("miss")
    text = generate_latest(REGISTRY).decode()
    assert 'zephyr_cache_requests_total{cache="default",result="hit",tier="all"} 2.0' in text
    assert 'zephyr_cache_requests_total{cache="default",result="miss",tier="all"} 1.0' in text
    assert 'zephyr_cache_hit_ratio{cache="default"} 0.666' in text
    assert 'zephyr_cache_errors_total{cache="default",tier="default"} 0.0' in text


async def test_readiness_check_covers_every_redis_tier(own_redis: RedisServer) -> None:
    configure({"default": {"backend": "redis", "url": own_redis.url(3).replace("//", "//:pw@")}})
    (check,) = checks(Settings())
    assert check.name == "cache"
    configure({"default": {"backend": "redis", "url": own_redis.url(3)}})
    assert (await run_checks([check]))["cache"]["ok"] is True
    configure({"default": {"backend": "redis", "url": own_redis.url(3).replace("//", "//:pw@")}})
    own_redis.kill()
    result = (await run_checks([check]))["cache"]
    assert result["ok"] is False
    assert "cache default at redis://:***@127.0.0.1" in result["error"]
    assert "pw@" not in result["error"]


async def test_readiness_check_leaves_settings_cache_url_to_the_core_check() -> None:
    # Not configured: the default cache is CACHE_URL, which zephyr_core already probes.
    (check,) = checks(Settings(CACHE_URL="redis://127.0.0.1:1/0"))
    assert (await run_checks([check]))["cache"]["ok"] is True


async def test_readiness_check_is_empty_for_memory_caches() -> None:
    configure({"default": {"backend": "memory"}})
    (check,) = checks(Settings())
    assert (await run_checks([check]))["cache"]["ok"] is True


USE = """
import asyncio
from zephyr_cache import close_caches, get_cache
import caches

async def main():
    default, hot = get_cache(), get_cache("hot")
    await hot.wait_ready()
    await default.set("k", 1)
    for key in ("k", "k", "absent"):
        await default.get(key)
    await hot.set("h", 1)
    await hot.get("h")
    await close_caches()  # flushes this process's counters to Redis

asyncio.run(main())
"""


async def test_counters_are_shared_through_redis(redis_url: str) -> None:
    from zephyr_cache._registry import _connectors
    from zephyr_cache._shared_stats import read, shared

    configure({"default": {"backend": "redis", "url": redis_url}})
    cache = get_cache()
    await cache.get("miss")
    await cache.set("k", 1)
    await cache.get("k")
    await shared.flush()
    await shared.flush()  # nothing new: nothing added twice
    await cache.get("k")
    await shared.flush()
    counts = (await read(_connectors["default"], "zephyr"))["default"]
    assert counts["all"] == {"hits": 2, "misses": 1, "errors": 0, "hit_ratio": 0.6667}
    assert counts["default"]["hits"] == 2


def zephyr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zephyr_core", "cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.slow
def test_cli_stats_and_clear(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "caches.py").write_text(APP % redis_url)
    (tmp_path / "use.py").write_text(USE)
    used = subprocess.run(
        [sys.executable, "use.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path}"},
    )
    assert used.returncode == 0, used.stderr
    client = redis.Redis.from_url(redis_url)
    client.delete("zephyr:1:k", "zephyr:1:h")
    client.set("zephyr:1:a", b"1")
    client.set("zephyr:1:b", b"2")
    client.set("unrelated", b"x")

    shown = zephyr("-A", "caches", "stats", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = {row["cache"]: row for row in json.loads(shown.stdout)}
    assert set(rows) == {"default", "local", "hot"}
    assert rows["default"]["redis"]["reachable"] is True
    assert rows["default"]["redis"]["keys"] == 2
    app = rows["default"]["redis"]["app"]  # counters of the process that ran use.py
    assert (app["all"]["hits"], app["all"]["misses"]) == (2, 1)
    assert rows["hot"]["redis"]["app"]["local"]["hits"] == 1
    assert rows["hot"]["tiers"] == ["local", "default"]
    assert rows["local"]["max_size"] == 100 and "redis" not in rows["local"]
    table = zephyr("-A", "caches", "stats", cwd=tmp_path)
    assert table.returncode == 0 and "default" in table.stdout and "ok" in table.stdout

    cleared = zephyr("-A", "caches", "clear", "default", cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared cache 'default'" in cleared.stdout
    assert sorted(client.keys("*")) == [b"__zephyr_cache_stats__:zephyr", b"unrelated"]

    local = zephyr("-A", "caches", "clear", "local", cwd=tmp_path)
    assert local.returncode == 2 and "lives inside each app process" in local.stderr

    unknown = zephyr("-A", "caches", "clear", "nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no cache named 'nope' (configured: default, hot, local)" in unknown.stderr
    client.close()


def test_cli_reports_an_unreachable_redis(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    (tmp_path / "caches.py").write_text(APP % url)
    cleared = zephyr("-A", "caches", "clear", "default", cwd=tmp_path)
    assert cleared.returncode == 1
    assert "unreachable" in cleared.stderr and "Traceback" not in cleared.stderr
    shown = zephyr("-A", "caches", "stats", "--json", cwd=tmp_path)
    assert shown.returncode == 1
    assert "secret" not in shown.stdout + shown.stderr
    rows = {row["cache"]: row for row in json.loads(shown.stdout)}
    assert rows["default"]["redis"]["reachable"] is False


async def test_zephyr_serve_exposes_cache_metrics_and_readiness(redis_url: str) -> None:
    import httpx

    from examples.shop import profiles
    from zephyr_core._asgi import HealthApp

    configure({"default": {"backend": "redis", "url": redis_url}})
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(profiles.router)
    served = HealthApp(app, checks(Settings()))  # what `zephyr serve` wraps an app with
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        assert (await client.get("/profiles/2")).status_code == 200
        assert (await client.get("/profiles/2")).status_code == 200
        metrics = (await client.get("/metrics")).text
        ready = (await client.get("/health/ready")).json()
    lines = [line for line in metrics.splitlines() if line.startswith("zephyr_cache_requests")]
    hit = 'zephyr_cache_requests_total{cache="default",result="hit",tier="all"} 1.0'
    assert hit in lines, lines
    assert ready["checks"]["cache"]["ok"] is True


def test_counters_reach_redis_at_exit_without_close(redis_url: str) -> None:
    from tests.cache.conftest import python

    code = (
        "import asyncio, sys\n"
        "from zephyr_cache import configure, get_cache\n"
        "configure({'default': {'backend': 'redis', 'url': sys.argv[1]}})\n"
        "async def main():\n"
        "    c = get_cache()\n"
        "    await c.set('k', 1)\n"
        "    await c.get('k')\n"
        "    await c.get('nope')\n"
        "asyncio.run(main())\n"  # no close_caches(): the exit hook flushes
    )
    done = python(code, redis_url)
    assert done.returncode == 0, done.stderr
    client = redis.Redis.from_url(redis_url)
    counts = client.hgetall("__zephyr_cache_stats__:zephyr")
    client.close()
    assert counts[b"default|all|hits"] == b"1" and counts[b"default|all|misses"] == b"1"
