"""`zephyr up`: embedded Valkey when no local Redis answers, supervision, clean stop."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.core.conftest import wait_for_http
from tests.servers import RedisServer, free_port, port_open, wait_until
from zephyr_core._supervisor import ProcessSpec, Supervisor
from zephyr_core._valkey import RECORD, redis_answers, running_env

SHOP = "examples.shop.app:app"


def test_embedded_valkey_when_local_redis_is_silent(spawn: Any, tmp_path: Path) -> None:
    silent = free_port()  # nothing listens here
    env = {
        "JOB_QUEUE_URL": f"redis://127.0.0.1:{silent}/0",
        "CACHE_URL": f"redis://127.0.0.1:{silent}/1",
    }
    port = free_port()
    up = spawn("up", "--app", SHOP, "--port", str(port), env=env)
    ready = f"http://127.0.0.1:{port}/health/ready"
    wait_for_http(ready, up, timeout=40)

    output = up.output()
    found = re.search(r"started embedded Valkey at redis://127\.0\.0\.1:(\d+)", output)
    assert found, output
    valkey_port = int(found.group(1))
    assert f"web: http://127.0.0.1:{port}" in output
    assert (tmp_path / ".zephyr" / "valkey" / "appendonlydir").is_dir()  # append-only data

    # Other commands run in the same directory find the embedded Valkey's URLs.
    assert running_env(tmp_path) == {
        "JOB_QUEUE_URL": f"redis://127.0.0.1:{valkey_port}/0",
        "JOB_RESULT_URL": f"redis://127.0.0.1:{valkey_port}/0",
        "CACHE_URL": f"redis://127.0.0.1:{valkey_port}/1",
    }

    # Stopping that Valkey turns readiness into a 503 naming redis on the next request.
    client = redis.Redis(port=valkey_port)
    client.set("survives", "restart")
    with contextlib.suppress(redis.ConnectionError):  # it may close the connection as it goes
        client.shutdown(nosave=False)
    wait_until(lambda: not port_open(valkey_port), 10, "valkey to stop")
    response = httpx.get(ready, timeout=5)
    assert response.status_code == 503
    assert response.json()["failed"] == ["redis"]

    up.signal(signal.SIGINT)
    assert up.wait(30) == 0
    assert not port_open(port)
    assert "stopping..." in up.output()
    assert running_env(tmp_path) == {}
    assert not (tmp_path / RECORD).exists()


def test_uses_a_redis_that_answers(spawn: Any, redis_server: RedisServer) -> None:
    env = {
        "JOB_QUEUE_URL": redis_server.url(0),
        "CACHE_URL": redis_server.url(1),
        "JOB_WORKER_CONCURENCY": "8",  # a typo: warned about once, not once per process
    }
    port = free_port()
    up = spawn("up", "--app", SHOP, "--port", str(port), env=env)
    wait_for_http(f"http://127.0.0.1:{port}/health/ready", up, timeout=40)
    wait_until(lambda: "ready: web" in up.output(), 30, "the ready line")
    assert f"using Redis at redis://127.0.0.1:{redis_server.port}" in up.output()
    assert "embedded" not in up.output()
    assert up.output().count("unknown setting JOB_WORKER_CONCURENCY") == 1, up.output()
    up.signal(signal.SIGTERM)
    assert up.wait(30) == 0


def test_never_replaces_a_remote_redis(spawn: Any) -> None:
    up = spawn("up", "--app", SHOP, env={"JOB_QUEUE_URL": "redis://redis.invalid:6379/0"})
    assert up.wait(30) == 1
    output = up.output()
    assert (
        "Redis does not answer at redis://redis.invalid:6379/0 (JOB_QUEUE_URL, JOB_RESULT_URL)"
        in output
    )
    assert "embedded" in output and "Traceback" not in output


def test_embedded_valkey_keeps_data_across_runs(tmp_path: Path) -> None:
    from zephyr_core._valkey import start_valkey

    server = start_valkey(tmp_path / "valkey")
    redis.Redis(port=server.port).set("job", "queued")
    server.stop()
    again = start_valkey(tmp_path / "valkey")
    port = again.port
    try:
        assert redis.Redis(port=port).get("job") == b"queued"
    finally:
        again.stop()
    assert not redis_answers(f"redis://127.0.0.1:{port}/0")


def test_running_env_ignores_a_record_left_by_a_dead_zephyr_up(tmp_path: Path) -> None:
    import json
    import subprocess

    assert running_env(tmp_path) == {}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = tmp_path / RECORD
    record.parent.mkdir(parents=True)
    env = {"JOB_QUEUE_URL": "redis://127.0.0.1:1/0"}
    record.write_text(json.dumps({"pid": dead.pid, "valkey_pid": dead.pid, "env": env}))
    assert running_env(tmp_path) == {}
    record.write_text("{not json")
    assert running_env(tmp_path) == {}


def test_supervisor_stops_the_rest_when_a_child_dies() -> None:
    lines: list[str] = []
    sleeper = ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    crasher = ProcessSpec(
        "crasher", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"]
    )
    supervisor = Supervisor([sleeper, crasher], grace=10, echo=lines.append)
    assert supervisor.run() == 1
    assert supervisor.children["sleeper"].returncode == -signal.SIGTERM
    assert any("crasher exited with code 3" in line for line in lines)
    assert any("boom" in line and "crasher" in line for line in lines)


def test_supervisor_kills_a_child_that_ignores_sigterm() -> None:
    stubborn = ProcessSpec(
        "stubborn",
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
         "print('ready', flush=True); time.sleep(60)"],
    )  # fmt: skip
    lines: list[str] = []
    supervisor = Supervisor([stubborn], grace=0.5, echo=lines.append)
    supervisor.start()
    wait_until(lambda: any("ready" in line for line in lines), 10, "child to start")
    supervisor.stop()
    assert supervisor.children["stubborn"].returncode == -signal.SIGKILL
    assert any("did not stop" in line for line in lines)


SUPERVISED = """
import sys, time
from zephyr_core._supervisor import ProcessSpec, Supervisor
sleeper = ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
supervisor = Supervisor([sleeper], grace=10, echo=lambda line: print(line, flush=True))
supervisor.start = (lambda start: lambda: (start(), print("started", flush=True)))(supervisor.start)
raise SystemExit(supervisor.run())
"""


def test_supervisor_stops_on_sigterm_even_a_storm_of_them(tmp_path: Path) -> None:
    """SIGTERM (docker stop, systemd, a CI timeout) stops it, however many arrive.

    The handler once called Event.set() while the main thread sat in Event.wait()
    holding the event's lock: a deadlock, and `zephyr up` ignored SIGTERM for good.
    """
    import subprocess

    script = tmp_path / "supervised.py"
    script.write_text(SUPERVISED)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"started"
        for _ in range(2000):  # back to back: some land inside the handler itself
            proc.send_signal(signal.SIGTERM)
        # 0, or killed by a late SIGTERM of the storm once its handler was restored.
        assert proc.wait(15) in (0, -signal.SIGTERM)
        assert b"stopping..." in proc.stdout.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(
    "args",
    [
        ["--app", ":app"],
        ["--app", "mod:"],
        ["--app", "examples.shop.app"],
        ["--app", SHOP, "-A", ":app"],
        ["--app", SHOP, "--jobs", "mod:"],
        ["--app", SHOP, "-A", "my-jobs"],
    ],
)
def test_a_malformed_module_path_is_a_usage_error(
    spawn: Any, args: list[str], tmp_path: Path
) -> None:
    silent = free_port()
    env = {"JOB_QUEUE_URL": f"redis://127.0.0.1:{silent}/0", "FLOWER_PORT": str(free_port())}
    up = spawn("up", *args, "--port", str(free_port()), env=env)
    assert up.wait(30) == 2
    output = up.output()
    assert output.count("\n") == 1, output  # one line
    assert output.startswith("error: ") and "expected" in output
    assert not (tmp_path / ".zephyr").exists()  # nothing started, not even Valkey
