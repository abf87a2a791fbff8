"""`zephyr serve`: a real uvicorn process with /health, /health/ready and /metrics."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import httpx

from tests.core.conftest import wait_for_http
from tests.servers import RedisServer, free_port

SHOP = "examples.shop.app:app"


def redis_env(server: RedisServer) -> dict[str, str]:
    return {"JOB_QUEUE_URL": server.url(0), "CACHE_URL": server.url(1)}


def test_serves_the_app_with_health_and_metrics(spawn: Any, redis_server: RedisServer) -> None:
    port = free_port()
    web = spawn("serve", "--app", SHOP, "--port", str(port), env=redis_env(redis_server))
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health/ready", web)

    assert httpx.get(f"{base}/products/1").json()["name"] == "kite"
    assert httpx.get(f"{base}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/health/ready").json()
    assert ready["status"] == "ready" and ready["checks"]["redis"]["ok"] is True
    summary = httpx.get(f"{base}/health").json()
    assert summary["status"] == "ok" and "uptime_seconds" in summary
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'zephyr_http_requests_total{method="GET",status="200"}' in metrics.text
    assert 'zephyr_ready_check{check="redis"} 1.0' in metrics.text


def test_ready_turns_503_naming_redis_when_it_stops(spawn: Any, own_redis: RedisServer) -> None:
    port = free_port()
    web = spawn("serve", "--app", SHOP, "--port", str(port), env=redis_env(own_redis))
    url = f"http://127.0.0.1:{port}/health/ready"
    wait_for_http(url, web)

    own_redis.stop()
    response = httpx.get(url, timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "degraded"

    own_redis.start()
    assert httpx.get(url, timeout=5).status_code == 200  # recovers on the next request


def test_registered_checks_are_run(spawn: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    (tmp_path / "withcheck.py").write_text(
        textwrap.dedent(
            """
            from zephyr_core import register_check

            async def payments_down():
                raise ConnectionError("payments gateway refused")

            register_check("payments", payments_down, timeout=1)

            async def app(scope, receive, send):
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            """
        )
    )
    port = free_port()
    web = spawn("serve", "--app", "withcheck:app", "--port", str(port), env=redis_env(redis_server))
    wait_for_http(f"http://127.0.0.1:{port}/health/ready", web, status=503)
    body = httpx.get(f"http://127.0.0.1:{port}/health/ready").json()
    assert body["failed"] == ["payments"]
    assert "payments gateway refused" in body["checks"]["payments"]["error"]
    assert httpx.get(f"http://127.0.0.1:{port}/anything").status_code == 204


def test_several_workers(spawn: Any, redis_server: RedisServer) -> None:
    port = free_port()
    web = spawn(
        "serve", "--app", SHOP, "--port", str(port), "--workers", "2", env=redis_env(redis_server)
    )
    wait_for_http(f"http://127.0.0.1:{port}/health/ready", web, timeout=40)
    assert httpx.get(f"http://127.0.0.1:{port}/products").status_code == 200


def run_to_exit(spawn: Any, *args: str) -> tuple[int, str]:
    process = spawn("serve", *args)
    code = process.wait(30)
    return code, process.output()


def test_module_that_does_not_exist(spawn: Any) -> None:
    code, output = run_to_exit(spawn, "--app", "nosuch:app")
    assert code == 2
    assert "no module named 'nosuch'" in output
    assert "Traceback" not in output


def test_attribute_that_is_not_an_asgi_app(spawn: Any) -> None:
    code, output = run_to_exit(spawn, "--app", "examples.shop.app:PRODUCTS")
    assert code == 2
    assert "dict object is not an ASGI application" in output
    assert "Traceback" not in output


def test_missing_attribute(spawn: Any) -> None:
    code, output = run_to_exit(spawn, "--app", "examples.shop.app:nothing")
    assert code == 2 and "has no attribute 'nothing'" in output


def test_no_app_given(spawn: Any) -> None:
    code, output = run_to_exit(spawn)
    assert code == 2 and "pass --app module:attribute or set ZEPHYR_APP" in output


def test_port_in_use(spawn: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_to_exit(spawn, "--app", SHOP, "--port", str(port))
    assert code == 1
    assert output.strip() == f"error: port {port} on 127.0.0.1 is already in use"
