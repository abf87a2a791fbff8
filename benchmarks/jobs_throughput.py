"""Job throughput: zephyr_celery's @job against plain Celery, same Redis, same run.

The proposal's load test: N async jobs, ``await job.delay(...)`` each, then wait
for all of them; end-to-end jobs/s with our documented worker
(``zephyr jobs worker -A module``: prefork, JOB_WORKER_CONCURRENCY processes, 4 by
default). In the same run a plain Celery app with default settings (``@app.task``,
the default prefork worker, one process per core, ``.delay()`` then
``ResultSet.join_native()``) on the same private Redis, and ours once more at plain
Celery's concurrency, so the gain of the process count is seen apart from the rest.
Also the enqueue-only rate (no worker running) and the round trip of one job on an
idle worker (p50, p99).

    .venv/bin/python benchmarks/jobs_throughput.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer  # noqa: E402

CELERY = Path(sys.executable).with_name("celery")
ZEPHYR = Path(sys.executable).with_name("zephyr")

OURS = textwrap.dedent(
    """
    from zephyr_celery import get_app, job

    app = get_app()


    @job
    async def test_job(data: str) -> str:
        return f"processed_{data}"
    """
)

PLAIN = textwrap.dedent(
    """
    import os

    from celery import Celery

    app = Celery("plain", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])


    @app.task
    def test_job(data):
        return f"processed_{data}"
    """
)


@contextmanager
def worker(command: list[str], directory: Path, env: dict[str, str]) -> Iterator[None]:
    """A worker subprocess running ``command``."""
    log = (directory / "worker.log").open("ab")
    proc = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- ours ----------------------------------------------------------------------------


async def ours_enqueue(jobs: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await jobs.test_job.delay(f"data_{i}")
    return n / (time.perf_counter() - start)


async def ours_end_to_end(jobs: Any, n: int) -> float:
    start = time.perf_counter()
    handles = []
    for i in range(n):
        handles.append(await jobs.test_job.delay(f"data_{i}"))
    results = await asyncio.gather(*(h.wait(timeout=300) for h in handles))
    elapsed = time.perf_counter() - start
    assert results[-1] == f"processed_data_{n - 1}", results[-1]
    return n / elapsed


async def ours_round_trips(jobs: Any, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        handle = await jobs.test_job.delay(f"rt_{i}")
        await handle.wait(timeout=30)
        samples.append(time.perf_counter() - start)
    return samples


# -- plain Celery --------------------------------------------------------------------


def plain_enqueue(plain: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        plain.test_job.delay(f"data_{i}")
    return n / (time.perf_counter() - start)


def plain_end_to_end(plain: Any, n: int) -> float:
    from celery.result import ResultSet

    start = time.perf_counter()
    results = ResultSet([plain.test_job.delay(f"data_{i}") for i in range(n)])
    values = results.join_native(timeout=300)
    elapsed = time.perf_counter() - start
    assert values[-1] == f"processed_data_{n - 1}", values[-1]
    return n / elapsed


def plain_round_trips(plain: Any, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        plain.test_job.delay(f"rt_{i}").get(timeout=30)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument("--round-trips", type=int, default=300, help="idle round trips")
    parser.add_argument("--pool", default=None, help="our worker's pool (default: prefork)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="our worker's processes (default: 4)"
    )
    args = parser.parse_args()
    n = args.jobs

    with tempfile.TemporaryDirectory(prefix="zephyr-bench-") as tmp:
        directory = Path(tmp)
        redis = RedisServer(directory / "redis")
        redis.start()
        try:
            (directory / "bench_ours.py").write_text(OURS)
            (directory / "bench_plain.py").write_text(PLAIN)
            url = redis.url(0)
            env = dict(os.environ, PYTHONPATH=f"{directory}{os.pathsep}{ROOT}")
            env.update(JOB_QUEUE_URL=url, BENCH_REDIS=url)
            os.environ.update(JOB_QUEUE_URL=url, BENCH_REDIS=url)
            sys.path.insert(0, str(directory))
            import bench_ours  # type: ignore[import-not-found]
            import bench_plain  # type: ignore[import-not-found]

            ours_worker = [str(ZEPHYR), "jobs", "worker", "-A", "bench_ours", "-l", "warning"]
            if args.pool:
                ours_worker += ["--pool", args.pool]
            if args.concurrency:
                ours_worker += ["-c", str(args.concurrency)]
            figures = run(
                bench_ours, bench_plain, directory, env, redis, n, args.round_trips, ours_worker
            )
        finally:
            redis.stop()
    report(figures, n)


def run(
    ours: Any, plain: Any, directory: Path, env: dict[str, str], redis: RedisServer,
    n: int, round_trips: int, ours_worker: list[str],
) -> dict[str, Any]:  # fmt: skip
    figures: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    try:
        # Enqueue only: no worker runs; the queue is emptied afterwards.
        figures["ours_enqueue"] = loop.run_until_complete(ours_enqueue(ours, n))
        redis.flushall()
        figures["plain_enqueue"] = plain_enqueue(plain, n)
        redis.flushall()

        with worker(ours_worker, directory, env):
            loop.run_until_complete(ours_round_trips(ours, 20))  # warm up, worker ready
            samples = loop.run_until_complete(ours_round_trips(ours, round_trips))
            figures["ours_rt"] = samples
            figures["ours_e2e"] = loop.run_until_complete(ours_end_to_end(ours, n))
        redis.flushall()

        plain_worker = [str(CELERY), "-A", "bench_plain", "worker", "-l", "warning"]
        with worker(plain_worker, directory, env):
            plain_round_trips(plain, 20)
            figures["plain_rt"] = plain_round_trips(plain, round_trips)
            figures["plain_e2e"] = plain_end_to_end(plain, n)
        redis.flushall()

        # Ours again with as many processes as plain Celery's default (one per core).
        same = [*ours_worker, "-c", str(os.cpu_count() or 1)]
        with worker(same, directory, env):
            loop.run_until_complete(ours_round_trips(ours, 20))
            figures["ours_e2e_same"] = loop.run_until_complete(ours_end_to_end(ours, n))
        redis.flushall()
    finally:
        loop.close()
    return figures


def report(figures: dict[str, Any], n: int) -> None:
    def line(label: str, ours: float, raw: float, unit: str, fmt: Callable[[float], str]) -> None:
        ratio = ours / raw if raw else float("nan")
        print(f"{label:<34} ours {fmt(ours):>10} {unit:<6} raw Celery {fmt(raw):>10} {unit:<6}"
              f" ratio {ratio:5.2f}x")  # fmt: skip

    rate: Callable[[float], str] = lambda v: f"{v:,.0f}"  # noqa: E731
    ms: Callable[[float], str] = lambda v: f"{v * 1000:.2f}"  # noqa: E731
    print(f"jobs per run: {n:,}; 2-core machine shared with other work: compare within a run")
    line(
        "end to end (delay all, wait all)",
        figures["ours_e2e"],
        figures["plain_e2e"],
        "jobs/s",
        rate,
    )
    line(
        f"  same, ours at {os.cpu_count()} processes",
        figures["ours_e2e_same"],
        figures["plain_e2e"],
        "jobs/s",
        rate,
    )
    line(
        "enqueue only (no worker)",
        figures["ours_enqueue"],
        figures["plain_enqueue"],
        "jobs/s",
        rate,
    )
    ours_rt, plain_rt = figures["ours_rt"], figures["plain_rt"]
    line("idle round trip p50", statistics.median(ours_rt), statistics.median(plain_rt), "ms", ms)
    line("idle round trip p99", percentile(ours_rt, 0.99), percentile(plain_rt, 0.99), "ms", ms)
    goals = {
        "end to end >= 1,500 jobs/s": figures["ours_e2e"] >= 1500,
        "end to end >= 1.5x plain Celery": figures["ours_e2e"] >= 1.5 * figures["plain_e2e"],
        "enqueue only >= 5,000 jobs/s": figures["ours_enqueue"] >= 5000,
        "round trip p50 <= 5 ms": statistics.median(ours_rt) <= 0.005,
    }
    for goal, met in goals.items():
        print(f"goal {goal:<34} {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
