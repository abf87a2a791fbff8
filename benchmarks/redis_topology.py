"""Sentinel clients: ours (zephyr_core._redis_clients) beside raw redis-py's, same topology.

1. SET+GET round trips per operation (sync and async): our ``sync_client`` /
   ``async_client`` vs redis-py's ``Sentinel(...).master_for(...)`` with the same options.
   Ours adds only a record of each master discovery (at connect), so the goal is <= 1.05x.
2. ``resolve_master_sync`` vs a raw ``Sentinel.discover_master`` (each on a fresh
   Sentinel client, as a health check does).
3. Fail-over: SIGKILL the master while both clients write in a loop; the seconds until
   each writes again (it needs the Sentinels to promote the replica: down-after 1 s).

Private topologies of real redis-server processes (tests.servers). Run:
``python benchmarks/redis_topology.py`` (about half a minute).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from redis.asyncio.sentinel import Sentinel as AsyncSentinel  # noqa: E402
from redis.sentinel import Sentinel  # noqa: E402

from benchmarks._common import row  # noqa: E402
from tests.servers import SentinelTopology  # noqa: E402
from zephyr_core._redis_clients import (  # noqa: E402
    async_client,
    resolve_master_sync,
    sync_client,
)
from zephyr_core._topology import parse_redis_url  # noqa: E402

N = 300  # operations per round
ROUNDS = 40  # short rounds, order swapped each round: a busy machine's noise hits both
TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def per_op_us(fn: Callable[[int], Any], count: int = N) -> float:
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - started) / count * 1e6


def alternate(
    ours: Callable[[], float], raw: Callable[[], float], rounds: int = ROUNDS
) -> tuple[float, float]:
    """Medians over ``rounds``, taking turns (who goes first swaps each round)."""
    mine: list[float] = []
    theirs: list[float] = []
    for number in range(rounds):
        pairs = [(ours, mine), (raw, theirs)]
        for measure, into in pairs if number % 2 else reversed(pairs):
            into.append(measure())
    return statistics.median(mine), statistics.median(theirs)


def sync_round_trips(servers: SentinelTopology) -> None:
    topology = parse_redis_url(servers.url())
    ours = sync_client(topology, **TIMEOUTS)
    raw = Sentinel(servers.sentinel_addresses(), sentinel_kwargs=TIMEOUTS).master_for(
        "mymaster", **TIMEOUTS
    )

    def work(client: Any) -> Callable[[], float]:
        return lambda: per_op_us(lambda i: (client.set(f"k{i}", i), client.get(f"k{i}")))

    mine, theirs = alternate(work(ours), work(raw))
    print(row("sync SET+GET (us per pair)", mine, theirs, "us"))
    ours.close()
    raw.close()


def async_round_trips(servers: SentinelTopology) -> None:
    topology = parse_redis_url(servers.url())

    async def measure() -> tuple[float, float]:
        ours = async_client(topology, **TIMEOUTS)
        raw = AsyncSentinel(servers.sentinel_addresses(), sentinel_kwargs=TIMEOUTS).master_for(
            "mymaster", **TIMEOUTS
        )

        async def one(client: Any) -> float:
            started = time.perf_counter()
            for i in range(N):
                await client.set(f"a{i}", i)
                await client.get(f"a{i}")
            return (time.perf_counter() - started) / N * 1e6

        mine: list[float] = []
        theirs: list[float] = []
        for number in range(ROUNDS):
            pairs = [(ours, mine), (raw, theirs)]
            for client, into in pairs if number % 2 else reversed(pairs):
                into.append(await one(client))
        await ours.aclose()
        await raw.aclose()
        return statistics.median(mine), statistics.median(theirs)

    mine, theirs = asyncio.run(measure())
    print(row("async SET+GET (us per pair)", mine, theirs, "us"))


def resolves(servers: SentinelTopology) -> None:
    topology = parse_redis_url(servers.url())

    def raw_resolve(_: int) -> None:
        sentinel = Sentinel(servers.sentinel_addresses(), sentinel_kwargs=TIMEOUTS)
        sentinel.discover_master("mymaster")
        sentinel.close()

    mine, theirs = alternate(
        lambda: per_op_us(lambda _: resolve_master_sync(topology), 20),
        lambda: per_op_us(raw_resolve, 20),
    )
    print(row("resolve the master (us per call)", mine, theirs, "us"))


def failover(directory: Path) -> None:
    servers = SentinelTopology(directory / "failover")
    servers.start()
    try:
        topology = parse_redis_url(servers.url())
        clients = {
            "ours": sync_client(topology, **TIMEOUTS),
            "raw": Sentinel(servers.sentinel_addresses(), sentinel_kwargs=TIMEOUTS).master_for(
                "mymaster", **TIMEOUTS
            ),
        }
        killed_at: list[float] = []
        back: dict[str, float] = {}
        stop = threading.Event()

        def writer(name: str, client: Any) -> None:
            while not stop.is_set():
                try:
                    client.set(f"writer-{name}", time.time())
                except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
                    time.sleep(0.01)
                    continue
                if killed_at and name not in back:
                    back[name] = time.monotonic() - killed_at[0]
                time.sleep(0.005)

        threads = [threading.Thread(target=writer, args=item) for item in clients.items()]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        old = servers.kill_master()
        killed_at.append(time.monotonic())
        servers.wait_failover(old)
        deadline = time.monotonic() + 30
        while len(back) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        for client in clients.values():
            client.close()
        print(row("writes again after SIGKILL (s)", back["ours"], back["raw"], "s"))
    finally:
        servers.stop()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # not our fail-over warning amid the figures
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        servers = SentinelTopology(directory / "shared")
        servers.start()
        try:
            print(f"Sentinel topology: 1 master, 1 replica, 3 Sentinels; N={N}, {ROUNDS} rounds")
            sync_round_trips(servers)
            async_round_trips(servers)
            resolves(servers)
        finally:
            servers.stop()
        failover(directory)


if __name__ == "__main__":
    main()
