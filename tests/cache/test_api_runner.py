"""The background loop of sync cached functions: one per process, made again after fork."""

from __future__ import annotations

import threading

from tests.cache.conftest import python
from zephyr_cache._runner import runner, started_runner

FORKED_SYNC = """
import os, sys, threading
from zephyr_cache import cache, configure
from zephyr_cache._runner import runner, started_runner

configure({"default": {"backend": "redis", "url": sys.argv[1]}})
calls = []

@cache.cached(timeout=60)
def double(n: int) -> int:
    calls.append(n)
    return 2 * n

assert double(2) == 4 and double(2) == 4 and calls == [2]
parent_thread = runner().thread
pid = os.fork()
if pid == 0:
    try:
        assert started_runner() is None, "the parent's loop thread does not survive fork"
        assert double(2) == 4 and double(3) == 6 and calls == [2, 3]
        assert runner().thread is not parent_thread and runner().thread.is_alive()
    except BaseException as exc:
        print("child failed:", repr(exc), file=sys.stderr)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_one_runner_per_process() -> None:
    first = runner()
    assert started_runner() is first and runner() is first
    assert first.thread.is_alive() and first.thread is not threading.current_thread()
    assert first.run(_answer()) == 42


async def _answer() -> int:
    return 42


def test_sync_cached_functions_work_in_a_forked_child(redis_url: str) -> None:
    done = python(FORKED_SYNC, redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child 0", done.stderr
