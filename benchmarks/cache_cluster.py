"""Cache benchmark on Redis Cluster (and Sentinel fail-over): ours beside raw redis-py, one run.

1. 2,000 sets then 2,000 gets, per-operation microseconds: our cache on a
   ``redis+cluster://`` URL vs raw ``redis.asyncio.RedisCluster`` (defaults) doing the
   same work a cache does (JSON-encode, ``SET key value EX 300``; ``GET``, JSON-decode).
2. ``get_many``/``set_many`` of 100 keys spread over every shard vs raw redis-py's
   ``mget_nonatomic`` and a non-transactional cluster pipeline of ``SET ... EX``.
3. A tiered cache's set (announced with SPUBLISH in the write's script) vs raw SET.
4. Fail-over: a Cluster master and a Sentinel master SIGKILLed while a loop of cached
   calls runs: exceptions, wrong values, and seconds until the Redis tier serves the
   killed shard / the new master again.

Goal (issue #15): cache get/set on Cluster <= 1.1x raw redis-py ``RedisCluster``.
Run: ``python benchmarks/cache_cluster.py`` (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redis.asyncio import RedisCluster  # noqa: E402
from redis.asyncio.cluster import ClusterNode  # noqa: E402

from tests.servers import RedisClusterServers, SentinelTopology  # noqa: E402
from zephyr_cache import cache, close_caches, configure, get_cache, reset  # noqa: E402
from zephyr_cache._cluster import slot_tag  # noqa: E402

N = 1_000
ROUNDS = 50  # alternating rounds per comparison (100 for get and set)
VALUE = {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "active": True}


async def per_op(fn: Callable[[int], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await fn(i)
    return (time.perf_counter() - started) / count * 1e6


def raw_client(cluster: RedisClusterServers) -> RedisCluster:
    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.master_ports()]
    return RedisCluster(startup_nodes=nodes)


def configure_on(url: str, tiered: bool = True) -> None:
    """A Redis cache on ``url`` and (``tiered``) a tiered cache over it. Under a tiered
    cache, the Redis cache announces its own writes too, so section 1 goes without."""
    caches: dict[str, dict[str, Any]] = {
        "default": {"backend": "redis", "url": url, "timeout": 300},
        "local": {"backend": "memory", "max_size": 10_000, "timeout": 300},
    }
    if tiered:
        caches["hot"] = {"backend": "tiered", "tiers": ["local", "default"]}
    configure(caches)


async def paired(
    ours: Callable[[int, int], Awaitable[Any]],
    raw: Callable[[int, int], Awaitable[Any]],
    count: int = 20,
    rounds: int = ROUNDS,
) -> tuple[float, float, float]:
    """Median us per call of ours and raw, and the median of their per-round ratios.

    Short rounds taking turns (in alternating order) put the same background load on
    both: this machine is shared, and a ratio within one round is what is compared.
    """
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    ratios = []
    for r in range(rounds):
        order = [("ours", ours), ("raw", raw)]
        if r % 2:
            order.reverse()
        spent = {}
        for name, fn in order:
            spent[name] = await per_op(lambda i, f=fn, r=r: f(r, i), count)
            times[name].append(spent[name])
        ratios.append(spent["ours"] / spent["raw"])
    return (
        statistics.median(times["ours"]),
        statistics.median(times["raw"]),
        statistics.median(ratios),
    )


def row3(label: str, measured: tuple[float, float, float]) -> None:
    ours, raw, ratio = measured
    print(f"  {label:<44} ours {ours:8.2f} us   raw {raw:8.2f} us   ratio {ratio:5.2f}x")


async def get_and_set(cluster: RedisClusterServers) -> None:
    print("\n1. 2,000 sets then 2,000 gets on a 3-master Cluster (100 alternating rounds of 20)")
    configure_on(cluster.url(), tiered=False)
    ours = get_cache()
    raw = raw_client(cluster)
    await raw.initialize()
    await ours.set("warm", 1)

    async def raw_set(r: int, i: int) -> None:
        await raw.set(f"raw:{r}:{i}", json.dumps(VALUE), ex=300)

    async def raw_get(r: int, i: int) -> Any:
        payload = await raw.get(f"raw:{r}:{i}")
        return None if payload is None else json.loads(payload)

    sets = await paired(lambda r, i: ours.set(f"{r}:{i}", VALUE), raw_set, 20, 100)
    gets = await paired(lambda r, i: ours.get(f"{r}:{i}"), raw_get, 20, 100)
    assert await ours.get("0:7") == VALUE and await raw_get(0, 7) == VALUE
    row3("Cluster set (raw: RedisCluster + json)", sets)
    row3("Cluster get (raw: RedisCluster + json)", gets)
    met = sets[2] <= 1.1 and gets[2] <= 1.1
    print(f"  goal: get and set <= 1.1x raw RedisCluster -> {'met' if met else 'NOT met'}")

    print("\n2. get_many / set_many of 100 keys over every shard")
    keys = [f"many:{i}" for i in range(100)]
    mapping = dict.fromkeys(keys, VALUE)

    async def raw_set_many(r: int, i: int) -> None:
        async with raw.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set("raw:" + key, json.dumps(VALUE), ex=300)
            await pipe.execute()

    async def raw_get_many(r: int, i: int) -> list[Any]:
        payloads = await raw.mget_nonatomic(["raw:" + key for key in keys])
        return [json.loads(p) for p in payloads if p is not None]

    set_many = await paired(lambda r, i: ours.set_many(mapping), raw_set_many, 2)
    get_many = await paired(lambda r, i: ours.get_many(keys), raw_get_many, 2)
    assert len(await ours.get_many(keys)) == 100 and len(await raw_get_many(0, 0)) == 100
    row3("set_many 100 (raw: SET EX pipeline)", set_many)
    row3("get_many 100 (raw: mget_nonatomic)", get_many)
    print("  (ours: one script per slot, all or nothing within a slot; raw: plain SETs)")

    print("\n3. A tiered cache's set: announced with SPUBLISH inside the write's script")
    await close_caches()
    configure_on(cluster.url())
    hot = get_cache("hot")
    assert await hot.wait_ready(10)
    tiered = await paired(lambda r, i: hot.set(f"t:{r}:{i}", VALUE), raw_set)
    row3("tiered set (raw: RedisCluster SET + json)", tiered)
    await raw.aclose()
    await close_caches()
    reset()  # stop listening before the cluster stops


async def killed(kind: str, kill: Callable[[], object], probe: str) -> None:
    """Cached calls across a master's SIGKILL; prints errors, wrong values, recovery."""

    @cache.cached(timeout=60)
    async def square(x: int) -> int:
        return x * x

    errors = wrong = calls = 0
    killed_at = back = 0.0
    started = time.monotonic()
    while calls < 10_000 or not back:
        if time.monotonic() - started > 60:
            break
        if calls == 2_000:
            kill()
            killed_at = time.monotonic()
        try:
            if await square(calls % 300) != (calls % 300) ** 2:
                wrong += 1
        except Exception:
            errors += 1
        calls += 1
        if killed_at and not back and calls % 20 == 0:
            if await get_cache().set(probe, calls) and await get_cache().get(probe) == calls:
                back = time.monotonic() - killed_at
            else:
                await asyncio.sleep(0.005)
    shown = f"{back:.2f} s" if back else "NOT within 60 s"
    print(
        f"  {kind:<9} {calls:6d} cached calls: {errors} exceptions, {wrong} wrong values; "
        f"tier back {shown} after the kill (goal <= 10 s -> "
        f"{'met' if back and back <= 10 and not errors and not wrong else 'NOT met'})"
    )
    await close_caches()
    reset()


async def failovers(directory: Path) -> None:
    print("\n4. A master SIGKILLed under cached calls (kill at call 2,000)")
    cluster = RedisClusterServers(directory / "cluster-ha", masters=3, replicas_per_master=1)
    cluster.start()
    try:
        configure_on(cluster.url())
        # The probe lives on the killed shard: slot 0 belongs to the first master.
        await killed("Cluster", lambda: cluster.kill_master(0), f"probe{{{slot_tag(0)}}}")
    finally:
        cluster.stop()
    topology = SentinelTopology(directory / "sentinel")
    topology.start()
    try:
        configure_on(topology.url())
        await killed("Sentinel", topology.kill_master, "probe")
    finally:
        topology.stop()


async def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="  log: %(message)s")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisClusterServers(Path(tmp) / "cluster", masters=3, replicas_per_master=0)
        cluster.start()
        try:
            print(f"private 3-master Redis Cluster; Python {sys.version.split()[0]}")
            await get_and_set(cluster)
        finally:
            cluster.stop()
        await failovers(Path(tmp))
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
