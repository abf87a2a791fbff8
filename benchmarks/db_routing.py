"""Database routing benchmark: ``cluster.read()`` beside a raw asyncpg pool, one run.

10,000 ``SELECT 1`` through ``DatabaseCluster.read()`` (one replica URL, which is the
same private PostgreSQL server) and through a plain ``asyncpg.create_pool`` on that
server, both with asyncpg's default pool size (10), one after another and with 50
concurrent tasks. Each round runs both, alternating which goes first, so drift on this
shared machine hits both; the figures are the median rounds' cost per query, and the
median of the rounds' ratios. The client CPU per query (this process's CPU time, which
is what our routing adds to) is the steadiest figure when other work shares the
machine. The cluster's background health check runs meanwhile, as it would in an app.

Goal (issue #13): per-query cost ratio ours/raw <= 1.1 in both. Run:
``python benchmarks/db_routing.py`` (about half a minute; needs PostgreSQL's initdb and
pg_ctl, run as the ``postgres`` user when run as root).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from benchmarks._common import row  # noqa: E402
from tests.db.replication import Primary, postgres_tmpdir  # noqa: E402
from zephyr_db import DatabaseCluster  # noqa: E402

QUERIES = 10_000
CONCURRENCY = 50
ROUNDS = 6


Cost = tuple[float, float]  # (wall, this process's CPU) microseconds per query


async def sequential(run_one: Callable[[], Awaitable[None]]) -> Cost:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(QUERIES):
        await run_one()
    return _per_query(wall, cpu)


def _per_query(wall: float, cpu: float) -> Cost:
    return (
        (time.perf_counter() - wall) / QUERIES * 1e6,
        (time.process_time() - cpu) / QUERIES * 1e6,
    )


async def concurrent(run_one: Callable[[], Awaitable[None]]) -> Cost:
    per_task = QUERIES // CONCURRENCY

    async def task() -> None:
        for _ in range(per_task):
            await run_one()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
    return _per_query(wall, cpu)


async def main(url: str) -> None:
    raw = await asyncpg.create_pool(url)
    cluster = DatabaseCluster(url, [url])
    await cluster.open()

    async def ours_one() -> None:
        async with cluster.read() as conn:
            await conn.fetchval("SELECT 1")

    async def raw_one() -> None:
        async with raw.acquire() as conn:
            await conn.fetchval("SELECT 1")

    print(f"{QUERIES:,} SELECT 1 per measure, per-query cost; raw = asyncpg.create_pool")
    try:
        for mode, label in ((sequential, "sequential"), (concurrent, f"{CONCURRENCY} tasks")):
            await mode(ours_one)  # warm both: connections, statement caches
            await mode(raw_one)
            ours: list[Cost] = []
            theirs: list[Cost] = []
            for number in range(ROUNDS):
                # alternate which goes first, so drift on this shared machine hits both
                if number % 2:
                    theirs.append(await mode(raw_one))
                    ours.append(await mode(ours_one))
                else:
                    ours.append(await mode(ours_one))
                    theirs.append(await mode(raw_one))
            for index, what in ((0, "wall"), (1, "client CPU")):
                mine = statistics.median(c[index] for c in ours)
                raw_cost = statistics.median(c[index] for c in theirs)
                print(row(f"SELECT 1, {label}, {what}", mine, raw_cost, "us"))
            ratios = [a[0] / b[0] for a, b in zip(ours, theirs, strict=True)]
            paired = statistics.median(ratios)
            print(f"{'':<38} wall: median of the {ROUNDS} paired rounds' ratios {paired:.2f}x")
        reads = {s.name: s.reads for s in cluster.status()}
        print(f"reads routed: {reads}, fallbacks to the primary: {cluster.fallbacks}")
    finally:
        await cluster.close()
        await raw.close()


if __name__ == "__main__":
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        sys.exit("db_routing.py needs PostgreSQL's initdb and pg_ctl")
    root = postgres_tmpdir("zephyr-bench-db-")
    server = Primary(root / "pg")
    server.start()
    try:
        asyncio.run(main(server.dsn()))
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
