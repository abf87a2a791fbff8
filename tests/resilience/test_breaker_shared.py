"""Breakers of one name in two processes share state through a private Redis; with
Redis unreachable a breaker works on local state and logs one warning."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port
from zephyr_resilience import CircuitBreaker, CircuitBreakerError

REPO = Path(__file__).resolve().parents[2]

PEER = r"""
import asyncio, sys, time
from zephyr_resilience import CircuitBreaker

async def main():
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60, name="shared",
                             storage=sys.argv[1])
    @breaker
    async def ping():
        return None
    await ping()  # starts following the shared state
    await asyncio.wait_for(breaker._shared.connected.wait(), 10)
    print("ready", breaker.state, flush=True)
    seen = breaker.state
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if breaker.state != seen:
            seen = breaker.state
            print("state", seen, repr(time.time()), flush=True)
            if seen == "closed":
                break
        await asyncio.sleep(0.001)
    await breaker.aclose()

asyncio.run(main())
"""


def spawn_peer(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-c", PEER, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


class Boom(Exception):
    pass


@pytest.mark.slow
async def test_two_processes_see_the_same_state_within_100ms(redis_url: str) -> None:
    peer = spawn_peer(redis_url)
    breaker = CircuitBreaker(
        failure_threshold=2, recovery_timeout=60, name="shared", storage=redis_url
    )

    @breaker
    async def call(fail: bool) -> None:
        if fail:
            raise Boom

    try:
        await call(False)
        assert breaker._shared is not None
        await asyncio.wait_for(breaker._shared.connected.wait(), 10)
        line = await asyncio.to_thread(peer.stdout.readline)  # type: ignore[union-attr]
        assert line.split() == ["ready", "closed"]
        for _ in range(2):
            with pytest.raises(Boom):
                await call(True)
        opened = time.time()
        assert breaker.state == "open"
        line = await asyncio.to_thread(peer.stdout.readline)  # type: ignore[union-attr]
        word, state, when = line.split()
        assert (word, state) == ("state", "open")
        assert float(when) - opened < 0.1, f"peer saw it after {float(when) - opened:.3f}s"
        breaker.close()
        closed = time.time()
        line = await asyncio.to_thread(peer.stdout.readline)  # type: ignore[union-attr]
        word, state, when = line.split()
        assert (word, state) == ("state", "closed")
        assert float(when) - closed < 0.1
    finally:
        await breaker.aclose()
        peer.wait(20)
        peer.stdout.close()  # type: ignore[union-attr]


async def test_a_new_process_starts_from_the_shared_state(redis_url: str) -> None:
    first = CircuitBreaker(failure_threshold=1, name="late", storage=redis_url)

    @first
    async def fail() -> None:
        raise Boom

    with pytest.raises(Boom):
        await fail()
    await asyncio.wait_for(first._shared.connected.wait(), 10)  # type: ignore[union-attr]
    while first._shared._pending:  # type: ignore[union-attr]
        await asyncio.sleep(0.001)
    second = CircuitBreaker(failure_threshold=1, name="late", storage=redis_url)

    @second
    async def ok() -> None:
        return None

    try:
        await ok()  # admitted: it has not read the shared state yet
        await asyncio.wait_for(second._shared.connected.wait(), 10)  # type: ignore[union-attr]
        assert second.state == "open"
        with pytest.raises(CircuitBreakerError):
            await ok()
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_redis_keeps_local_state_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60, name="local", storage=url)

    @breaker
    async def call(fail: bool) -> None:
        if fail:
            raise Boom

    with caplog.at_level(logging.WARNING, "zephyr_resilience.breaker"):
        try:
            started = time.perf_counter()
            await call(False)
            for _ in range(2):
                with pytest.raises(Boom):
                    await call(True)
            with pytest.raises(CircuitBreakerError):
                await call(False)
            assert time.perf_counter() - started < 0.2  # never waited on Redis
            deadline = time.monotonic() + 5
            while not any("unreachable" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "no warning logged"
                await asyncio.sleep(0.01)
            # The follower keeps retrying (0.2 s, 0.4 s, ...): still one warning.
            assert breaker._shared is not None
            while breaker._shared.attempts < 3:
                assert time.monotonic() < deadline + 5, "the follower stopped retrying"
                await asyncio.sleep(0.01)
        finally:
            await breaker.aclose()
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0].getMessage()
