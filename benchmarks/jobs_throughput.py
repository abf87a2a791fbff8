"""Job throughput: zephyr_celery's @job against plain Celery, same Redis, same run.

The proposal's load test: N async jobs, ``await job.delay(...)`` each, then wait
for all of them; end-to-end jobs/s with our documented worker
(``zephyr jobs worker -A module``: the async pool, one process per core, 100 jobs
at once each), median of 3. In the same run a plain Celery app with default
settings (``@app.task``, the default prefork worker, one process per core,
``.delay()`` then ``ResultSet.join_native()``) on the same private Redis, also
median of 3. Then:

- a mixed I/O load: jobs that each wait 50 ms (``await asyncio.sleep(0.05)`` in
  ours, ``time.sleep(0.05)`` in plain Celery's sync task, as its users write it);
- the round trip of one job on an idle worker (p50, p99);
- CPU per job in each worker process (from /proc, over the three load runs) and the
  workers' resident memory (all their processes) after the load;
- with ``--with-taskiq``, taskiq with taskiq-redis (its documented setup: a
  ``ListQueueBroker`` with the ``RedisAsyncResultBackend``, ``taskiq worker --workers 2``,
  ``await task.kiq()`` then ``wait_result()``), median of 3, from its own virtual
  environment (``--taskiq-venv``, made with pip when missing: taskiq-redis pins a
  redis-py of its own);
- with ``--scale``, one ``zephyr jobs worker --processes 1`` against two of them on
  the same Redis and cores (the scale goal: two drain 1.8x what one does);
- with ``--aio-pool DIR`` (the unpacked ``celery-aio-pool`` wheel, never installed
  here), plain Celery with that pool (``-P custom``) on an ``async def`` task.

    .venv/bin/python benchmarks/jobs_throughput.py [--jobs 10000] [--mixed-jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


    @job
    async def io_job(i: int) -> int:
        await asyncio.sleep(0.05)
        return i
    """
).replace("from zephyr_celery", "import asyncio\n\nfrom zephyr_celery", 1)

PLAIN = textwrap.dedent(
    """
    import os

    from celery import Celery

    app = Celery("plain", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])


    @app.task
    def test_job(data):
        return f"processed_{data}"


    @app.task
    def io_job(i):
        time.sleep(0.05)
        return i
    """
).replace("import os", "import os\nimport time", 1)

#: Plain Celery on celery-aio-pool: its documented use, an ``async def`` task.
AIO = textwrap.dedent(
    """
    import asyncio
    import os

    from celery import Celery

    app = Celery("aio", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])


    @app.task
    async def test_job(data):
        return f"processed_{data}"


    @app.task
    async def io_job(i):
        await asyncio.sleep(0.05)
        return i
    """
)


TASKIQ = textwrap.dedent(
    """
    import os

    from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

    url = os.environ["BENCH_REDIS"]
    broker = ListQueueBroker(url).with_result_backend(RedisAsyncResultBackend(url))


    @broker.task
    async def test_job(data: str) -> str:
        return f"processed_{data}"
    """
)

#: Run by taskiq's interpreter: warm up, then the load; prints jobs/s.
TASKIQ_CLIENT = textwrap.dedent(
    """
    import asyncio
    import sys
    import time

    from bench_taskiq import broker, test_job


    async def main(n):
        await broker.startup()
        for _ in range(20):
            await (await test_job.kiq("warm")).wait_result(timeout=60, check_interval=0.01)
        start = time.perf_counter()
        tasks = [await test_job.kiq(f"data_{i}") for i in range(n)]
        for task in tasks:
            result = await task.wait_result(timeout=300, check_interval=0.01)
        assert result.return_value == f"processed_data_{n - 1}", result
        print(n / (time.perf_counter() - start))
        await broker.shutdown()


    asyncio.run(main(int(sys.argv[1])))
    """
)


def taskiq_python(venv: Path) -> Path:
    """The taskiq virtual environment's interpreter; made with pip when missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "taskiq", "taskiq-redis"], check=True
        )
    return python


def taskiq_load(python: Path, directory: Path, env: dict[str, str], n: int) -> float:
    done = subprocess.run(
        [str(python), str(directory / "bench_taskiq_client.py"), str(n)],
        cwd=directory, env=env, capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


@contextmanager
def worker(
    command: list[str], directory: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker subprocess running ``command``."""
    log = (directory / "worker.log").open("ab")
    proc = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += process_tree(int(child))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes together, in MiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def measure_load(
    proc: subprocess.Popen[bytes], load: Callable[[], float], runs: int, n: int
) -> tuple[float, list[float], float]:
    """Median rate of ``runs`` loads; CPU µs per job of each busy process; RSS after."""
    pids = process_tree(proc.pid)
    before = cpu_seconds(pids)
    rates = [load() for _ in range(runs)]
    after = cpu_seconds(pids)
    per_job = sorted(((after[p] - before[p]) * 1e6 / (n * runs) for p in pids), reverse=True)
    return statistics.median(rates), [us for us in per_job if us >= 1], rss_mib(pids)


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


async def ours_mixed(jobs: Any, n: int) -> float:
    start = time.perf_counter()
    handles = [await jobs.io_job.delay(i) for i in range(n)]
    results = await asyncio.gather(*(h.wait(timeout=600) for h in handles))
    assert results[-1] == n - 1
    return n / (time.perf_counter() - start)


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


def plain_mixed(plain: Any, n: int) -> float:
    from celery.result import ResultSet

    start = time.perf_counter()
    values = ResultSet([plain.io_job.delay(i) for i in range(n)]).join_native(timeout=900)
    assert values[-1] == n - 1
    return n / (time.perf_counter() - start)


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
    parser.add_argument("--runs", type=int, default=3, help="load runs (the median is shown)")
    parser.add_argument("--mixed-jobs", type=int, default=10_000, help="50 ms jobs, ours")
    parser.add_argument(
        "--plain-mixed-jobs",
        type=int,
        default=None,
        help="50 ms jobs for plain Celery (default: --mixed-jobs; it runs two at a time, "
        "so 10,000 take about 250 s: a steady rate shows with fewer)",
    )
    parser.add_argument("--round-trips", type=int, default=300, help="idle round trips")
    parser.add_argument("--pool", default=None, help="our worker's pool (default: async)")
    parser.add_argument("--processes", type=int, default=None, help="our worker's processes")
    parser.add_argument("--aio-pool", type=Path, default=None, help="unpacked celery-aio-pool")
    parser.add_argument("--with-taskiq", action="store_true", help="measure taskiq too")
    parser.add_argument("--scale", action="store_true", help="one worker against two")
    parser.add_argument(
        "--taskiq-venv", type=Path, default=Path(tempfile.gettempdir()) / "zephyr-bench-taskiq"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zephyr-bench-") as tmp:
        directory = Path(tmp)
        redis = RedisServer(directory / "redis")
        redis.start()
        try:
            (directory / "bench_ours.py").write_text(OURS)
            (directory / "bench_plain.py").write_text(PLAIN)
            (directory / "bench_aio.py").write_text(AIO)
            (directory / "bench_taskiq.py").write_text(TASKIQ)
            (directory / "bench_taskiq_client.py").write_text(TASKIQ_CLIENT)
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
            if args.processes:
                ours_worker += ["--processes", str(args.processes)]
            figures = run(bench_ours, bench_plain, directory, env, redis, args, ours_worker)
        finally:
            redis.stop()
    report(figures, args)


def run(
    ours: Any, plain: Any, directory: Path, env: dict[str, str], redis: RedisServer,
    args: argparse.Namespace, ours_worker: list[str],
) -> dict[str, Any]:  # fmt: skip
    n, runs = args.jobs, args.runs
    plain_mixed_n = args.plain_mixed_jobs or args.mixed_jobs
    figures: dict[str, Any] = {"plain_mixed_n": plain_mixed_n}
    loop = asyncio.new_event_loop()
    try:
        # Enqueue only: no worker runs; the queue is emptied afterwards.
        figures["ours_enqueue"] = loop.run_until_complete(ours_enqueue(ours, n))
        redis.flushall()
        figures["plain_enqueue"] = plain_enqueue(plain, n)
        redis.flushall()

        with worker(ours_worker, directory, env) as proc:
            loop.run_until_complete(ours_round_trips(ours, 20))  # warm up, worker ready
            figures["ours_rt"] = loop.run_until_complete(ours_round_trips(ours, args.round_trips))
            figures["ours_e2e"], figures["ours_cpu"], figures["ours_rss"] = measure_load(
                proc, lambda: loop.run_until_complete(ours_end_to_end(ours, n)), runs, n
            )
            figures["ours_mixed"] = loop.run_until_complete(ours_mixed(ours, args.mixed_jobs))
        redis.flushall()

        plain_worker = [str(CELERY), "-A", "bench_plain", "worker", "-l", "warning"]
        with worker(plain_worker, directory, env) as proc:
            plain_round_trips(plain, 20)
            figures["plain_rt"] = plain_round_trips(plain, args.round_trips)
            figures["plain_e2e"], figures["plain_cpu"], figures["plain_rss"] = measure_load(
                proc, lambda: plain_end_to_end(plain, n), runs, n
            )
            figures["plain_mixed"] = plain_mixed(plain, plain_mixed_n)
        redis.flushall()

        if args.scale:
            one = [*ours_worker, "--processes", "1"]
            for count in (1, 2):
                with contextlib.ExitStack() as stack:
                    for index in range(count):
                        stack.enter_context(
                            worker([*one, "-n", f"scale{index}@%h"], directory, env)
                        )
                    loop.run_until_complete(ours_round_trips(ours, 20))
                    rates = [loop.run_until_complete(ours_end_to_end(ours, n)) for _ in range(runs)]
                    figures[f"scale_{count}"] = statistics.median(rates)
                redis.flushall()

        if args.with_taskiq:
            python = taskiq_python(args.taskiq_venv)
            taskiq_env = dict(env, PYTHONPATH=str(directory))
            taskiq_worker = [str(python.with_name("taskiq")), "worker", "bench_taskiq:broker",
                             "--workers", "2", "--log-level", "WARNING"]  # fmt: skip
            with worker(taskiq_worker, directory, taskiq_env):
                rates = [taskiq_load(python, directory, taskiq_env, n) for _ in range(runs)]
                figures["taskiq_e2e"] = statistics.median(rates)
            redis.flushall()

        if args.aio_pool:
            import bench_aio  # type: ignore[import-not-found]

            aio_env = dict(env, CELERY_CUSTOM_WORKER_POOL="celery_aio_pool.pool:AsyncIOPool")
            aio_env["PYTHONPATH"] += os.pathsep + str(args.aio_pool.resolve())
            aio_worker = [str(CELERY), "-A", "bench_aio", "worker", "-P", "custom", "-l", "warning"]
            with worker(aio_worker, directory, aio_env):
                plain_round_trips(bench_aio, 20)
                figures["aio_e2e"] = plain_end_to_end(bench_aio, n)
                figures["aio_mixed_n"] = min(plain_mixed_n, 400)
                figures["aio_mixed"] = plain_mixed(bench_aio, figures["aio_mixed_n"])
            redis.flushall()
    finally:
        loop.close()
    return figures


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    def line(label: str, ours: float, raw: float, unit: str, fmt: Callable[[float], str]) -> None:
        ratio = ours / raw if raw else float("nan")
        print(f"{label:<36} ours {fmt(ours):>10} {unit:<6} raw Celery {fmt(raw):>10} {unit:<6}"
              f" ratio {ratio:5.2f}x")  # fmt: skip

    rate: Callable[[float], str] = lambda v: f"{v:,.0f}"  # noqa: E731
    ms: Callable[[float], str] = lambda v: f"{v * 1000:.2f}"  # noqa: E731
    mib: Callable[[float], str] = lambda v: f"{v:,.0f}"  # noqa: E731
    print(
        f"jobs per load run: {args.jobs:,} (median of {args.runs}); mixed: {args.mixed_jobs:,} "
        f"ours, {figures['plain_mixed_n']:,} plain Celery; {os.cpu_count()} cores shared with "
        "other work: compare within a run"
    )
    line(
        "end to end (delay all, wait all)",
        figures["ours_e2e"],
        figures["plain_e2e"],
        "jobs/s",
        rate,
    )
    line(
        "mixed I/O load (50 ms waits)",
        figures["ours_mixed"],
        figures["plain_mixed"],
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
    line("worker RSS after the load", figures["ours_rss"], figures["plain_rss"], "MiB", mib)
    us = lambda values: " + ".join(f"{v:.0f}" for v in values)  # noqa: E731
    print(f"CPU per job, each worker process (µs): ours {us(figures['ours_cpu'])} = "
          f"{sum(figures['ours_cpu']):.0f}; raw Celery {us(figures['plain_cpu'])} = "
          f"{sum(figures['plain_cpu']):.0f}")  # fmt: skip
    if "scale_1" in figures:
        one, two = figures["scale_1"], figures["scale_2"]
        print(
            f"scale: one worker process {one:,.0f} jobs/s, two {two:,.0f} jobs/s: {two / one:.2f}x"
        )
    if "taskiq_e2e" in figures:
        print(f"taskiq end to end: {figures['taskiq_e2e']:,.0f} jobs/s (median of {args.runs}); "
              f"ours / taskiq {figures['ours_e2e'] / figures['taskiq_e2e']:.2f}x")  # fmt: skip
    else:
        print("taskiq: not measured (--with-taskiq)")
    if "aio_e2e" in figures:
        line("celery-aio-pool: end to end", figures["ours_e2e"], figures["aio_e2e"], "jobs/s", rate)
        print(f"{'  (ratio: ours / celery-aio-pool)':<36}")
        line(
            f"celery-aio-pool: mixed ({figures['aio_mixed_n']} jobs)",
            figures["ours_mixed"], figures["aio_mixed"], "jobs/s", rate,
        )  # fmt: skip
    goals = {
        "end to end >= 2x plain Celery": figures["ours_e2e"] >= 2 * figures["plain_e2e"],
        "mixed load >= 10x plain Celery": figures["ours_mixed"] >= 10 * figures["plain_mixed"],
        "round trip p50 <= 2 ms": statistics.median(ours_rt) <= 0.002,
        "worker RSS <= 1.2x plain Celery": figures["ours_rss"] <= 1.2 * figures["plain_rss"],
    }
    if "taskiq_e2e" in figures:
        goals["end to end >= 1.0x taskiq"] = figures["ours_e2e"] >= figures["taskiq_e2e"]
    for goal, met in goals.items():
        print(f"goal {goal:<36} {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
