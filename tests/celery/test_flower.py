"""A real `zephyr jobs flower` with basic auth beside a real worker, on a Redis whose URL
holds a password: the REST API lists the jobs with auth and answers 401 without, the
health check needs no login, and no page shows the password."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.celery.jobs_processes import Procs, child_env, with_password
from tests.servers import RedisServer, free_port, wait_until
from zephyr_celery import create_app
from zephyr_celery._flower import flower_argv, flower_url, is_loopback_address
from zephyr_core import ConfigError, Settings

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


def _healthy(base: str) -> bool:
    response = _get(f"{base}/healthcheck")
    return response is not None and response.status_code == 200


def _basic(credentials: str) -> dict[str, str]:
    """An Authorization header carrying ``credentials`` as they are, colon or not."""
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.mark.slow
def test_a_comma_cannot_smuggle_in_a_password_only_user(tmp_path: Path, redis_url: str) -> None:
    """Flower splits FLOWER_BASIC_AUTH on commas: 'admin:Str0ngPass,word' would let in
    anyone who sends just 'word'. It is refused before Flower starts, password unshown."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(JOB_QUEUE_URL=redis_url, FLOWER_BASIC_AUTH="admin:Str0ngPass,word")
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        flower = procs.zephyr("flower", "jobs", "flower", "--port", str(port))
        wait_until(lambda: not flower.alive() or _healthy(base), 60, "Flower to start or refuse")
        word_only = _get(f"{base}/api/workers", headers=_basic("word"))
        assert word_only is None or word_only.status_code == 401, "'word' alone got in"
        assert flower.popen.wait(30) == 2
    output = flower.text()
    assert "Traceback" not in output
    assert "FLOWER_BASIC_AUTH='***'" in output
    assert "user:password" in output
    assert "Str0ngPass" not in output


@pytest.mark.slow
def test_only_the_configured_pairs_get_in(tmp_path: Path, redis_url: str) -> None:
    """A list of user:password pairs, said explicitly: each pair gets in, nothing else."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(
        JOB_QUEUE_URL=redis_url,
        FLOWER_BASIC_AUTH="admin:Str0ngPass,ops:an0ther:pass",
    )
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        flower = procs.zephyr("flower", "jobs", "flower", "--port", str(port))
        wait_until(lambda: _healthy(base), 60, "Flower's health check")
        allowed = ("admin:Str0ngPass", "ops:an0ther:pass")
        refused = (
            "Str0ngPass", "word", "admin", "admin:", ":Str0ngPass", "admin:wrong",
            "ops:an0ther", "an0ther:pass", "admin:an0ther:pass",
            "admin:Str0ngPass,ops:an0ther:pass",
        )  # fmt: skip
        for credentials in allowed:
            response = httpx.get(f"{base}/api/workers", headers=_basic(credentials), timeout=10)
            assert response.status_code == 200, credentials
        for credentials in refused:
            response = httpx.get(f"{base}/api/workers", headers=_basic(credentials), timeout=10)
            assert response.status_code == 401, credentials
        assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
        assert flower.alive()
    assert "Str0ngPass" not in flower.text() and "an0ther" not in flower.text()


@pytest.mark.parametrize(
    "value",
    [
        "admin:Str0ngPass,word",
        "admin:pw,",
        ",admin:pw",
        "admin:pw,:x",
        "admin:pw,bob:",
        "admin:pw, bob:x",
    ],
)
def test_every_comma_separated_entry_must_be_a_user_password_pair(value: str) -> None:
    with pytest.raises(
        ConfigError, match=r"FLOWER_BASIC_AUTH='\*\*\*': expected 'user:password'"
    ) as info:
        Settings(FLOWER_BASIC_AUTH=value)
    assert info.value.field == "FLOWER_BASIC_AUTH"
    for secret in ("Str0ngPass", "pw"):
        assert secret not in str(info.value).replace("password", "")


def test_a_non_ascii_login_is_refused_before_flower_answers_500_to_everyone() -> None:
    with pytest.raises(ConfigError, match=r"FLOWER_BASIC_AUTH='\*\*\*': .* in ASCII") as info:
        Settings(FLOWER_BASIC_AUTH="admin:geh\u00ebim")
    assert "geh" not in str(info.value)
