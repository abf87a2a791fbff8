"""Nothing is lost: real `celery worker` processes killed, stopped and cut off mid-run.

Each job records its id in a Redis hash (``runs``: id -> times it ran) on a Redis the
broker's trouble does not touch, so the tests count by id: every job ran at least
once; repeats are allowed (at-least-once) and reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.servers import RedisServer, wait_until
from zephyr_celery import create_app
from zephyr_core import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

#: The jobs module each worker imports: the app users get, built from the environment.
WORKER_MODULE = """
import os
import time

import redis
from celery.signals import worker_ready

from zephyr_celery import create_app

app = create_app()
counter = redis.Redis.from_url(os.environ["COUNTER_URL"])


@worker_ready.connect
def _ready(**_):
    counter.rpush("ready", time.time())


@app.task(name="rel.work", ignore_result=True)
def work(job_id, seconds):
    counter.hsetnx("started", job_id, time.time())
    counter.hincrby("starts", job_id, 1)
    time.sleep(seconds)
    counter.hincrby("runs", job_id, 1)
    counter.hsetnx("finished", job_id, time.time())
"""


class Worker:
    """A `celery -A relapp worker` in its own process group, logging to a file."""

    count = 0

    def __init__(self, directory: Path, env: dict[str, str], concurrency: int = 2) -> None:
        Worker.count += 1
        self.log = directory / f"worker-{Worker.count}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "relapp", "worker",
                 "-c", str(concurrency), "-P", "prefork", "-l", "INFO",
                 "-n", f"rel{Worker.count}@%h", "--without-mingle", "--without-gossip"],
                cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we kill only what we started
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children at once."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float) -> int:
        """SIGTERM the main process only, as an orchestrator does; wait for it to exit."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class Jobs:
    """The counters of one test and the producer app, as a user builds it."""

    def __init__(self, tmp_path: Path, counter_url: str, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.counter = redis.Redis.from_url(counter_url)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOB_")},
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
            "COUNTER_URL": counter_url,
            **{name: str(value) for name, value in settings.items()},
        }
        (tmp_path / "relapp.py").write_text(WORKER_MODULE)
        self.app = create_app(Settings(**settings))
        self.workers: list[Worker] = []

    def send(self, ids: range, seconds: float = 0.02) -> None:
        for job_id in ids:
            # ignore_result: the jobs count themselves; no result subscription per send.
            self.app.send_task("rel.work", args=[job_id, seconds], ignore_result=True)

    def start_worker(self, concurrency: int = 2) -> Worker:
        worker = Worker(self.tmp_path, self.env, concurrency)
        self.workers.append(worker)
        return worker

    def runs(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.counter.hgetall("runs").items()}

    def done(self) -> int:
        return int(self.counter.hlen("runs"))

    def wait_done(self, total: int, timeout: float) -> None:
        try:
            wait_until(lambda: self.done() >= total, timeout, f"{total} jobs to finish")
        except TimeoutError as exc:
            logs = "\n".join(w.output() for w in self.workers[-2:])
            raise AssertionError(f"{exc}; {self.report(total)}\n{logs}") from None

    def report(self, total: int) -> str:
        runs = self.runs()
        missing = sorted(set(range(total)) - set(runs))
        repeats = {job: n for job, n in runs.items() if n > 1}
        return (
            f"{len(missing)} lost {missing[:20]}, {sum(repeats.values()) - len(repeats)} "
            f"repeats over {len(repeats)} jobs"
        )

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.app.close()
        self.counter.close()


@pytest.fixture
def jobs_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Jobs] = []

    def make(counter_url: str, **settings: Any) -> Jobs:
        jobs = Jobs(tmp_path, counter_url, **settings)
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:
        jobs.close()


TOTAL = 300
KILLS = 5
VISIBILITY_TIMEOUT = 3


def kill_and_restart(jobs: Jobs) -> None:
    """300 jobs while the whole worker is SIGKILLed and restarted 5 times."""
    jobs.send(range(TOTAL))
    worker = jobs.start_worker()
    # Kill at evenly spaced points of progress, the last with jobs still queued.
    for k in range(1, KILLS + 1):
        wait_until(
            lambda k=k: jobs.done() >= TOTAL * k // (KILLS + 2),
            90,
            f"progress before kill {k}: {jobs.report(TOTAL)}",
        )
        worker.kill()
        last_kill = time.time()
        worker = jobs.start_worker()
    jobs.wait_done(TOTAL, 90)
    runs = jobs.runs()
    assert set(runs) == set(range(TOTAL)), jobs.report(TOTAL)
    finished = max(float(t) for t in jobs.counter.hvals("finished"))
    ready = float(jobs.counter.lindex("ready", -1) or 0)
    # The dead worker's jobs come back within a few visibility timeouts of the kill,
    # counted from when the new worker could take them.
    recovery = finished - max(last_kill, ready)
    assert recovery <= 4 * VISIBILITY_TIMEOUT, (
        f"last job finished {recovery:.1f}s after the last kill ({jobs.report(TOTAL)})"
    )


def test_sigkill_loses_nothing_on_redis(redis_url: str, jobs_factory: Any) -> None:
    jobs = jobs_factory(
        redis_url, JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT
    )
    kill_and_restart(jobs)


def test_sigkill_loses_nothing_on_rabbitmq(
    rabbitmq_url: str, redis_url: str, jobs_factory: Any
) -> None:
    jobs = jobs_factory(
        redis_url,
        JOB_QUEUE_BACKEND="rabbitmq",
        JOB_QUEUE_URL=rabbitmq_url,
        JOB_RESULT_URL=redis_url,
        JOB_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT,
    )
    # Each run of this test starts on an empty queue: the vhost is per session.
    jobs.app.control.purge()
    kill_and_restart(jobs)


def test_redis_restart_mid_run_loses_nothing(
    own_redis: RedisServer, redis_url: str, jobs_factory: Any
) -> None:
    """The broker crashes (SIGKILL, append-only file) while jobs run and are sent."""
    jobs = jobs_factory(
        redis_url,
        JOB_QUEUE_URL=own_redis.url(0),
        JOB_RESULT_URL=redis_url,
        JOB_VISIBILITY_TIMEOUT=2,
    )
    jobs.send(range(TOTAL // 2))
    worker = jobs.start_worker()
    sent: list[int] = []

    def produce() -> None:
        for job_id in range(TOTAL // 2, TOTAL):
            jobs.send(range(job_id, job_id + 1))
            sent.append(job_id)

    producer = threading.Thread(target=produce)
    wait_until(lambda: jobs.done() >= TOTAL // 4, 60, "the first jobs to run")
    producer.start()
    wait_until(lambda: len(sent) >= TOTAL // 8, 30, "the producer to be sending")
    own_redis.kill()
    own_redis.start()
    producer.join(60)
    assert not producer.is_alive(), "the producer did not get through the restart"
    assert len(sent) == TOTAL - TOTAL // 2
    jobs.wait_done(TOTAL, 90)
    assert set(jobs.runs()) == set(range(TOTAL)), jobs.report(TOTAL)
    assert worker.alive(), "the worker should reconnect, not exit"
    assert len(jobs.workers) == 1


def test_sigterm_finishes_running_job_and_returns_prefetched(
    redis_url: str, jobs_factory: Any
) -> None:
    """SIGTERM: the running job completes; reserved jobs go straight back to the queue.

    The visibility timeout is long, so the next worker can only get them back through
    the queue (the warm shutdown requeues them), never through a timeout restore.
    """
    jobs = jobs_factory(redis_url, JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=600)
    jobs.send(range(1), seconds=3)  # job 0 runs for 3 s
    jobs.send(range(1, 7))  # fewer than the worker's prefetch (8 per process)
    worker = jobs.start_worker(concurrency=1)
    wait_until(lambda: jobs.counter.hexists("started", 0), 60, "job 0 to start")
    # One process busy with job 0, the six others reserved (prefetched) by the worker.
    wait_until(lambda: jobs.counter.llen("celery") == 0, 10, "the worker to prefetch")
    assert jobs.counter.hlen("unacked") == 7
    assert worker.terminate(timeout=60) == 0, worker.output()
    assert jobs.runs() == {0: 1}, "job 0 should finish, and nothing else start"
    assert jobs.counter.llen("celery") == 6, "the reserved jobs go back to the queue"
    assert jobs.counter.hlen("unacked") == 0
    jobs.start_worker(concurrency=1)
    jobs.wait_done(7, 60)
    assert jobs.runs() == dict.fromkeys(range(7), 1)


def test_a_live_worker_keeps_its_long_and_delayed_jobs(redis_url: str, jobs_factory: Any) -> None:
    """Jobs held longer than the visibility timeout by a live worker run once.

    The worker refreshes the messages it holds, so neither a job running for 2.5
    visibility timeouts nor a countdown of 2.5 timeouts is handed out again.
    """
    jobs = jobs_factory(redis_url, JOB_QUEUE_URL=redis_url, JOB_VISIBILITY_TIMEOUT=2)
    jobs.send(range(1), seconds=5)
    jobs.app.send_task("rel.work", args=[1, 0], countdown=5, ignore_result=True)
    jobs.start_worker(concurrency=2)
    jobs.wait_done(2, 60)
    # Idle: nothing queued or held, so any second copy would have run by now.
    wait_until(
        lambda: not jobs.counter.llen("celery") and not jobs.counter.hlen("unacked"),
        30,
        "the worker to be idle",
    )
    assert jobs.runs() == {0: 1, 1: 1}, jobs.report(2)
    assert jobs.counter.hgetall("starts") == {b"0": b"1", b"1": b"1"}
