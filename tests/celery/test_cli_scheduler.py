"""`zephyr jobs scheduler` takes the fractional --max-interval it advertises: a real beat on a
real Redis ticks with it (Celery's own ``beat --max-interval`` takes whole seconds only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.celery.jobs_processes import Procs, child_env
from tests.servers import wait_until

JOBS = """
from zephyr_celery._scheduler import scheduler


@scheduler.every(seconds=1)
def half_tick() -> None:
    pass
"""

SENT = "Scheduler: Sending due task half_jobs.half_tick"


@pytest.mark.slow
def test_a_fractional_max_interval_runs_beat(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "half_jobs.py").write_text(JOBS)
    env = child_env(tmp_path / "app", JOB_QUEUE_URL=redis_url)
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        beat = procs.zephyr(
            "beat", "jobs", "scheduler", "-A", "half_jobs", "--max-interval", "0.5",
            "--lock-timeout", "2",
        )  # fmt: skip
        wait_until(lambda: beat.text().count(SENT) >= 2 or not beat.alive(), 60, "two ticks")
        assert beat.alive(), beat.text()
    assert "maxinterval -> now (0.5s)" in beat.text()  # Celery's banner
