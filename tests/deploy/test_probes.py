"""The health checks compose runs, run here as plain processes against real servers: the
HTTP check on a real ``zephyr serve``, ``zephyr docker probe worker`` on a real worker and
``zephyr docker probe beat`` on a real scheduler (no container: no engine runs here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.celery.jobs_processes import Procs, child_env
from tests.servers import free_port, port_open, wait_until
from zephyr_deploy._processes import http_check

JOBS = """
from zephyr_celery import job


@job
def noop() -> None:
    return None
"""

APP = "async def app(scope, receive, send):\n    pass\n"


def run_check(argv: tuple[str, ...], env: dict[str, str], cwd: Path) -> int:
    command = list(argv[1:])  # drop compose's "CMD"
    if command[0] == "python":
        command[0] = sys.executable
    else:
        command = [sys.executable, "-m", "zephyr_core", *command[1:]]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=60).returncode


def test_http_check_on_a_real_zephyr_serve(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "probe_app.py").write_text(APP)
    env = child_env(tmp_path, JOB_QUEUE_URL=redis_url, CACHE_URL=redis_url)
    port = free_port()
    check = http_check(port, "/health/live")
    assert run_check(check, env, tmp_path) != 0  # nothing listens yet
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        procs.zephyr("web", "serve", "--app", "probe_app:app", "--port", str(port))
        wait_until(lambda: port_open(port), 30, "zephyr serve to listen")
        assert run_check(check, env, tmp_path) == 0
        assert run_check(http_check(port, "/no/such/path"), env, tmp_path) != 0


@pytest.mark.slow
def test_worker_and_beat_probes_on_real_processes(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "probe_jobs.py").write_text(JOBS)
    env = child_env(tmp_path, JOB_QUEUE_URL=redis_url)
    worker_check = ("CMD", "zephyr", "docker", "probe", "worker", "-A", "probe_jobs")
    beat_check = ("CMD", "zephyr", "docker", "probe", "beat", "-A", "probe_jobs")
    assert run_check(beat_check, env, tmp_path) == 1  # no scheduler yet
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        worker = procs.zephyr("worker", "jobs", "worker", "-A", "probe_jobs", "-P", "solo")
        beat = procs.zephyr("beat", "jobs", "scheduler", "-A", "probe_jobs")
        wait_until(lambda: " ready." in worker.text(), 60, "the worker to be ready")
        assert run_check(worker_check, env, tmp_path) == 0
        wait_until(lambda: "Acquired lock" in beat.text(), 60, "beat to take its lock")
        assert run_check(beat_check, env, tmp_path) == 0
    # Both stopped: the worker no longer answers a ping.
    assert run_check(worker_check, env, tmp_path) == 1
