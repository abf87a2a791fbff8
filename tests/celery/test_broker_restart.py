"""A broker restart of a few seconds, with default settings: every job runs, promptly.

Real ``zephyr jobs worker`` processes (prefork and threads pools) on a private,
append-only Redis that is the broker and the result store, which the tests crash
(SIGKILL) or shut down (SHUTDOWN) while jobs run and wait in the worker's prefetch,
then start again on the same port and data. Each job counts its runs in a hash on
another Redis (the session one, which nothing restarts), so duplicates are counted
by job.

The visibility timeout is the default hour unless a test says otherwise: jobs that
come back only through it would time out the waits here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import redis

from tests.celery.jobs_processes import Proc, Procs, child_env
from tests.servers import RedisServer, wait_until
from zephyr_celery import set_app
from zephyr_core import get_settings

pytestmark = pytest.mark.slow

ScenarioT = TypeVar("ScenarioT", bound="Scenario")

MODULE = "restart_jobs"
JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    import redis

    from zephyr_celery import get_app, job

    app = get_app()
    _counter = []


    def counter():
        if not _counter:  # made in the process (or thread) that runs the job
            _counter.append(redis.Redis.from_url(os.environ["COUNTER_URL"]))
        return _counter[0]


    @job(retry=0)
    def nap(i: int, seconds: float) -> int:
        counter().hincrby("starts", i, 1)
        time.sleep(seconds)
        counter().hincrby("finishes", i, 1)
        return i
    """
)

TOTAL = 50
CONCURRENCY = 2


class Scenario:
    """The jobs module as the producer imports it, the worker and the counters."""

    def __init__(self, module: ModuleType, procs: Procs, broker: RedisServer, counter_url: str):
        self.module = module
        self.procs = procs
        self.broker = broker
        self.counter = redis.Redis.from_url(counter_url)
        self.workers: list[Proc] = []

    def start_worker(self, pool: str) -> Proc:
        name = f"worker-{len(self.workers) + 1}"
        worker = self.procs.zephyr(
            name, "jobs", "worker", "-A", MODULE, "-P", pool, "-c", str(CONCURRENCY),
            "-n", f"{name}@%h",
        )  # fmt: skip
        self.workers.append(worker)
        wait_until(lambda: "ready." in worker.text(), 60, f"{name} to be ready")
        return worker

    def starts(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.counter.hgetall("starts").items()}

    def duplicates(self) -> int:
        return sum(self.starts().values()) - len(self.starts())

    def broker_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker.url(0))

    def idle(self) -> bool:
        """Nothing left queued or held unacknowledged on the broker."""
        client = self.broker_client()
        try:
            return not client.hlen("unacked") and not client.llen("celery")
        finally:
            client.close()

    def report(self) -> str:
        starts = self.starts()
        client = self.broker_client()
        try:
            unacked, queued = client.hlen("unacked"), client.llen("celery")
        finally:
            client.close()
        logs = "\n".join(worker.text()[-3000:] for worker in self.workers)
        return (
            f"{len(starts)} jobs started, {self.duplicates()} duplicate runs, "
            f"{unacked} unacked, {queued} queued\n{logs}"
        )


@contextlib.contextmanager
def running_scenario(
    make: Callable[..., ScenarioT],
    source: str,
    tmp_path: Path,
    own_redis: RedisServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ScenarioT]:
    """A jobs module written from ``source``, this process's app on ``own_redis``, workers."""
    (tmp_path / f"{MODULE}.py").write_text(source)
    broker = own_redis.url(0)
    monkeypatch.setenv("JOB_QUEUE_URL", broker)
    monkeypatch.delenv("JOB_RESULT_URL", raising=False)
    monkeypatch.delenv("JOB_VISIBILITY_TIMEOUT", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    get_settings.cache_clear()
    set_app(None)
    sys.modules.pop(MODULE, None)
    module = importlib.import_module(MODULE)
    env = child_env(tmp_path, JOB_QUEUE_URL=broker, COUNTER_URL=redis_url)
    with Procs(tmp_path, env, tmp_path / "logs") as procs:
        made = make(module, procs, own_redis, redis_url)
        try:
            yield made
        finally:
            made.counter.close()
            module.app.close()
            sys.modules.pop(MODULE, None)
            set_app(None)
            get_settings.cache_clear()


@pytest.fixture
def scenario(
    tmp_path: Path, own_redis: RedisServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scenario]:
    with running_scenario(
        Scenario, JOBS_MODULE, tmp_path, own_redis, redis_url, monkeypatch
    ) as made:
        yield made


def crash(broker: RedisServer) -> None:
    """SIGKILL: no chance to answer or flush anything (appendfsync always keeps writes)."""
    broker.stop(signal.SIGKILL)


def shut_down(broker: RedisServer) -> None:
    """SIGTERM: Redis's SHUTDOWN, closing every client connection first."""
    broker.stop(signal.SIGTERM)


async def restart_while_running(
    scenario: Scenario, stop: Callable[[RedisServer], None], outage: float, total: int
) -> tuple[list[Any], list[Any]]:
    """Send ``total`` 1 s jobs, stop the broker once jobs run, start it ``outage`` s later.

    Returns the handles and what each ``wait(timeout=60)`` returned or raised.
    """
    handles = [await scenario.module.nap.delay(i, 1.0) for i in range(total)]
    waits = [asyncio.ensure_future(handle.wait(timeout=60)) for handle in handles]
    # Both processes busy and the prefetch full: running and reserved jobs to strand.
    await asyncio.to_thread(
        wait_until, lambda: len(scenario.starts()) > CONCURRENCY, 30, "jobs to run"
    )
    await asyncio.to_thread(stop, scenario.broker)
    await asyncio.sleep(outage)  # the outage itself, not a wait for a condition
    await asyncio.to_thread(scenario.broker.start)
    return handles, await asyncio.gather(*waits, return_exceptions=True)


def assert_all_ran(scenario: Scenario, results: list[Any], total: int) -> None:
    failed = {i: repr(r) for i, r in enumerate(results) if r != i}
    assert not failed, f"{len(failed)} jobs did not succeed: {failed}; {scenario.report()}"
    assert set(scenario.starts()) == set(range(total)), scenario.report()
    # Every acknowledgement arrived: nothing is left to run again after the
    # visibility timeout (acks sent behind a pop whose connection broke once were).
    wait_until(scenario.idle, 30, f"an empty queue and unacked hash; {scenario.report()}")


@pytest.mark.parametrize("stop", [crash, shut_down], ids=["sigkill", "shutdown"])
@pytest.mark.parametrize("pool", ["prefork", "threads"])
async def test_a_short_broker_restart_strands_no_job(
    scenario: Scenario, pool: str, stop: Callable[[RedisServer], None]
) -> None:
    """50 jobs of 1 s; Redis stopped 2 s, with 2 jobs running and ~16 prefetched.

    The jobs the worker held come back as soon as the broker does, not after the
    hour-long visibility timeout: every wait succeeds within its 60 s. Running jobs
    finish (the worker does not terminate them); duplicates stay within what the
    worker ran or had handed to its pool when the connection dropped.
    """
    worker = scenario.start_worker(pool)
    handles, results = await restart_while_running(scenario, stop, outage=2.0, total=TOTAL)
    assert_all_ran(scenario, results, TOTAL)
    assert {await handle.status() for handle in handles} == {"SUCCESS"}, scenario.report()
    print(f"{pool}/{stop.__name__}: {scenario.duplicates()} duplicate runs")  # -s shows it
    assert scenario.duplicates() <= CONCURRENCY, scenario.report()
    assert worker.alive(), scenario.report()
    text = worker.text()
    assert "Terminating it instead" not in text, scenario.report()


async def test_a_long_outage_does_not_fail_jobs_whose_bodies_returned(
    scenario: Scenario,
) -> None:
    """Threads pool, 10 s visibility timeout, Redis down 25 s while jobs run.

    The jobs finish during the outage and cannot store their results: the worker
    retries storing them until Redis is back, so no wait reports a failure, and
    each stored result is SUCCESS. What the worker held is older than the
    visibility timeout when Redis is back, yet it sorts it out before kombu's first
    sweep: the jobs it ran or queued are not handed out again.
    """
    scenario.procs.env["JOB_VISIBILITY_TIMEOUT"] = "10"
    worker = scenario.start_worker("threads")
    total = 12
    handles, results = await restart_while_running(scenario, crash, outage=25.0, total=total)
    assert_all_ran(scenario, results, total)
    assert {await handle.status() for handle in handles} == {"SUCCESS"}, scenario.report()
    # Held longer than the visibility timeout, yet still the worker's: not run again.
    print(f"25 s outage: {scenario.duplicates()} duplicate runs")
    assert scenario.duplicates() <= CONCURRENCY, scenario.report()
    assert worker.alive(), scenario.report()
