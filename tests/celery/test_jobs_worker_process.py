"""End to end with a real ``celery worker`` subprocess (prefork pool, our app).

The jobs module is written to tmp_path, imported by this test and by the worker
(``celery -A e2e_jobs worker``): ``get_app()`` in it is the app with every job
registered.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from zephyr_celery import JobFailed, failure_store, set_app
from zephyr_core import Settings, get_settings

pytestmark = pytest.mark.slow

CELERY = Path(sys.executable).with_name("celery")

JOBS_MODULE = textwrap.dedent(
    """
    import asyncio
    import os

    from zephyr_celery import get_app, job

    app = get_app()  # what `celery -A e2e_jobs` finds


    @job
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b


    @job
    async def where() -> list[int]:
        return [os.getpid(), id(asyncio.get_running_loop())]


    @job
    def sync_upper(text: str) -> str:
        return text.upper()


    @job(retry=2, delay=0.1)
    async def always_fails(order: int) -> None:
        raise LookupError(f"order {order} not found")
    """
)


@pytest.fixture
def worker_env(
    jobs_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    (tmp_path / "e2e_jobs.py").write_text(JOBS_MODULE)
    monkeypatch.setenv("JOB_QUEUE_BACKEND", jobs_settings.JOB_QUEUE_BACKEND)
    monkeypatch.setenv("JOB_QUEUE_URL", jobs_settings.JOB_QUEUE_URL)
    monkeypatch.setenv("JOB_RESULT_URL", jobs_settings.job_result_url)
    monkeypatch.syspath_prepend(str(tmp_path))
    get_settings.cache_clear()
    set_app(None)
    sys.modules.pop("e2e_jobs", None)
    module = importlib.import_module("e2e_jobs")
    if jobs_settings.JOB_QUEUE_BACKEND == "rabbitmq":
        module.app.control.purge()
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(CELERY), "-A", "e2e_jobs", "worker", "-c", "2", "-l", "info", "--without-mingle",
         "--without-gossip"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield module
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        sys.modules.pop("e2e_jobs", None)
        set_app(None)


async def test_worker_process_runs_async_and_sync_jobs(worker_env: ModuleType) -> None:
    jobs: Any = worker_env
    handle = await jobs.add.delay(2, 40)
    assert await handle.wait(timeout=60) == 42
    assert await (await jobs.sync_upper.delay("ok")).wait(timeout=30) == "OK"
    assert await handle.status() == "SUCCESS"


async def test_each_worker_process_keeps_one_event_loop(worker_env: ModuleType) -> None:
    jobs: Any = worker_env
    handles = [await jobs.where.delay() for _ in range(30)]
    seen = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    loops_by_pid: dict[int, set[int]] = {}
    for pid, loop_id in seen:
        loops_by_pid.setdefault(pid, set()).add(loop_id)
    assert all(len(loops) == 1 for loops in loops_by_pid.values()), loops_by_pid
    assert os.getpid() not in loops_by_pid


async def test_exhausted_job_fails_and_is_recorded(worker_env: ModuleType) -> None:
    jobs: Any = worker_env
    handle = await jobs.always_fails.delay(7)
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=60)
    assert (caught.value.exc_type, caught.value.exc_message) == ("LookupError", "order 7 not found")
    store = failure_store(jobs.app)
    try:
        record = store.get(handle)
    finally:
        store.close()
    assert record is not None
    assert (record.name, record.args, record.attempts) == ("e2e_jobs.always_fails", [7], 3)
    assert record.exc_type == "LookupError"
