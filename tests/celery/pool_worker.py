"""A real ``zephyr jobs worker`` on the async pool, and the jobs module it runs.

The jobs count themselves in Redis (``COUNTER_URL``) so tests see what ran, how
often, how many at once, and what a cancelled coroutine did.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from tests.celery.jobs_processes import Proc, Procs, child_env
from tests.servers import wait_until
from zephyr_celery import set_app
from zephyr_core import get_settings

JOBS_MODULE = textwrap.dedent(
    """
    import asyncio
    import os
    import threading
    import time

    import redis.asyncio as aredis

    from zephyr_celery import get_app, job

    app = get_app()
    _clients = {}


    def counter():
        # One client per event loop (each worker process has one loop).
        loop = asyncio.get_running_loop()
        if loop not in _clients:
            _clients[loop] = aredis.Redis.from_url(os.environ["COUNTER_URL"])
        return _clients[loop]


    @job(name="pool.overlap")
    async def overlap(seconds: float) -> int:
        level = await counter().incr("running")
        await counter().rpush("levels", level)
        await asyncio.sleep(seconds)
        await counter().decr("running")
        return os.getpid()


    async def _long(key: str) -> None:
        await counter().set(key + ":started", 1)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await counter().set(key + ":cancelled", 1)
            raise
        await counter().set(key + ":finished", 1)


    @job(name="pool.long")
    async def long(key: str) -> None:
        await _long(key)


    @job(name="pool.slow", timeout=0.5, retry=0)
    async def slow(key: str) -> None:
        await _long(key)


    @job(name="pool.flaky", retry=3, delay=0.2, backoff=True, max_delay=2)
    async def flaky(key: str) -> int:
        attempt = await counter().incr(key)
        await counter().rpush(key + ":at", time.time())
        if attempt < 3:
            raise ConnectionError(f"attempt {attempt} failed")
        return attempt


    @job(name="pool.fails", retry=1, delay=0.1)
    async def fails(order: int) -> None:
        raise LookupError(f"order {order} not found")


    @job(name="pool.sync_thread")
    def sync_thread() -> str:
        return threading.current_thread().name


    @job(name="pool.limited", rate_limit="4/s")
    async def limited(i: int) -> None:
        await counter().rpush("limited", time.time())


    @job(name="pool.block")
    async def block(seconds: float) -> None:
        time.sleep(seconds)  # the mistake the pool reports
    """
)


@dataclass
class PoolWorker:
    """The jobs module (imported here too, to enqueue), the worker and the counters."""

    jobs: Any
    proc: Proc
    procs: Procs
    counter: redis.Redis
    env: dict[str, str]


def ping_names(app: Any, timeout: float = 1.0) -> set[str]:
    """The node names of the workers answering ``ping``."""
    return {name for reply in app.control.ping(timeout=timeout) for name in reply}


@pytest.fixture
def pool_worker(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PoolWorker]:
    """``zephyr jobs worker -A pool_jobs`` (the default pool), one process, 8 jobs at once."""
    (tmp_path / "pool_jobs.py").write_text(JOBS_MODULE)
    monkeypatch.setenv("JOB_QUEUE_URL", redis_url)
    monkeypatch.setenv("COUNTER_URL", redis_url)
    monkeypatch.syspath_prepend(str(tmp_path))
    get_settings.cache_clear()
    set_app(None)
    sys.modules.pop("pool_jobs", None)
    module: ModuleType = importlib.import_module("pool_jobs")
    env = child_env(tmp_path, JOB_QUEUE_URL=redis_url, COUNTER_URL=redis_url)
    counter = redis.Redis.from_url(redis_url)
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        proc = procs.zephyr(
            "worker", "jobs", "worker", "-A", "pool_jobs", "--processes", "1", "-c", "8",
            "-n", "pool@%h",
        )  # fmt: skip
        wait_until(lambda: "ready." in proc.text() or not proc.alive(), 60, "the worker")
        assert proc.alive(), proc.text()
        try:
            yield PoolWorker(module, proc, procs, counter, env)
        finally:
            counter.close()
            sys.modules.pop("pool_jobs", None)
            set_app(None)
