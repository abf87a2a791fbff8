"""Warmers: registered by name, run from code or from `zephyr cache warm NAME`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cache.conftest import REPO
from zephyr_cache import Cache, CacheError, cache
from zephyr_cache._warmers import _warmers

APP = """
import sys
from zephyr_cache import cache, configure

configure({"default": {"backend": "redis", "url": "%s"}})

@cache.cached(timeout=300, key_prefix="user")
async def get_user_profile(user_id: int) -> dict:
    return {"id": user_id}

@cache.warmer("user_profiles")
async def warm_user_profiles() -> None:
    for user_id in (1, 2, 3):
        await get_user_profile.warm_cache(user_id)
"""


@pytest.fixture
def clean_warmers() -> object:
    before = dict(_warmers)
    yield None
    _warmers.clear()
    _warmers.update(before)


async def test_warmer_runs_by_name(any_cache: Cache, clean_warmers: object) -> None:
    @cache.cached(timeout=300)
    async def profile(user_id: int) -> int:
        return user_id

    @cache.warmer("profiles")
    async def warm_profiles() -> None:
        for user_id in (1, 2):
            await profile.warm_cache(user_id)

    @cache.warmer("sync_one")
    def warm_sync() -> None:
        pass

    assert await cache.warm("profiles") == ["profiles"]
    assert await any_cache.get_entry(any_cache.full_key(profile.cache_key(2))) == [2]
    assert await cache.warm() == ["profiles", "sync_one"]
    with pytest.raises(
        CacheError, match=r"no cache warmer named 'nope' \(known: profiles, sync_one\)"
    ):
        await cache.warm("nope")


def test_warmer_names_are_unique(clean_warmers: object) -> None:
    @cache.warmer("one")
    async def first() -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @cache.warmer("one")
        async def second() -> None: ...

    with pytest.raises(TypeError, match="must take no arguments"):

        @cache.warmer("args")
        async def needs(x: int) -> None: ...


def zephyr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zephyr_core", "cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_cli_warm_imports_the_app_module(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "myapp_caches.py").write_text(APP % redis_url)
    done = zephyr("-A", "myapp_caches", "warm", "user_profiles", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warmed: user_profiles" in done.stdout
    import redis

    client = redis.Redis.from_url(redis_url)
    assert json.loads(client.get("zephyr:1:user:3") or b"null") == [{"id": 3}]
    client.close()


def test_cli_warm_errors_are_one_line(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "myapp_caches.py").write_text(APP % redis_url)
    unknown = zephyr("-A", "myapp_caches", "warm", "nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no cache warmer named 'nope' (known: user_profiles)" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = zephyr("-A", "no_such_module", "warm", "x", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no module named 'no_such_module'" in missing.stderr
    no_app = zephyr("warm", "x", cwd=tmp_path)
    assert no_app.returncode == 2 and "-A/--app" in no_app.stderr


BROKEN = """
from zephyr_cache import cache, configure

configure({"default": {"backend": "redis", "url": "%s"}})

@cache.warmer("broken")
def warm_broken() -> None:
    raise ValueError("the catalogue service answered 503")
"""


def test_cli_warm_with_a_failing_warmer_is_one_line(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "myapp_caches.py").write_text(BROKEN % redis_url)
    for args in (["warm", "broken"], ["warm"]):
        failed = zephyr("-A", "myapp_caches", *args, cwd=tmp_path)
        assert failed.returncode == 1, failed.stderr
        assert "Traceback" not in failed.stderr
        assert failed.stderr.strip().splitlines() == [
            "Error: cache warmer 'broken' (myapp_caches.warm_broken) failed: "
            "ValueError: the catalogue service answered 503"
        ]


async def test_a_failing_warmer_raises_cache_error_naming_it(
    any_cache: Cache, clean_warmers: object
) -> None:
    @cache.warmer("fine")
    async def warm_fine() -> None:
        await any_cache.set("fine", True)

    @cache.warmer("zz_broken")
    async def warm_broken() -> None:
        raise KeyError("sku")

    with pytest.raises(
        CacheError,
        match=r"cache warmer 'zz_broken' \(.*warm_broken\) failed: "
        r"KeyError: 'sku'",
    ) as raised:
        await cache.warm()
    assert isinstance(raised.value.__cause__, KeyError)
    assert await any_cache.get("fine") is True  # the warmers before it ran
