"""The worker's heartbeat file and the chart's exec probe that reads it, on a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.celery.jobs_processes import Procs, child_env
from tests.k8s.chart_cases import MATRIX, NAMESPACE, RELEASE
from zephyr_celery._heartbeat import INTERVAL
from zephyr_deploy._helm import render

pytestmark = pytest.mark.slow

JOBS = "from zephyr_celery import job\n\n@job\nasync def ping() -> str:\n    return 'pong'\n"


def chart_probe() -> tuple[str, list[str]]:
    """The worker's heartbeat file and liveness command, as the chart renders them."""
    (worker,) = [
        m.body
        for m in render(MATRIX["existing-secret"], release=RELEASE, namespace=NAMESPACE)
        if m.kind == "Deployment" and m.name.endswith("-worker")
    ]
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return env["ZEPHYR_HEARTBEAT_FILE"], container["livenessProbe"]["exec"]["command"]


def probe_passes(command: list[str], heartbeat: Path) -> bool:
    assert command[0] == "python"
    script = command[2].replace(chart_probe()[0], str(heartbeat))
    return subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_running_worker_keeps_its_heartbeat_file_fresh(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "hb_jobs.py").write_text(JOBS)
    heartbeat = tmp_path / "heartbeat"
    _, command = chart_probe()
    env = child_env(tmp_path, JOB_QUEUE_URL=redis_url, ZEPHYR_HEARTBEAT_FILE=str(heartbeat))
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        worker = procs.zephyr("worker", "jobs", "worker", "-A", "hb_jobs", "-c", "1")
        assert wait_for(heartbeat.exists, 60), worker.text()[-2000:]
        assert probe_passes(command, heartbeat)
        # A stale file (a stuck consumer stops touching it) fails the probe ...
        stale = time.time() - 120
        os.utime(heartbeat, (stale, stale))
        assert not probe_passes(command, heartbeat)
        # ... and the live consumer's timer makes it fresh again within one interval.
        assert wait_for(lambda: heartbeat.stat().st_mtime > stale + 60, INTERVAL + 10)
        assert probe_passes(command, heartbeat)
