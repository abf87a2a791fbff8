"""Nothing is lost on the async pool: the reliability scenarios of test_reliability.py,
with an async job on `zephyr jobs worker` (the default pool) instead of prefork.

SIGKILL of the whole worker five times in 300 jobs (acks_late: what was running or
prefetched comes back), and SIGTERM: running jobs finish, prefetched ones go back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.celery.test_reliability import VISIBILITY_TIMEOUT, Jobs, Worker, kill_and_restart
from tests.servers import wait_until

pytestmark = pytest.mark.slow

#: rel.work as an async job: the same counters, awaited.
ASYNC_MODULE = """
import asyncio
import os
import time

import redis
import redis.asyncio as aredis
from celery.signals import worker_ready

from zephyr_celery import get_app, job

app = get_app()
sync_counter = redis.Redis.from_url(os.environ["COUNTER_URL"])
_clients = {}


def counter():
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = aredis.Redis.from_url(os.environ["COUNTER_URL"])
    return _clients[loop]


@worker_ready.connect
def _ready(**_):
    sync_counter.rpush("ready", time.time())


@job(name="rel.work")
async def work(job_id, seconds):
    c = counter()
    await c.hsetnx("started", job_id, time.time())
    await c.hincrby("starts", job_id, 1)
    await asyncio.sleep(seconds)
    await c.hincrby("runs", job_id, 1)
    await c.hsetnx("finished", job_id, time.time())
"""


class AsyncWorker(Worker):
    """`zephyr jobs worker -A relapp` (the async pool, one process) in its own group."""

    def __init__(self, directory: Path, env: dict[str, str], concurrency: int = 2) -> None:
        Worker.count += 1
        self.log = directory / f"worker-{Worker.count}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zephyr_core", "jobs", "worker", "-A", "relapp",
                 "--processes", "1", "-c", str(concurrency), "-l", "info",
                 "-n", f"arel{Worker.count}@%h"],
                cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip


class AsyncJobs(Jobs):
    def __init__(self, tmp_path: Path, counter_url: str, **settings: Any) -> None:
        super().__init__(tmp_path, counter_url, **settings)
        (tmp_path / "relapp.py").write_text(ASYNC_MODULE)

    def start_worker(self, concurrency: int = 2) -> Worker:
        worker = AsyncWorker(self.tmp_path, self.env, concurrency)
        self.workers.append(worker)
        return worker


@pytest.fixture
def async_jobs(tmp_path: Path) -> Iterator[Any]:
    made: list[AsyncJobs] = []

    def make(counter_url: str, **settings: Any) -> AsyncJobs:
        jobs = AsyncJobs(tmp_path, counter_url, **settings)
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:
        jobs.close()


def test_sigkill_loses_nothing_on_the_async_pool(redis_url: str, async_jobs: Any) -> None:
    jobs = async_jobs(redis_url, JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT)
    kill_and_restart(jobs)


def test_sigterm_finishes_running_jobs_and_returns_prefetched(
    redis_url: str, async_jobs: Any
) -> None:
    """Warm shutdown: both running jobs finish; the prefetched ones go back to the queue."""
    jobs = async_jobs(redis_url, JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=600)
    jobs.send(range(2), seconds=3)  # jobs 0 and 1 run for 3 s, at once
    jobs.send(range(2, 8))  # prefetched (2 at once x 8), waiting for a slot
    worker = jobs.start_worker(concurrency=2)
    wait_until(lambda: jobs.counter.hlen("started") == 2, 60, "jobs 0 and 1 to start")
    wait_until(lambda: jobs.counter.llen("celery") == 0, 10, "the worker to prefetch")
    assert jobs.counter.hlen("unacked") == 8
    assert worker.terminate(timeout=60) == 0, worker.output()
    assert jobs.runs() == {0: 1, 1: 1}, "the running jobs finish, nothing else starts"
    assert jobs.counter.llen("celery") == 6, "the prefetched jobs go back to the queue"
    assert jobs.counter.hlen("unacked") == 0
    jobs.start_worker(concurrency=2)
    jobs.wait_done(8, 60)
    assert jobs.runs() == dict.fromkeys(range(8), 1)


def test_two_processes_stop_together(redis_url: str, async_jobs: Any) -> None:
    """`--processes 2`: two nodes; SIGTERM to the command stops both, cleanly; SIGKILL
    of the command takes its workers with it."""
    jobs = async_jobs(redis_url, JOB_QUEUE_URL=redis_url)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        log = (jobs.tmp_path / f"two-{sig}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "zephyr_core", "jobs", "worker", "-A", "relapp",
             "--processes", "2", "-n", f"two{int(sig)}@%h"],
            cwd=jobs.tmp_path, env=jobs.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(lambda: jobs.counter.llen("ready") >= 2, 60, "two workers")
            expected = {f"two{int(sig)}-1", f"two{int(sig)}-2"}

            def both_answer(expected: set[str] = expected) -> bool:
                # A loaded machine may answer a ping late: ask again until both reply.
                replies = jobs.app.control.ping(timeout=2)
                return {n.split("@")[0] for reply in replies for n in reply} == expected

            wait_until(both_answer, 30, f"both workers ({expected}) to answer a ping")
            children = [int(p) for p in _children(proc.pid)]
            assert len(children) == 2
            proc.send_signal(sig)
            code = proc.wait(60)
            assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            wait_until(
                lambda pids=children: not any(_alive(p) for p in pids), 30, "the workers to exit"
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
            jobs.counter.delete("ready")


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
