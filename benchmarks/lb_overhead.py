"""What the LoadBalancer adds to a request, and how p2c keeps the tail short.

1. Overhead: 3,000 sequential GETs to one local uvicorn backend through
   ``lb.client()`` and through a plain ``httpx.AsyncClient``, interleaved in rounds of
   100 so both see the same machine load. Goal: p50 added <= 0.1 ms, or <= 10% of the
   plain p50 on a slower machine.
2. Throughput with 50 concurrent tasks, same backend: goal ratio >= 0.9.
3. Tail: three backends, one 50 ms slower. After 200 warm-up requests, 3,000 requests
   10 at a time through ``p2c``: goal <= 2% to the slow one and p99 within 2x of an
   all-healthy run; ``round_robin``'s p99 printed beside it.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
from _common import row

from tests.resilience.processes import Backend
from zephyr_resilience import LoadBalancer


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(client: httpx.AsyncClient, path: str, out: list[float]) -> None:
    started = time.perf_counter()
    response = await client.get(path)
    out.append(time.perf_counter() - started)
    response.raise_for_status()


async def overhead(url: str, requests: int = 3000) -> None:
    lb = LoadBalancer(services={"one": [url]}, strategy="round_robin", health_check=None)
    ours: list[float] = []
    raw: list[float] = []
    async with lb, lb.client("one") as balanced, httpx.AsyncClient(base_url=url) as plain:
        for _ in range(50):  # warm both pools and the backend
            await balanced.get("/who")
            await plain.get("/who")
        for _ in range(requests // 100):
            for _ in range(100):
                await timed(balanced, "/who", ours)
            for _ in range(100):
                await timed(plain, "/who", raw)
    p50_ours, p50_raw = statistics.median(ours) * 1000, statistics.median(raw) * 1000
    added = p50_ours - p50_raw
    print(row(f"sequential GET p50 ({requests})", p50_ours, p50_raw, "ms"))
    print(row("sequential GET p99", pct(ours, 0.99) * 1000, pct(raw, 0.99) * 1000, "ms"))
    goal = added <= 0.1 or added <= 0.1 * p50_raw
    print(
        f"  added at p50: {added * 1000:.0f} us ({added / p50_raw:.1%} of the plain p50); "
        f"goal <= 100 us or <= 10%: {'met' if goal else 'NOT met'}"
    )


async def throughput(url: str, requests: int = 3000, concurrency: int = 50) -> None:
    async def run(client: httpx.AsyncClient) -> float:
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                (await client.get("/who")).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)

    lb = LoadBalancer(services={"one": [url]}, strategy="round_robin", health_check=None)
    ours_rates, raw_rates = [], []
    # Both with httpx's default limits (100 connections): the balancer's endpoint pool
    # is a default AsyncHTTPTransport.
    async with lb, lb.client("one") as balanced, httpx.AsyncClient(base_url=url) as plain:
        await run(balanced)
        await run(plain)
        for _ in range(3):
            ours_rates.append(await run(balanced))
            raw_rates.append(await run(plain))
    ours, raw = statistics.median(ours_rates), statistics.median(raw_rates)
    print(row(f"throughput, {concurrency} concurrent", ours, raw, "req/s", lower_is_better=False))
    print(f"  ratio {ours / raw:.2f}; goal >= 0.9: {'met' if ours / raw >= 0.9 else 'NOT met'}")


async def tail(urls: list[str], slow: str | None, strategy: str) -> tuple[float, float]:
    lb = LoadBalancer(services={"three": urls}, strategy=strategy, health_check=None)
    latencies: list[float] = []
    to_slow = 0
    async with lb, lb.client("three") as client:

        async def burst(count: int, record: bool) -> None:
            nonlocal to_slow
            queue = iter(range(count))

            async def worker() -> None:
                nonlocal to_slow
                for _ in queue:
                    started = time.perf_counter()
                    response = await client.get("/who")
                    if record:
                        latencies.append(time.perf_counter() - started)
                        if slow and response.json()["port"] == int(slow.rsplit(":", 1)[1]):
                            to_slow += 1

            await asyncio.gather(*(worker() for _ in range(10)))

        await burst(200, record=False)
        await burst(3000, record=True)
    return pct(latencies, 0.99) * 1000, to_slow / 3000


async def main() -> None:
    single = Backend().start()
    fast = [Backend().start() for _ in range(3)]
    slow = Backend(delay_ms=50).start()
    try:
        await overhead(single.url)
        await throughput(single.url)
        healthy_p99, _ = await tail([b.url for b in fast], None, "p2c")
        mixed = [fast[0].url, fast[1].url, slow.url]
        p2c_p99, p2c_share = await tail(mixed, slow.url, "p2c")
        rr_p99, rr_share = await tail(mixed, slow.url, "round_robin")
        print(row("p99, one backend +50 ms: p2c vs healthy", p2c_p99, healthy_p99, "ms"))
        print(
            f"  p2c sent {p2c_share:.2%} to the slow backend (goal <= 2%: "
            f"{'met' if p2c_share <= 0.02 else 'NOT met'}); p99 within 2x of all-healthy: "
            f"{'met' if p2c_p99 <= 2 * healthy_p99 else 'NOT met'}"
        )
        print(f"  round_robin: p99 {rr_p99:.2f} ms, {rr_share:.2%} to the slow backend")
    finally:
        for backend in (single, *fast, slow):
            backend.stop()


if __name__ == "__main__":
    asyncio.run(main())
