"""The async pool's pure parts: the loop watch on an injected clock, worker names,
the core count under a container's CPU quota."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from zephyr_celery._loop_watch import LoopWatch
from zephyr_celery._processes import core_count, worker_name


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_watch_names_the_blocking_task_and_how_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    watch = LoopWatch(asyncio.get_running_loop(), threshold=0.25, clock=clock)
    watch.last_turn = clock.now
    caplog.set_level(logging.WARNING, logger="zephyr_celery")

    async def job() -> None:
        clock.now += 0.2  # within the threshold (plus the heartbeat's interval): quiet
        watch.check()
        assert not caplog.records
        clock.now += 0.3  # now blocked 0.4375 s past the heartbeat's due time
        watch.check()

    await asyncio.create_task(job(), name="shop.report[42]")
    (started,) = caplog.messages
    assert started.startswith("job shop.report[42] is blocking the event loop (0.44s so far)")
    clock.now += 0.5
    watch.last_turn = clock.now  # the loop turned again
    watch.check()
    ended = caplog.messages[-1]
    assert ended.startswith("job shop.report[42] blocked the event loop for 0.94s")
    assert watch.longest == pytest.approx(0.9375)


@pytest.mark.parametrize(
    ("hostname", "index", "name"),
    [(None, 1, "zephyr1@%h"), ("mail@%h", 2, "mail-2@%h"), ("mail", 3, "mail-3")],
)
def test_worker_names(hostname: str | None, index: int, name: str) -> None:
    assert worker_name(hostname, index) == name


@pytest.mark.parametrize(
    ("cpu_max", "at_most"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1)]
)
def test_core_count_follows_a_cpu_quota(tmp_path: Path, cpu_max: str, at_most: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    unlimited = core_count(tmp_path / "missing")
    assert core_count(path) == (unlimited if at_most is None else min(unlimited, at_most))
