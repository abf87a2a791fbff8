"""Cache fixtures: a clean registry per test, and caches on memory or a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import zephyr_cache
from zephyr_cache import Cache, configure, get_cache

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
async def _fresh_caches() -> AsyncIterator[None]:
    """Each test starts unconfigured and leaves no connection open behind it."""
    zephyr_cache.reset()
    yield
    await zephyr_cache.close_caches()
    zephyr_cache.reset()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_cache(backend: str, request: pytest.FixtureRequest) -> Cache:
    """The default cache, on memory or on the session's private Redis."""
    if backend == "memory":
        configure({"default": {"backend": "memory", "max_size": 1000, "timeout": 300}})
    else:
        url = request.getfixturevalue("redis_url")
        configure({"default": {"backend": "redis", "url": url, "timeout": 300}})
    return get_cache()


def python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (another process) with the repo importable."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``code`` in another process; talk to it over stdin/stdout lines."""
    return subprocess.Popen(
        [sys.executable, "-u", "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
