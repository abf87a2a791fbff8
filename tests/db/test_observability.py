"""/health/ready, /metrics and `zephyr db status`, against the real replica set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client import REGISTRY, generate_latest

from tests.db.helpers import cluster_for, read_port
from tests.db.replication import ReplicationSet
from tests.servers import free_port
from zephyr_core import Settings
from zephyr_core._asgi import HealthApp
from zephyr_core._health import checks_for
from zephyr_db._health import checks

REPO = Path(__file__).resolve().parents[2]


def with_password(url: str) -> str:
    return url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it


async def empty_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("only the health routes are requested")


async def ready(settings: Settings, path: str = "/health/ready") -> tuple[int, dict[str, object]]:
    app = HealthApp(empty_app, checks(settings))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://a"
    ) as client:
        response = await client.get(path)
    return response.status_code, response.json()


async def test_ready_passes_degraded_when_a_replica_is_down(servers: ReplicationSet) -> None:
    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    settings = Settings(
        DATABASE_URL=with_password(servers.url(servers.primary)),
        DATABASE_READ_URLS=[servers.url(servers.replicas[0]), dead],
    )
    status, body = await ready(settings)
    result = body["checks"]["database"]  # type: ignore[index]
    assert status == 200 and result["ok"] is True
    assert "replica 127.0.0.1:" in result["degraded"] and "hunter2" not in json.dumps(body)
    assert (await ready(settings, "/health"))[1]["status"] == "degraded"

    settings = Settings(DATABASE_URL=dead, DATABASE_READ_URLS=[servers.url(servers.replicas[0])])
    status, body = await ready(settings)
    assert status == 503 and body["failed"] == ["database"]
    assert "hunter2" not in json.dumps(body)


def test_zephyr_db_replaces_the_cores_plain_database_check(servers: ReplicationSet) -> None:
    settings = Settings(DATABASE_URL=servers.url(servers.primary))
    database = [c for c in checks_for(settings) if c.name == "database"]
    assert len(database) == 1 and database[0].probe.__module__ == "zephyr_db._health"


async def test_metrics_show_pool_use_and_reads_by_host(servers: ReplicationSet) -> None:
    replica = servers.replicas[0]
    async with cluster_for(servers, replicas=1, name="metrics-test") as cluster:
        for _ in range(3):
            await read_port(cluster)
        async with cluster.read():
            text = generate_latest(REGISTRY).decode()
    host = f'cluster="metrics-test",host="127.0.0.1:{replica.port}",role="replica"'
    assert f"zephyr_db_reads_total{{{host}}} 4.0" in text
    assert f"zephyr_db_pool_in_use{{{host}}} 1.0" in text
    assert f"zephyr_db_pool_waiting{{{host}}} 0.0" in text
    assert f"zephyr_db_host_usable{{{host}}} 1.0" in text
    assert 'zephyr_db_read_fallbacks_total{cluster="metrics-test"} 0.0' in text
    primary = f'cluster="metrics-test",host="127.0.0.1:{servers.primary.port}",role="primary"'
    assert f"zephyr_db_pool_size{{{primary}}} 1.0" in text
    assert "metrics-test" not in generate_latest(REGISTRY).decode()  # closed: gone


def zephyr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [sys.executable, "-m", "zephyr_core", *args],
        env={**clean, **env}, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_status_lists_each_host_with_role_lag_and_connections(servers: ReplicationSet) -> None:
    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    reads = [with_password(servers.url(r)) for r in servers.replicas] + [dead]
    env = {
        "DATABASE_URL": with_password(servers.url(servers.primary)),
        "DATABASE_READ_URLS": ",".join(reads),
    }
    done = zephyr("db", "status", "--json", **env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(h["role"], h["server_role"], h["up"]) for h in report[:3]] == [
        ("primary", "primary", True), ("replica", "standby", True), ("replica", "standby", True),
    ]  # fmt: skip
    assert report[1]["lag_seconds"] == 0 and report[1]["connections"]["max"] >= 1
    assert report[3]["up"] is False and "Connect" in report[3]["error"]

    table = zephyr("db", "status", **env)
    assert table.returncode == 0 and f"127.0.0.1:{servers.primary.port}" in table.stdout
    assert "hunter2" not in done.stdout + done.stderr + table.stdout + table.stderr


def test_status_exits_1_when_the_primary_is_down_and_2_without_a_url() -> None:
    done = zephyr("db", "status", DATABASE_URL=f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db")
    assert done.returncode == 1 and "down" in done.stdout and "hunter2" not in done.stdout
    done = zephyr("db", "status")
    assert done.returncode == 2 and "DATABASE_URL is not set" in done.stderr
