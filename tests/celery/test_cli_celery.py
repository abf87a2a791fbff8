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
from tests.servers import wait_until
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
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("celery", "-A", JOBS), "name a Celery command"),
        (("celery", "-A", JOBS, "--"), "name a Celery command"),
        (("celery", "-A", JOBS, "--", "-b", "redis://elsewhere", "inspect", "ping"), "'-b'"),
        (("celery", "-A", JOBS, "--", "--app", "other", "inspect", "ping"), "'--app'"),
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
