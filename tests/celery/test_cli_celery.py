"""Celery's own commands on our apps, against a real worker on a real Redis: the ``celery``
CLI finds the app of a jobs module that exposes ``app``, and ``zephyr jobs celery`` runs any
Celery command on the app our settings build, reaching the embedded Valkey of a running
``zephyr up`` when no URL is set."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.celery.jobs_processes import Procs, child_env
from tests.servers import free_port, wait_until
from zephyr_celery import create_app, set_app
from zephyr_core import Settings
from zephyr_core._valkey import RedisPlan, record_running, start_valkey
from zephyr_core.cli import zephyr

JOBS = "examples.shop.jobs"
EMAIL = {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def zephyr_jobs_celery(
    cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "zephyr_core", "jobs", "celery", "-A", JOBS, "--", *args]
    return run(argv, cwd, env)


def sent_job_id(output: str) -> str:
    """The id ``celery call`` prints."""
    match = re.search(r"^([0-9a-f-]{36})$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


@pytest.mark.slow
def test_the_celery_cli_and_zephyr_jobs_celery_reach_a_real_worker(
    tmp_path: Path, redis_url: str
) -> None:
    env = child_env(JOB_QUEUE_URL=redis_url)
    app = create_app(Settings(JOB_QUEUE_URL=redis_url))
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        worker = procs.zephyr("worker", "jobs", "worker", "-A", JOBS, "-P", "solo", "-n", "w1@%h")
        wait_until(lambda: "ready." in worker.text(), 60, "the worker")

        # Celery's own CLI: `-A module` finds the module's `app`.
        plain = run([sys.executable, "-m", "celery", "-A", JOBS, "inspect", "ping"], tmp_path, env)
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert "pong" in plain.stdout

        ping = zephyr_jobs_celery(tmp_path, env, "inspect", "ping", "--timeout", "5")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "w1@" in ping.stdout and "pong" in ping.stdout

        registered = zephyr_jobs_celery(tmp_path, env, "inspect", "registered")
        assert f"{JOBS}.send_email" in registered.stdout, registered.stdout + registered.stderr

        call = zephyr_jobs_celery(
            tmp_path, env, "call", f"{JOBS}.send_email", "--kwargs", json.dumps(EMAIL)
        )
        assert call.returncode == 0, call.stdout + call.stderr
        job_id = sent_job_id(call.stdout)
        assert app.AsyncResult(job_id).get(timeout=30) == {"status": "sent", "to": EMAIL["to"]}

        result = zephyr_jobs_celery(tmp_path, env, "result", job_id)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sent" in result.stdout

        # The factory works as -A too: it is called.
        factory = run(
            [sys.executable, "-m", "zephyr_core", "jobs", "celery", "-A", "zephyr_celery:get_app",
             "--", "inspect", "ping", "--timeout", "5"],
            tmp_path, env,
        )  # fmt: skip
        assert factory.returncode == 0, factory.stdout + factory.stderr
        assert "pong" in factory.stdout

        # Celery's own CLI on the package itself: its `app` is the process-wide app.
        package = run(
            [sys.executable, "-m", "celery", "-A", "zephyr_celery", "inspect", "ping"],
            tmp_path, env,
        )  # fmt: skip
        assert package.returncode == 0, package.stdout + package.stderr
        assert "pong" in package.stdout
    app.close()


@pytest.mark.slow
def test_zephyr_jobs_celery_reaches_the_embedded_valkey_of_a_running_zephyr_up(
    tmp_path: Path, redis_url: str
) -> None:
    server = start_valkey(tmp_path / "valkey")
    try:
        # What `zephyr up` records when no Redis answered at the configured URLs.
        urls = {"JOB_QUEUE_URL": f"{server.url}/0", "JOB_RESULT_URL": f"{server.url}/0"}
        record_running(RedisPlan(env=urls, server=server), tmp_path)
        worker_env = child_env(**urls)
        with Procs(tmp_path, worker_env, tmp_path / "logs") as procs:
            worker = procs.zephyr("worker", "jobs", "worker", "-A", JOBS, "-P", "solo")
            wait_until(lambda: "ready." in worker.text(), 60, "the worker")

            # No URL set: the recorded embedded Valkey's.
            bare = child_env()
            ping = zephyr_jobs_celery(tmp_path, bare, "inspect", "ping", "--timeout", "5")
            assert ping.returncode == 0, ping.stdout + ping.stderr
            assert "pong" in ping.stdout
            assert "using the embedded Valkey of the zephyr up running here" in ping.stderr
            status = run(
                [sys.executable, "-m", "zephyr_core", "jobs", "status", "--json", "--timeout", "5"],
                tmp_path, bare,
            )  # fmt: skip
            assert status.returncode == 0, status.stdout + status.stderr
            assert json.loads(status.stdout)["broker"] == urls["JOB_QUEUE_URL"]
            assert len(json.loads(status.stdout)["workers"]) == 1
            call = zephyr_jobs_celery(
                tmp_path, bare, "call", f"{JOBS}.send_email", "--kwargs", json.dumps(EMAIL)
            )
            assert call.returncode == 0, call.stdout + call.stderr
            app = create_app(Settings(**urls))
            assert app.AsyncResult(sent_job_id(call.stdout)).get(timeout=30)["status"] == "sent"
            app.close()

            # A URL set in the environment wins over the record: no worker listens there.
            elsewhere = child_env(JOB_QUEUE_URL=redis_url)
            alone = zephyr_jobs_celery(tmp_path, elsewhere, "inspect", "ping", "--timeout", "1")
            assert alone.returncode != 0
            assert "No nodes replied" in alone.stdout + alone.stderr
            assert "embedded Valkey" not in alone.stderr
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("celery", "-A", JOBS), "name a Celery command"),
        (("celery", "-A", JOBS, "--"), "name a Celery command"),
        (("celery", "-A", JOBS, "--", "-b", "redis://elsewhere", "inspect", "ping"), "'-b'"),
        (("celery", "-A", JOBS, "--", "--app", "other", "inspect", "ping"), "'--app'"),
        (("celery", "-A", JOBS, "--", "-Aother", "inspect", "ping"), "'-Aother'"),
        (("celery", "-A", JOBS, "--", "--broker=redis://x", "purge"), "'--broker'"),
        (("celery", "-A", JOBS, "--", "no-such-command"), "No such command 'no-such-command'"),
        (("celery", "-A", "zephyr_celery:JobHandle", "--", "report"), "not a Celery app"),
    ],
)
def test_bad_usage_of_zephyr_jobs_celery_is_one_line_and_exit_2(
    args: tuple[str, ...], message: str
) -> None:
    set_app(None)
    try:
        result = CliRunner().invoke(zephyr, ["jobs", *args])
    finally:
        set_app(None)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert message in lines[0]


@pytest.mark.slow
def test_a_celery_command_that_fails_its_own_way_is_one_line(
    tmp_path: Path, redis_url: str
) -> None:
    """`celery call` with the result store down: Celery retries, then raises RuntimeError."""
    env = child_env(JOB_QUEUE_URL=redis_url, JOB_RESULT_URL=f"redis://127.0.0.1:{free_port()}/0")
    call = zephyr_jobs_celery(tmp_path, env, "call", f"{JOBS}.send_email")
    assert call.returncode == 1
    assert "Traceback" not in call.stderr, call.stderr
    (line,) = call.stderr.strip().splitlines()
    expected = "error: celery call: RuntimeError: Retry limit exceeded while trying to reconnect"
    assert line.startswith(expected), call.stderr


@pytest.mark.slow
def test_zephyr_jobs_celery_beside_a_real_zephyr_up_with_its_embedded_valkey(
    tmp_path: Path,
) -> None:
    """The user's flow: no Redis, `zephyr up -A jobs` starts Valkey and a worker; from
    another terminal in the same directory, `zephyr jobs celery` pings and runs a job."""
    silent = f"redis://127.0.0.1:{free_port()}"  # nothing listens: zephyr up embeds Valkey
    env = child_env(
        JOB_QUEUE_URL=f"{silent}/0", CACHE_URL=f"{silent}/1", FLOWER_PORT=str(free_port())
    )
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        up = procs.zephyr(
            "up", "up", "--app", "examples.shop.app:app", "-A", JOBS, "--port", str(free_port())
        )
        wait_until(lambda: "ready." in up.text() or not up.alive(), 120, "zephyr up's worker")
        assert "started embedded Valkey" in up.text(), up.text()

        # Another terminal in the same directory, where no URL is set.
        other = child_env()
        ping = zephyr_jobs_celery(tmp_path, other, "inspect", "ping", "--timeout", "5")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "pong" in ping.stdout
        call = zephyr_jobs_celery(
            tmp_path, other, "call", f"{JOBS}.send_email", "--kwargs", json.dumps(EMAIL)
        )
        assert call.returncode == 0, call.stdout + call.stderr
        result = zephyr_jobs_celery(tmp_path, other, "result", sent_job_id(call.stdout))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sent" in result.stdout
