"""Real `zephyr jobs worker` and two `zephyr jobs scheduler` processes on a private Redis:
every tick runs the job once, the standby never fires while the active one lives, and it
takes over within seconds when the active one is killed. Beat writes no local file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from tests.celery.jobs_processes import Procs, child_env
from tests.servers import wait_until

JOBS = """
import os

import redis
from celery import current_task

from zephyr_celery._scheduler import scheduler

_redis = redis.Redis.from_url(os.environ["JOB_QUEUE_URL"])


@scheduler.every(seconds=1)
def tick() -> None:
    _redis.rpush("ticks", current_task.request.id)
"""

SENT = "Scheduler: Sending due task tick_jobs.tick"
BEAT = ("jobs", "scheduler", "-A", "tick_jobs", "--max-interval", "1", "--lock-timeout", "4")


@pytest.mark.slow
def test_two_schedulers_fire_each_tick_once_and_fail_over(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "tick_jobs.py").write_text(JOBS)
    run = tmp_path / "run"  # the processes' working directory: must stay empty
    run.mkdir()
    client = redis.Redis.from_url(redis_url)
    env = child_env(tmp_path / "app", JOB_QUEUE_URL=redis_url)

    def executions() -> int:
        return int(client.llen("ticks"))

    with Procs(run, env, tmp_path / "logs") as procs:
        procs.zephyr("worker", "jobs", "worker", "-A", "tick_jobs", "-P", "solo")
        active = procs.zephyr("beat-a", *BEAT)
        wait_until(lambda: "beat: Acquired lock" in active.text(), 60, "the first scheduler")
        standby = procs.zephyr("beat-b", *BEAT)
        wait_until(lambda: "beat: Starting..." in standby.text(), 60, "the second scheduler")
        start = executions()
        wait_until(lambda: executions() >= start + 4, 60, "four more ticks")

        # The standby waits on the lock: it sent nothing, and every send ran once.
        assert SENT not in standby.text()
        assert "Acquired lock" not in standby.text()
        wait_until(lambda: executions() == active.text().count(SENT), 15, "the last tick to run")

        active.signal_group(signal.SIGKILL)
        active.popen.wait(10)
        sent_by_active = active.text().count(SENT)
        # The lock expires 4 s after the last renewal; the standby retries every second.
        wait_until(lambda: "beat: Acquired lock" in standby.text(), 30, "the fail-over")
        wait_until(lambda: standby.text().count(SENT) >= 3, 30, "the standby's ticks")

        def all_sent_ran() -> bool:
            # The killed beat may have logged a send it never published.
            sent = sent_by_active + standby.text().count(SENT)
            return executions() in (sent - 1, sent)

        wait_until(all_sent_ran, 30, "every sent tick to run")
        ran = client.lrange("ticks", 0, -1)
        assert len(ran) == len(set(ran))  # no tick ran twice
    assert list(run.iterdir()) == []  # no celerybeat-schedule, no pidfile
    client.close()
