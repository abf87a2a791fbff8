"""/health/ready and /metrics for Sentinel and Cluster URLs, against real topologies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from tests.servers import RedisClusterServers, SentinelTopology, free_port, wait_until
from zephyr_core import Settings
from zephyr_core._asgi import HealthApp, Message, Receive, Scope, Send
from zephyr_core._health import checks_for


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    message: Message = {"type": "http.response.start", "status": 404, "headers": []}
    await send(message)
    await send({"type": "http.response.body", "body": b""})


def _get(settings: Settings, path: str, only: str = "") -> httpx.Response:
    """GET ``path`` from the health app for ``settings`` (checks whose name has ``only``)."""

    async def get() -> httpx.Response:
        app = HealthApp(_app, [c for c in checks_for(settings) if only in c.name])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(get())


def _ready(settings: Settings, only: str = "") -> tuple[int, dict[str, Any]]:
    response = _get(settings, "/health/ready", only)
    return response.status_code, json.loads(response.text)


def test_one_sentinel_master_behind_every_url_is_one_check_naming_the_master(
    sentinel_topology: SentinelTopology,
) -> None:
    settings = Settings(JOB_QUEUE_URL=sentinel_topology.url(0), CACHE_URL=sentinel_topology.url(1))
    status, body = _ready(settings)
    assert status == 200, body
    check = body["checks"]["redis"]
    host, port = sentinel_topology.master_address()
    assert check["ok"] and check["kind"] == "sentinel" and check["master"] == f"{host}:{port}"
    assert check["settings"] == ["JOB_QUEUE_URL", "JOB_RESULT_URL", "CACHE_URL"]
    assert check["sentinels"] == 3


def test_sentinel_and_cluster_urls_each_get_a_check_and_a_failover_counter(
    sentinel_topology: SentinelTopology, redis_cluster: RedisClusterServers
) -> None:
    settings = Settings(JOB_QUEUE_URL=sentinel_topology.url(), CACHE_URL=redis_cluster.url())
    status, body = _ready(settings)
    assert status == 200, body
    sentinel = body["checks"]["redis@sentinel:mymaster"]
    assert sentinel["kind"] == "sentinel" and sentinel["settings"] == [
        "JOB_QUEUE_URL",
        "JOB_RESULT_URL",
    ]
    (cluster,) = [check for name, check in body["checks"].items() if "cluster" in name]
    assert cluster["kind"] == "cluster" and cluster["cluster_state"] == "ok"
    assert sorted(cluster["masters"]) == sorted(
        f"127.0.0.1:{port}" for port in redis_cluster.master_ports()
    )
    metrics = _get(settings, "/metrics").text
    assert f'zephyr_redis_failovers_total{{url="{sentinel_topology.url()}"}} 0.0' in metrics


def test_a_dead_sentinel_is_skipped(sentinel_topology: SentinelTopology) -> None:
    live = sentinel_topology.sentinel_addresses()[0][1]
    url = (
        f"sentinel://127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()};"
        f"sentinel://127.0.0.1:{live}/0?master_name=mymaster"
    )
    status, body = _ready(Settings(JOB_QUEUE_URL=url, CACHE_BACKEND="memory"))
    assert status == 200, body
    host, port = sentinel_topology.master_address()
    assert body["checks"]["redis"]["master"] == f"{host}:{port}"


def test_not_ready_when_no_sentinel_answers() -> None:
    ports = [free_port() for _ in range(3)]
    url = ";".join(f"sentinel://:pw@127.0.0.1:{port}" for port in ports) + "/0?master_name=m"
    status, body = _ready(Settings(JOB_QUEUE_URL=url, CACHE_BACKEND="memory"))
    assert status == 503 and body["failed"] == ["redis"]
    check = body["checks"]["redis"]
    assert check["kind"] == "sentinel" and not check["ok"]
    assert "no up master known for 'm' by 3 Sentinel(s)" in check["error"]
    assert all(f"127.0.0.1:{port}: ConnectionError" in check["error"] for port in ports)
    assert ":pw@" not in json.dumps(body)


def test_not_ready_when_the_sentinels_know_no_such_master(
    sentinel_topology: SentinelTopology,
) -> None:
    url = sentinel_topology.url().replace("master_name=mymaster", "master_name=other")
    status, body = _ready(Settings(JOB_QUEUE_URL=url, CACHE_BACKEND="memory"))
    assert status == 503
    assert "No such master with that name" in body["checks"]["redis"]["error"]


def test_ready_names_the_new_master_after_a_failover_and_counts_it_once(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    servers = own_sentinel_topology(password="redis-pw", sentinel_password="sentinel-pw")
    settings = Settings(JOB_QUEUE_URL=servers.url(), CACHE_BACKEND="memory")
    status, body = _ready(settings)
    old = servers.master_address()
    assert status == 200 and body["checks"]["redis"]["master"] == "{}:{}".format(*old)

    killed = servers.kill_master()
    seen: list[tuple[int, dict[str, Any]]] = []

    def ready_on_the_new_master() -> bool:
        seen.append(_ready(settings))
        status, body = seen[-1]
        return status == 200 and body["checks"]["redis"]["master"] != "{}:{}".format(*killed)

    wait_until(ready_on_the_new_master, 30, "/health/ready on the new master")
    new = servers.master_address()
    assert seen[-1][1]["checks"]["redis"]["master"] == "{}:{}".format(*new)
    shown = json.dumps(seen) + _get(settings, "/metrics").text
    assert "redis-pw" not in shown and "sentinel-pw" not in shown
    masked = settings.redis_topology(settings.JOB_QUEUE_URL).masked
    assert f'zephyr_redis_failovers_total{{url="{masked}"}} 1.0' in shown


def test_a_cluster_with_a_dead_master_is_not_ready_until_a_replica_takes_over(
    own_redis_cluster: Callable[..., RedisClusterServers], redis_url: str
) -> None:
    cluster = own_redis_cluster()
    settings = Settings(JOB_QUEUE_URL=redis_url, CACHE_URL=cluster.url())
    (name,) = [check.name for check in checks_for(settings) if "cluster" in check.name]
    assert _ready(settings, only="cluster")[0] == 200
    old = cluster.kill_master(0)
    status, body = _ready(settings, only="cluster")
    assert status == 503, body
    error = body["checks"][name]["error"]
    assert "{}:{}".format(*old) in error or "cluster_state is 'fail'" in error
    cluster.wait_promoted(old)
    wait_until(
        lambda: _ready(settings, only="cluster")[0] == 200, 15, "/health/ready after the promotion"
    )
    assert (
        "{}:{}".format(*old) not in _ready(settings, only="cluster")[1]["checks"][name]["masters"]
    )
