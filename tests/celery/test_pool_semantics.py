"""The async pool keeps Celery's semantics: each on a real ``zephyr jobs worker``.

Results and failure records, overlap of async jobs, ``timeout=`` cancelling the
coroutine, retries with backoff, sync jobs beside the loop, rate limits, task events
for Flower, revoke with terminate, and the report of a job that blocks the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from typing import Any

import pytest

from tests.celery.pool_worker import PoolWorker, pool_worker
from tests.servers import wait_until
from zephyr_celery import JobFailed, failure_store

pytestmark = pytest.mark.slow

__all__ = ["pool_worker"]  # the fixture, imported for pytest


async def test_async_jobs_overlap_on_one_process(pool_worker: PoolWorker) -> None:
    jobs = pool_worker.jobs
    handles = [await jobs.overlap.delay(0.5) for _ in range(8)]
    pids = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    assert len(set(pids)) == 1, "one worker process ran them all"
    levels = [int(v) for v in pool_worker.counter.lrange("levels", 0, -1)]
    assert max(levels) > 1, f"the jobs ran one at a time: {levels}"
    assert await handles[0].status() == "SUCCESS"


async def test_the_worker_runs_the_async_pool_by_default(pool_worker: PoolWorker) -> None:
    assert "concurrency: 8 (zephyr_celery)" in pool_worker.proc.text()
    stats = await asyncio.to_thread(pool_worker.jobs.app.control.inspect(timeout=3).stats)
    (pool,) = [node["pool"] for node in (stats or {}).values()]
    assert (pool["max-concurrency"], pool["running"], pool["waiting"]) == (8, 0, 0)


async def test_timeout_cancels_the_coroutine_and_fails_the_job(pool_worker: PoolWorker) -> None:
    handle = await pool_worker.jobs.slow.delay("t")
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=60)
    assert caught.value.exc_type == "TimeoutError"
    assert "longer than its timeout of 0.5s" in str(caught.value)
    assert pool_worker.counter.get("t:cancelled") == b"1", "the coroutine was not cancelled"
    assert pool_worker.counter.get("t:finished") is None


async def test_retries_with_backoff_then_succeeds(pool_worker: PoolWorker) -> None:
    handle = await pool_worker.jobs.flaky.delay("f")
    assert await handle.wait(timeout=60) == 3
    times = [float(t) for t in pool_worker.counter.lrange("f:at", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # delay 0.2 doubling, equal jitter: at least half of 0.2, then half of 0.4.
    assert len(gaps) == 2 and gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps


async def test_exhausted_job_is_recorded(pool_worker: PoolWorker) -> None:
    jobs = pool_worker.jobs
    handle = await jobs.fails.delay(7)
    with pytest.raises(JobFailed) as caught:
        await handle.wait(timeout=60)
    assert (caught.value.exc_type, caught.value.exc_message) == ("LookupError", "order 7 not found")
    store = failure_store(jobs.app)
    try:
        record = store.get(handle)
    finally:
        store.close()
    assert record is not None
    assert (record.name, record.args, record.attempts) == ("pool.fails", [7], 2)


async def test_sync_jobs_run_on_threads_beside_the_loop(pool_worker: PoolWorker) -> None:
    name = await (await pool_worker.jobs.sync_thread.delay()).wait(timeout=60)
    assert name.startswith("zephyr-sync"), name


async def test_rate_limit_spaces_the_jobs(pool_worker: PoolWorker) -> None:
    handles = [await pool_worker.jobs.limited.delay(i) for i in range(8)]
    await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    starts = sorted(float(t) for t in pool_worker.counter.lrange("limited", 0, -1))
    # 4/s: eight jobs cannot start within less than about 7/4 s.
    assert starts[-1] - starts[0] >= 1.2, starts


async def test_revoke_terminate_cancels_a_running_job(pool_worker: PoolWorker) -> None:
    jobs, counter = pool_worker.jobs, pool_worker.counter
    handle = await jobs.long.delay("r")
    await asyncio.to_thread(wait_until, lambda: counter.get("r:started"), 30, "the job to start")
    jobs.app.control.revoke(handle.id, terminate=True)
    await asyncio.to_thread(wait_until, lambda: counter.get("r:cancelled"), 30, "the cancel")
    assert counter.get("r:finished") is None
    assert await handle.status() == "REVOKED"
    # The worker goes on with other jobs.
    assert await (await jobs.overlap.delay(0)).wait(timeout=60) > 0


async def test_a_job_blocking_the_loop_is_logged(pool_worker: PoolWorker) -> None:
    handle = await pool_worker.jobs.block.delay(0.8)
    await handle.wait(timeout=60)
    expected = f"job pool.block[{handle.id}] blocked the event loop for "
    await asyncio.to_thread(
        wait_until, lambda: expected in pool_worker.proc.text(), 30, "the block report"
    )
    line = next(x for x in pool_worker.proc.text().splitlines() if expected in x)
    seconds = float(line.split(expected)[1].split("s")[0])
    assert seconds >= 0.5, line


async def test_task_events_for_flower(pool_worker: PoolWorker) -> None:
    jobs = pool_worker.jobs
    events: dict[str, list[str]] = defaultdict(list)
    heartbeat = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "worker-heartbeat":
            heartbeat.set()
        elif "uuid" in event:
            events[event["uuid"]].append(event["type"])

    with jobs.app.connection() as conn:
        receiver = jobs.app.events.Receiver(conn, handlers={"*": on_event})
        thread = threading.Thread(target=receiver.capture, kwargs={"wakeup": False})
        thread.start()
        try:
            assert await asyncio.to_thread(heartbeat.wait, 30), "no worker heartbeat"
            ok = await jobs.overlap.delay(0)
            retried = await jobs.flaky.delay("e")
            failed = await jobs.fails.delay(1)
            await ok.wait(timeout=60)
            await retried.wait(timeout=60)
            with pytest.raises(JobFailed):
                await failed.wait(timeout=60)
            await asyncio.to_thread(
                wait_until,
                lambda: "task-failed" in events[failed.id] and "task-succeeded" in events[ok.id],
                30,
                f"the events (seen: {dict(events)})",
            )
        finally:
            receiver.should_stop = True
            thread.join(10)
    assert events[ok.id] == ["task-sent", "task-received", "task-started", "task-succeeded"]
    assert "task-retried" in events[retried.id] and "task-succeeded" in events[retried.id]
    assert "task-retried" in events[failed.id] and "task-failed" in events[failed.id]


async def test_a_revoked_job_waiting_for_a_slot_never_starts(pool_worker: PoolWorker) -> None:
    jobs, counter = pool_worker.jobs, pool_worker.counter
    busy = [await jobs.long.delay(f"b{i}") for i in range(8)]  # all 8 slots
    await asyncio.to_thread(
        wait_until,
        lambda: all(counter.get(f"b{i}:started") for i in range(8)),
        30,
        "the slots to fill",
    )
    waiting = await jobs.long.delay("w")
    await asyncio.to_thread(
        wait_until, lambda: counter.llen("celery") == 0, 30, "the worker to take it"
    )
    jobs.app.control.revoke(waiting.id)
    jobs.app.control.revoke([h.id for h in busy], terminate=True)
    await asyncio.to_thread(
        wait_until,
        lambda: all(counter.get(f"b{i}:cancelled") for i in range(8)),
        30,
        "the slots to free",
    )
    # Taken after the revoked one (slots go in order): it was skipped by then.
    assert await (await jobs.overlap.delay(0)).wait(timeout=60) > 0
    assert await waiting.status() == "REVOKED"
    assert counter.get("w:started") is None
