"""A real `zephyr jobs flower` with basic auth beside a real worker, on a Redis whose URL
holds a password: the REST API lists the jobs with auth and answers 401 without, the
health check needs no login, and no page shows the password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.celery.jobs_processes import Procs, child_env, with_password
from tests.servers import RedisServer, free_port, wait_until
from zephyr_celery import create_app
from zephyr_celery._flower import flower_argv, flower_url, is_loopback_address
from zephyr_core import Settings

JOBS = """
from zephyr_celery import job


@job(retry=0)
async def add(a: int, b: int) -> int:
    return a + b
"""

AUTH = ("admin", "pw-for-flower")


def _get(url: str, **kwargs: Any) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5, **kwargs)
    except httpx.TransportError:
        return None


@pytest.mark.slow
def test_flower_shows_the_jobs_to_its_users_only(tmp_path: Path, own_redis: RedisServer) -> None:
    url = with_password(own_redis.url(0))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "flower_jobs.py").write_text(JOBS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(tmp_path / "app", JOB_QUEUE_URL=url, FLOWER_BASIC_AUTH=":".join(AUTH))
    app = create_app(Settings(JOB_QUEUE_URL=url))
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        worker = procs.zephyr("worker", "jobs", "worker", "-A", "flower_jobs", "-P", "solo")
        flower = procs.zephyr("flower", "jobs", "flower", "-A", "flower_jobs", "--port", str(port))
        wait_until(lambda: "ready." in worker.text(), 60, "the worker")

        def healthy() -> bool:
            response = _get(f"{base}/healthcheck")
            return response is not None and response.status_code == 200

        wait_until(healthy, 60, "Flower's health check (no login needed)")
        ids = [app.send_task("flower_jobs.add", args=[n, 1]).id for n in range(3)]
        for n, job_id in enumerate(ids):
            assert app.AsyncResult(job_id).get(timeout=30) == n + 1

        def flower_saw_them() -> bool:
            response = _get(f"{base}/api/tasks", auth=AUTH)
            assert response is not None and response.status_code == 200
            tasks = response.json()
            return all(tasks.get(i, {}).get("state") == "SUCCESS" for i in ids)

        wait_until(flower_saw_them, 30, "Flower to list the three jobs")
        tasks = httpx.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
        assert {tasks[i]["name"] for i in ids} == {"flower_jobs.add"}

        assert httpx.get(f"{base}/api/tasks", timeout=5).status_code == 401
        assert httpx.get(f"{base}/api/tasks", auth=("admin", "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"{base}/", timeout=5).status_code == 401

        def worker_listed() -> bool:
            response = _get(f"{base}/api/workers?refresh=1", auth=AUTH)
            return response is not None and bool(response.json())

        wait_until(worker_listed, 30, "Flower to list the worker")
        (worker_name,) = httpx.get(f"{base}/api/workers", auth=AUTH, timeout=5).json()
        pages = {
            path: httpx.get(f"{base}{path}", auth=AUTH, timeout=10)
            for path in ("/broker", f"/worker/{worker_name}", "/tasks", "/workers")
        }
        for path, page in pages.items():
            assert page.status_code == 200, path
            assert "s3cret" not in page.text, path
        # The broker page names the broker, password masked.
        assert "zuser:" in pages["/broker"].text
        assert "flower_jobs.add" in pages[f"/worker/{worker_name}"].text
        assert flower.alive()
    assert "s3cret" not in flower.text() and "s3cret" not in worker.text()
    assert AUTH[1] not in flower.text()
    app.close()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.1.2.3", False),
        ("flower.internal", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_the_password_goes_to_flower_inside_the_process() -> None:
    with_auth = Settings(FLOWER_BASIC_AUTH="admin:pw")
    assert flower_argv(with_auth, port=5555, address="0.0.0.0") == [
        "flower", "--port=5555", "--address=0.0.0.0", "--basic-auth=admin:pw",
    ]  # fmt: skip
    assert "--basic-auth" not in " ".join(flower_argv(Settings(), port=1, address="127.0.0.1"))
    assert flower_url("0.0.0.0", 5555) == "http://127.0.0.1:5555"
    assert flower_url("::1", 5555) == "http://[::1]:5555"
