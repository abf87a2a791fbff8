"""Tiered caches: local + Redis, kept coherent across processes by pub/sub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from tests.cache.conftest import REPO
from tests.servers import RedisServer
from zephyr_cache import Cache, CacheGroup, configure, get_cache
from zephyr_cache._memory import MISSING


def tiered(url: str, **redis_options: object) -> Cache:
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300, **redis_options},
            "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    return get_cache("hot")


def in_local(cache: Cache, key: str) -> bool:
    return cache._store.tiers[0].backend.lookup(cache.full_key(key)) is not MISSING  # type: ignore[attr-defined]


async def test_reads_fill_upward_and_writes_go_through(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    await get_cache("default").set("k", {"v": 1})  # only in Redis
    assert not in_local(hot, "k")
    assert await hot.get("k") == {"v": 1}  # from Redis, then kept locally
    assert in_local(hot, "k")
    assert await hot.get("k") == {"v": 1}
    tiers = hot.stats()["tiers"]
    assert tiers["local"]["hits"] == 1 and tiers["default"]["hits"] == 1

    await hot.set("w", [1])
    assert in_local(hot, "w") and await get_cache("default").get("w") == [1]
    await hot.delete("w")
    assert not in_local(hot, "w") and await get_cache("default").get("w") is None


async def test_local_copy_never_outlives_the_redis_entry(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    await hot.set("short", 1, timeout=0.3)
    assert await hot.get("short") == 1
    deadline = time.monotonic() + 3
    while await hot.get("short") is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_get_many_fills_local_tiers_with_the_redis_lifetime(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    await get_cache("default").set_many({"a": 1, "b": 2}, timeout=0.3)
    assert await hot.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert in_local(hot, "a") and in_local(hot, "b")
    assert await hot.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert hot.stats()["tiers"]["local"]["hits"] == 2
    deadline = time.monotonic() + 3
    while await hot.get_many(["a", "b"]):
        assert time.monotonic() < deadline, "local copies outlived the Redis entries"
        await asyncio.sleep(0.02)


class Peer:
    """A separate process with its own tiered cache (tests/cache/peer.py)."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "tests.cache.peer", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else line

    def ask(self, command: str) -> object:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def wait_until(self, command: str, expected: object, timeout: float = 2.0) -> float:
        """Ask until the answer is ``expected``; the seconds it took."""
        started = time.monotonic()
        while (answer := self.ask(command)) != expected:
            assert time.monotonic() - started < timeout, f"{command!r} still {answer!r}"
        return time.monotonic() - started

    def close(self) -> None:
        try:
            self.proc.communicate("quit\n", timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def peers(redis_url: str) -> Iterator[tuple[Peer, Peer]]:
    first, second = Peer(redis_url), Peer(redis_url)
    yield first, second
    first.close()
    second.close()
    assert first.proc.returncode == 0 and second.proc.returncode == 0


@pytest.mark.slow
def test_writes_in_one_process_drop_local_copies_in_another(
    peers: tuple[Peer, Peer],
) -> None:
    a, b = peers
    assert a.ask('set k {"v": 1}') is True
    assert b.ask("get k") == {"v": 1}
    assert b.ask("local k") is True  # b now answers from its local tier

    assert a.ask('set k {"v": 2}') is True
    b.wait_until("local k", False)  # dropped by the invalidation message
    assert b.ask("get k") == {"v": 2}

    assert a.ask("delete k") is True
    b.wait_until("local k", False)
    assert b.ask("get k") is None


@pytest.mark.slow
def test_group_invalidation_reaches_other_processes(
    peers: tuple[Peer, Peer], redis_url: str
) -> None:
    a, b = peers
    token_key = "__group__:user:7"
    assert a.ask(f'set {token_key} "t1"') is True
    assert b.ask(f"get {token_key}") == "t1"
    assert b.ask(f"local {token_key}") is True
    a.ask("invalidate user 7")
    b.wait_until(f"local {token_key}", False)
    assert b.ask(f"get {token_key}") is None


async def test_writes_from_this_process_reach_a_peer(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    peer = Peer(redis_url)
    try:
        await hot.set("shared", 1)
        # Our write's invalidation message may reach the peer during or after its first
        # read (then it does not fill, or drops the fill): ask until it keeps the value.
        deadline = time.monotonic() + 5
        while not (peer.ask("get shared") == 1 and peer.ask("local shared") is True):
            assert time.monotonic() < deadline, "the peer never kept 'shared' locally"
        # A plain Redis cache under a tiered one announces its writes too.
        await get_cache("default").set("shared", 2)
        peer.wait_until("get shared", 2)
    finally:
        peer.close()


async def test_an_idle_subscription_stays_up_on_its_pings(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No message for several LOST_AFTER periods: the PONGs keep the channel healthy."""
    import zephyr_cache._invalidation as invalidation

    monkeypatch.setattr(invalidation, "LOST_AFTER", 1.0)
    monkeypatch.setattr(invalidation, "PING_EVERY", 0.1)
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    channel = hot._store.channel  # type: ignore[attr-defined]
    admin = redis.Redis.from_url(redis_url)
    try:
        pings = int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        deadline = time.monotonic() + 10
        # Wait for enough PINGs to span three LOST_AFTER periods.
        while int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)) < pings + 6:
            assert time.monotonic() < deadline, "the listener sends no PING"
            await asyncio.sleep(0.05)
        assert channel.losses == 0
        assert channel.healthy
    finally:
        admin.close()


async def test_lost_channel_flushes_and_bypasses_local_tiers(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    await hot.set("k", 1)
    assert in_local(hot, "k")
    channel = hot._store.channel  # type: ignore[attr-defined]

    # Cut only the subscription: Redis stays up, so reads go to Redis meanwhile.
    admin = redis.Redis.from_url(redis_url)
    admin.client_kill_filter(_type="pubsub")
    deadline = time.monotonic() + 5
    while channel.losses == 0:
        assert time.monotonic() < deadline, "the loss was not noticed"
        await asyncio.sleep(0.01)
    assert not in_local(hot, "k")
    admin.set(hot.full_key("k"), b"2")  # changed behind our back, no message
    assert await hot.get("k") == 2  # from Redis: never the flushed local copy
    # Back: subscribed again, flushed, local tier in use again.
    assert await hot.wait_ready(5)
    assert await hot.get("k") == 2
    assert await hot.get("k") == 2 and in_local(hot, "k")
    admin.close()


@pytest.mark.slow
async def test_redis_down_means_no_local_answers(own_redis: RedisServer) -> None:
    hot = tiered(own_redis.url(), cooldown=0.2)
    assert await hot.wait_ready()
    await hot.set("k", "cached")
    own_redis.kill()
    channel = hot._store.channel  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while channel.healthy:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert await hot.get("k") is None  # never a possibly stale local copy
    own_redis.start()
    assert await hot.wait_ready(5)
    deadline = time.monotonic() + 5
    while not await hot.set("k", "fresh"):  # dropped until the cooldown ends
        assert time.monotonic() < deadline, "the Redis tier did not resume"
        await asyncio.sleep(0.05)
    assert await hot.get("k") == "fresh"
    assert await hot.get("k") == "fresh" and in_local(hot, "k")


async def test_group_on_a_tiered_cache(redis_url: str) -> None:
    hot = tiered(redis_url)
    assert await hot.wait_ready()
    group = CacheGroup("user", cache_name="hot")
    calls = []

    @group.cached(timeout=60)
    async def posts(user_id: int) -> list[int]:
        calls.append(user_id)
        return [user_id]

    await posts(1)
    await posts(1)
    await group.invalidate(1)
    await posts(1)
    assert calls == [1, 1]


FORKED = """
import asyncio, os, sys, time, traceback
from zephyr_cache import close_caches, configure, get_cache

configure({
    "default": {"backend": "redis", "url": sys.argv[1]},
    "local": {"backend": "memory", "max_size": 100},
    "hot": {"backend": "tiered", "tiers": ["local", "default"]},
})

async def setup():  # like an app warming its cache before the server forks workers
    hot = get_cache("hot")
    assert await hot.wait_ready()
    await hot.set("k", 1)
    assert await hot.get("k") == 1
    await close_caches()

asyncio.run(setup())
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    async def child():
        hot = get_cache("hot")
        assert await hot.get("k") == 1
        assert await hot.wait_ready(5), "the forked worker never subscribed"
        assert await hot.get("k") == 1 and await hot.get("k") == 1
        os.write(ready_w, b"r")
        await asyncio.to_thread(os.read, go_r, 1)
        deadline = time.monotonic() + 2
        while await hot.get("k") != 2:
            assert time.monotonic() < deadline, "stale value in the forked worker"
            await asyncio.sleep(0.01)
        await close_caches()
    try:
        asyncio.run(child())
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)
os.read(ready_r, 1)

async def parent():
    await get_cache("hot").set("k", 2)
    await close_caches()

asyncio.run(parent())
os.write(go_w, b"g")
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.slow
def test_forked_workers_listen_on_their_own(redis_url: str) -> None:
    from tests.cache.conftest import python

    done = python(FORKED, redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child 0", done.stderr
