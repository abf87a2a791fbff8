"""What a CircuitBreaker adds to a call that succeeds.

Ours: an ``async def`` wrapped by ``@CircuitBreaker``, awaited, against the bare
``async def`` awaited. Beside it, from the same run: what pybreaker's own synchronous
``call`` adds to a plain function (goal: ours adds no more), and what pybreaker's
``calling()`` context manager adds around an await (the other way to do it).
Each figure is the median of 7 rounds of 20,000 calls, in microseconds per call.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import pybreaker
from _common import row

from zephyr_resilience import CircuitBreaker

CALLS = 20_000
ROUNDS = 7


async def bare_async() -> int:
    return 1


def bare_sync() -> int:
    return 1


async def per_call_async(fn: Callable[[], Awaitable[int]]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        await fn()
    return (time.perf_counter() - started) / CALLS * 1e6


def per_call_sync(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - started) / CALLS * 1e6


async def main() -> None:
    ours = CircuitBreaker(failure_threshold=5, name="bench")(bare_async)
    raw = pybreaker.CircuitBreaker(fail_max=5)

    def raw_call() -> int:
        return raw.call(bare_sync)

    async def raw_calling() -> int:
        with raw.calling():
            return await bare_async()

    samples: dict[str, list[float]] = {k: [] for k in ("bare_a", "ours", "bare_s", "raw", "ctx")}
    for _ in range(ROUNDS):
        samples["bare_a"].append(await per_call_async(bare_async))
        samples["ours"].append(await per_call_async(ours))
        samples["bare_s"].append(per_call_sync(bare_sync))
        samples["raw"].append(per_call_sync(raw_call))
        samples["ctx"].append(await per_call_async(raw_calling))
    med = {k: statistics.median(v) for k, v in samples.items()}
    ours_added = med["ours"] - med["bare_a"]
    raw_added = med["raw"] - med["bare_s"]
    ctx_added = med["ctx"] - med["bare_a"]
    print(row("breaker added: ours async vs pybreaker call", ours_added, raw_added, "us"))
    print(row("breaker added: ours async vs calling()", ours_added, ctx_added, "us"))
    verdict = "met" if ours_added <= raw_added * 1.05 else "NOT met"
    print(f"  goal: ours adds no more than pybreaker's own sync call: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
