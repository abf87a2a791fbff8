"""`zephyr up -A jobs` as a user runs it: the web app answers, a job posted to it runs on
the worker, Flower's printed URL answers, and Ctrl-C stops every process it started."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest
import redis

from tests.celery.jobs_processes import Procs, child_env
from tests.servers import free_port, wait_until
from zephyr_celery._up import flower_address, processes
from zephyr_core import Settings

APP = """
from fastapi import FastAPI

from examples.shop.jobs import router

app = FastAPI()
app.include_router(router)
"""


def _group_members(groups: set[int]) -> list[int]:
    """Processes whose process group is one of ``groups``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # fields: state, ppid, pgrp, ...
            found.append(int(entry.name))
    return found


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.slow
def test_zephyr_up_runs_web_worker_beat_and_flower(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "up_app.py").write_text(APP)
    web_port = free_port()
    env = child_env(
        tmp_path / "app",
        JOB_QUEUE_URL=redis_url,
        CACHE_URL=redis_url.rsplit("/", 1)[0] + "/1",
        FLOWER_PORT=str(free_port()),
    )
    web = f"http://127.0.0.1:{web_port}"
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        up = procs.zephyr(
            "up", "up", "--app", "up_app:app", "-A", "examples.shop.jobs", "--port", str(web_port)
        )

        # One line says when everything serves: the web app is ready, the worker
        # answers a ping, beat holds its lock and Flower answers (not before).
        flower = f"http://127.0.0.1:{env['FLOWER_PORT']}"
        ready = f"ready: web {web}, flower {flower} (worker, beat)"
        wait_until(lambda: ready in up.text(), 120, "the ready line")
        lines = up.text().splitlines()
        assert sum(ready in line for line in lines) == 1
        at = next(i for i, line in enumerate(lines) if ready in line)
        # The async pool runs a process per core, named zephyr1@, zephyr2@... (one: celery@)
        worker_ready = re.compile(r"^worker .*(celery|zephyr1)@\S+ ready\.")
        assert any(worker_ready.search(line) for line in lines[:at])
        assert any("beat: Acquired lock" in line for line in lines[:at])
        assert httpx.get(f"{web}/health/ready", timeout=5).status_code == 200
        assert httpx.get(f"{flower}/healthcheck", timeout=5).text == "OK"
        assert f"flower: {flower}" in up.text()

        posted = httpx.post(
            f"{web}/send-email",
            json={"to": "ada@example.com", "subject": "Hello", "body": "from zephyr up"},
            timeout=10,
        )
        assert posted.status_code == 200
        assert posted.json()["status"] == "queued"
        job_id = posted.json()["job_id"]

        def job_done() -> bool:
            answer = httpx.get(f"{web}/jobs/{job_id}", timeout=5).json()
            return bool(answer["status"] == "SUCCESS")

        wait_until(job_done, 60, "the worker to send the email")
        answer = httpx.get(f"{web}/jobs/{job_id}", timeout=5).json()
        assert answer["result"] == {"status": "sent", "to": "ada@example.com"}

        def flower_answers() -> bool:
            try:
                return httpx.get(f"{flower}/healthcheck", timeout=2).text == "OK"
            except httpx.TransportError:
                return False

        wait_until(flower_answers, 60, "Flower")
        wait_until(lambda: "beat: Acquired lock" in up.text(), 60, "beat")

        groups = _children(up.pid)  # each child of `zephyr up` leads its own group
        assert len(groups) == 4, up.text()  # web, worker, beat, flower
        up.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.popen.wait(60) == 0
        wait_until(lambda: not _group_members(groups), 15, "every child to stop")
    assert "stopping..." in up.text()


def test_no_jobs_module_adds_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEPHYR_JOBS", raising=False)
    assert processes(Settings(), {"jobs_module": None, "host": "127.0.0.1", "port": 8000}) == []


def test_flower_stays_on_loopback_without_a_login() -> None:
    assert flower_address(Settings(), "0.0.0.0") == "127.0.0.1"
    assert flower_address(Settings(), "127.0.0.1") == "127.0.0.1"
    assert flower_address(Settings(FLOWER_BASIC_AUTH="a:b"), "0.0.0.0") == "0.0.0.0"


def test_a_taken_flower_port_is_replaced_and_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("FLOWER_PORT", str(port))
        specs = processes(
            Settings(), {"jobs_module": "shop_jobs", "host": "127.0.0.1", "port": 8000}
        )
    out = capsys.readouterr().out
    assert f"flower: port {port} is taken" in out
    flower_spec = next(s for s in specs if s.name == "flower")
    new_port = flower_spec.argv[flower_spec.argv.index("--port") + 1]
    assert new_port != str(port)
    assert f"flower: http://127.0.0.1:{new_port}" in out
    assert [s.name for s in specs] == ["worker", "beat", "flower"]
    assert all(s.argv[1:4] == ["-m", "zephyr_core", "jobs"] for s in specs)


SLOW_JOBS = """
import time
from pathlib import Path

from zephyr_celery import job


@job
def slow(marker: str) -> str:
    Path(marker + ".started").touch()
    time.sleep(4)
    Path(marker + ".finished").touch()
    return "done"
"""

ENQUEUE = "import slow_jobs, sys; print(slow_jobs.slow.delay_sync(sys.argv[1]))"


@pytest.mark.slow
def test_ctrl_c_on_the_terminal_lets_the_running_job_finish(tmp_path: Path) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group.

    The embedded Valkey used to be in that group: it stopped at once, the worker could
    not acknowledge the job it was running, and the job waited an hour in ``unacked``.
    """
    import subprocess
    import sys

    from zephyr_core._valkey import running_env, start_valkey

    (tmp_path / "slow_jobs.py").write_text(SLOW_JOBS)
    silent = free_port()  # nothing listens here: `zephyr up` starts an embedded Valkey
    env = child_env(
        tmp_path,
        JOB_QUEUE_URL=f"redis://127.0.0.1:{silent}/0",
        CACHE_URL=f"redis://127.0.0.1:{silent}/1",
        FLOWER_PORT=str(free_port()),
    )
    web_port = free_port()
    marker = str(tmp_path / "job")
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        up = procs.zephyr(
            "up", "up", "--app", "examples.shop.app:app", "-A", "slow_jobs",
            "--port", str(web_port),
        )  # fmt: skip
        wait_until(lambda: bool(running_env(tmp_path)), 60, "the embedded Valkey")
        urls = running_env(tmp_path)
        wait_until(lambda: "ready." in up.text(), 90, "the worker")
        subprocess.run(
            [sys.executable, "-c", ENQUEUE, marker],
            env={**env, **urls}, cwd=tmp_path, check=True, timeout=60,
        )  # fmt: skip
        wait_until(lambda: Path(marker + ".started").exists(), 60, "the job to start")

        up.signal_group(signal.SIGINT)  # what a terminal's Ctrl-C does
        assert up.popen.wait(60) == 0, up.text()
        assert Path(marker + ".finished").exists(), up.text()
        assert "Traceback" not in up.text()

    # Nothing was left for redelivery an hour later: the job was acknowledged.
    server = start_valkey(tmp_path / ".zephyr" / "valkey")
    try:
        client = redis.Redis(port=server.port, db=0)
        assert client.hlen("unacked") == 0
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["abc", "99999", "0", "-1", "\uff15\uff15"])
def test_a_bad_flower_port_is_one_line_and_exit_2(
    tmp_path: Path, redis_url: str, value: str
) -> None:
    env = child_env(tmp_path, JOB_QUEUE_URL=redis_url, CACHE_URL=redis_url, FLOWER_PORT=value)
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        up = procs.zephyr(
            "up", "up", "--app", "examples.shop.app:app", "-A", "examples.shop.jobs",
            "--port", str(free_port()),
        )  # fmt: skip
        assert up.popen.wait(60) == 2
    assert "Traceback" not in up.text()
    assert f"error: FLOWER_PORT={value!r}: expected a port number between 1 and 65535" in up.text()
