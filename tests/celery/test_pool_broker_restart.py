"""The broker-restart scenario of test_broker_restart.py on the async pool.

The same 50 one-second jobs (here ``async def``, awaiting ``asyncio.sleep``) on
`zephyr jobs worker` (the async pool, one process, 2 at once); Redis (append-only)
SIGKILLed or shut down while they run and started again 2 s later: every job runs
and succeeds within its wait, none is stranded in ``unacked``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.celery.jobs_processes import Proc
from tests.celery.test_broker_restart import (
    CONCURRENCY,
    MODULE,
    TOTAL,
    Scenario,
    assert_all_ran,
    crash,
    restart_while_running,
    running_scenario,
    shut_down,
)
from tests.servers import RedisServer, wait_until

pytestmark = pytest.mark.slow

ASYNC_MODULE = textwrap.dedent(
    """
    import asyncio
    import os

    import redis.asyncio as aredis

    from zephyr_celery import get_app, job

    app = get_app()
    _clients = {}


    def counter():
        loop = asyncio.get_running_loop()
        if loop not in _clients:
            _clients[loop] = aredis.Redis.from_url(os.environ["COUNTER_URL"])
        return _clients[loop]


    @job(retry=0)
    async def nap(i: int, seconds: float) -> int:
        await counter().hincrby("starts", i, 1)
        await asyncio.sleep(seconds)
        await counter().hincrby("finishes", i, 1)
        return i
    """
)


class AsyncScenario(Scenario):
    def start_worker(self, pool: str = "async") -> Proc:
        name = f"worker-{len(self.workers) + 1}"
        worker = self.procs.zephyr(
            name, "jobs", "worker", "-A", MODULE, "-P", pool, "--processes", "1",
            "-c", str(CONCURRENCY), "-n", f"{name}@%h",
        )  # fmt: skip
        self.workers.append(worker)
        wait_until(lambda: "ready." in worker.text(), 60, f"{name} to be ready")
        return worker


@pytest.fixture
def async_scenario(
    tmp_path: Path, own_redis: RedisServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AsyncScenario]:
    with running_scenario(
        AsyncScenario, ASYNC_MODULE, tmp_path, own_redis, redis_url, monkeypatch
    ) as made:
        yield made


@pytest.mark.parametrize("stop", [crash, shut_down], ids=["sigkill", "shutdown"])
async def test_a_short_broker_restart_strands_no_job_on_the_async_pool(
    async_scenario: AsyncScenario, stop: Callable[[RedisServer], None]
) -> None:
    scenario = async_scenario
    worker = scenario.start_worker()
    handles, results = await restart_while_running(scenario, stop, outage=2.0, total=TOTAL)
    assert_all_ran(scenario, results, TOTAL)
    assert {await handle.status() for handle in handles} == {"SUCCESS"}, scenario.report()
    print(f"async/{stop.__name__}: {scenario.duplicates()} duplicate runs")  # -s shows it
    assert scenario.duplicates() <= CONCURRENCY, scenario.report()
    assert worker.alive(), scenario.report()
