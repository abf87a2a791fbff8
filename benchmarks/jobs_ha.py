"""Enqueue through Redis Sentinel vs a single Redis, and the cost of JOB_ENQUEUE_REPLICAS=1.

One run, one machine, private servers: a single ``redis-server`` and a Sentinel
topology (a master, one replica, three Sentinels). No worker runs: this is the
producer's cost, ``await job.delay(...)`` awaited one after the other (what a request
handler does), in microseconds per enqueue, median of ``--rounds`` rounds of
``--jobs`` each:

1. ours on Sentinel vs ours on a single Redis (issue #15: ratio <= 1.1), and vs ours
   on a ``redis://`` URL naming the Sentinel topology's master itself (what following
   the master costs the client, apart from the server's replication work);
2. the raw library on the same two: plain Celery ``apply_async`` (no result backend:
   only the publish) through kombu's own ``sentinel://`` transport vs its Redis one;
3. ours on Sentinel vs plain Celery through kombu's Sentinel transport;
4. JOB_ENQUEUE_REPLICAS=1 on Sentinel vs without: the WAIT for the replica, per enqueue
   one after the other and with 100 producers at once; beside it the raw cost of the
   same WAIT with redis-py (LPUSH + PUBLISH, then the same plus WAIT 1, one pipeline).

Each round runs the variants in a shuffled order (this machine's other load falls on
each alike); for ours, the producer's own CPU time per enqueue is shown too.

    .venv/bin/python benchmarks/jobs_ha.py [--jobs 1000] [--rounds 11]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from benchmarks._common import row  # noqa: E402
from tests.servers import RedisServer, SentinelTopology  # noqa: E402
from zephyr_celery import create_app, job, set_app  # noqa: E402
from zephyr_core import Settings  # noqa: E402

CONCURRENT = 100
#: CPU microseconds per enqueue of the last ``ours`` run (this process only).
CPU: list[float] = []


@job(name="bench_ha.noop")
async def noop(i: int) -> int:
    return i


async def ours(settings: Settings, n: int, concurrent: int = 1) -> float:
    """Microseconds per ``await noop.delay(i)`` on an app of ``settings`` (wall time;
    this process's CPU time per enqueue goes to ``CPU``)."""
    app = create_app(settings)
    set_app(app)
    try:
        for i in range(20):  # connect, make the template
            await noop.delay(i)
        start, cpu = time.perf_counter(), time.process_time()
        if concurrent == 1:
            for i in range(n):
                await noop.delay(i)
        else:

            async def producer(first: int) -> None:
                for i in range(first, n, concurrent):
                    await noop.delay(i)

            await asyncio.gather(*(producer(k) for k in range(concurrent)))
        CPU.append((time.process_time() - cpu) * 1e6 / n)
        return (time.perf_counter() - start) * 1e6 / n
    finally:
        set_app(None)
        app.close()


def plain(broker: str, options: dict[str, Any], n: int) -> float:
    """Microseconds per plain Celery ``apply_async`` (kombu's transport for ``broker``)."""
    task = _plain_task(broker, options)
    for i in range(20):
        task.apply_async((i,))
    start = time.perf_counter()
    for i in range(n):
        task.apply_async((i,))
    return (time.perf_counter() - start) * 1e6 / n


_plain_tasks: dict[str, Any] = {}


def _plain_task(broker: str, options: dict[str, Any]) -> Any:
    """One plain Celery app per broker, as its users build it (kept for every round)."""
    if broker not in _plain_tasks:
        app = Celery(f"plain_ha_{len(_plain_tasks)}", broker=broker, set_as_current=False)
        app.conf.broker_transport_options = options

        @app.task(name=f"bench_ha.plain_{len(_plain_tasks)}")
        def task(i: int) -> int:
            return i

        _plain_tasks[broker] = task
    return _plain_tasks[broker]


def raw_wait(address: tuple[str, int], n: int, wait: bool) -> float:
    """Microseconds per redis-py pipeline LPUSH + PUBLISH (+ WAIT 1 1000)."""
    client = redis.Redis(host=address[0], port=address[1], db=2)
    try:
        start = time.perf_counter()
        for i in range(n):
            with client.pipeline(transaction=False) as pipe:
                pipe.lpush("q", i).publish("events", i)
                if wait:
                    pipe.execute_command("WAIT", 1, 1000)
                pipe.execute()
        return (time.perf_counter() - start) * 1e6 / n
    finally:
        client.flushdb()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="enqueues per round")
    parser.add_argument("--rounds", type=int, default=11, help="rounds (the median is shown)")
    args = parser.parse_args()
    n = args.jobs

    with tempfile.TemporaryDirectory(prefix="zephyr-bench-ha-") as tmp:
        single = RedisServer(Path(tmp) / "single")
        topology = SentinelTopology(Path(tmp) / "sentinel")
        single.start()
        try:
            topology.start()
            figures = measure(single, topology, n, args.rounds)
        finally:
            topology.stop()
            single.stop()
    report(figures, n, args.rounds)


def measure(
    single: RedisServer, topology: SentinelTopology, n: int, rounds: int
) -> dict[str, float]:
    sentinel_url = topology.url(1)
    master = topology.master_address()
    master_url = f"redis://{master[0]}:{master[1]}/1"  # the same server, without Sentinel
    plain_sentinel = ";".join(
        f"sentinel://{host}:{port}/1" for host, port in topology.sentinel_addresses()
    )
    variants: dict[str, Callable[[], float]] = {
        "ours_single": lambda: run(ours(Settings(JOB_QUEUE_URL=single.url(1)), n)),
        "ours_master": lambda: run(ours(Settings(JOB_QUEUE_URL=master_url), n)),
        "ours_sentinel": lambda: run(ours(Settings(JOB_QUEUE_URL=sentinel_url), n)),
        "ours_sentinel_wait": lambda: run(
            ours(Settings(JOB_QUEUE_URL=sentinel_url, JOB_ENQUEUE_REPLICAS=1), n)
        ),
        "ours_sentinel_conc": lambda: run(
            ours(Settings(JOB_QUEUE_URL=sentinel_url), n, CONCURRENT)
        ),
        "ours_sentinel_wait_conc": lambda: run(
            ours(Settings(JOB_QUEUE_URL=sentinel_url, JOB_ENQUEUE_REPLICAS=1), n, CONCURRENT)
        ),
        "plain_single": lambda: plain(single.url(1), {}, n),
        "plain_sentinel": lambda: plain(plain_sentinel, {"master_name": topology.master_name}, n),
        "raw_nowait": lambda: raw_wait(master, n, wait=False),
        "raw_wait": lambda: raw_wait(master, n, wait=True),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(15)
    for _ in range(rounds):
        shuffle.shuffle(order)  # the machine's other load falls on each variant alike
        for name in order:
            CPU.clear()
            samples[name].append(variants[name]())
            if CPU:
                cpu[name].append(CPU[0])
            flush(single, master)
    figures = {name: statistics.median(values) for name, values in samples.items()}
    figures.update({f"cpu_{name}": statistics.median(v) for name, v in cpu.items() if v})
    return figures


def run(coroutine: Coroutine[Any, Any, float]) -> float:
    return asyncio.run(coroutine)


def flush(single: RedisServer, master: tuple[str, int]) -> None:
    single.flushall()
    client = redis.Redis(host=master[0], port=master[1])
    try:
        client.flushall()
    finally:
        client.close()


def report(f: dict[str, float], n: int, rounds: int) -> None:
    print(f"enqueue, microseconds per job, median of {rounds} rounds of {n} (lower is better)")
    rows = [
        ("ours: Sentinel vs single Redis", "ours_sentinel", "ours_single"),
        ("ours: Sentinel vs redis:// to its master", "ours_sentinel", "ours_master"),
        ("ours, client CPU: Sentinel vs single", "cpu_ours_sentinel", "cpu_ours_single"),
        ("Celery+kombu: Sentinel vs single Redis", "plain_sentinel", "plain_single"),
        ("Sentinel: ours vs Celery+kombu sentinel://", "ours_sentinel", "plain_sentinel"),
        ("single: ours vs Celery+kombu redis://", "ours_single", "plain_single"),
        ("JOB_ENQUEUE_REPLICAS=1 vs 0 (ours)", "ours_sentinel_wait", "ours_sentinel"),
        ("  same, 100 producers at once", "ours_sentinel_wait_conc", "ours_sentinel_conc"),
        ("raw redis-py: +WAIT 1 vs without", "raw_wait", "raw_nowait"),
    ]
    for label, first, second in rows:
        print(row(label, f[first], f[second], "us"))
        if first == "ours_sentinel" and second == "ours_single":
            ratio = f[first] / f[second]
            verdict = "met" if ratio <= 1.1 else "NOT met"
            print(f"  goal (issue #15): Sentinel / single <= 1.1: {ratio:.2f} {verdict}")
    added = f["ours_sentinel_wait"] - f["ours_sentinel"]
    added_conc = f["ours_sentinel_wait_conc"] - f["ours_sentinel_conc"]
    raw_added = f["raw_wait"] - f["raw_nowait"]
    print(
        f"  JOB_ENQUEUE_REPLICAS=1 costs {added:.0f} us per enqueue one after the other "
        f"({added_conc:.0f} us with {CONCURRENT} producers); the WAIT itself costs "
        f"{raw_added:.0f} us with redis-py"
    )  # fmt: skip


if __name__ == "__main__":
    main()
