"""A background event loop thread: runs sync-function cache calls and listeners.

Sync cached functions cannot await, and the invalidation listener must keep running
whatever the app's loops do, so both use this one daemon loop. It is restarted in a
forked child (threads do not survive ``fork``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Runner:
    """One daemon thread running one asyncio loop forever."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="zephyr-cache", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the background loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the background loop and wait for its result."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a sync cached function cannot be called from the cache runner")
        return self.submit(coro).result()


_runner: Runner | None = None
_lock = threading.Lock()


def runner() -> Runner:
    """The process's background loop, started on first use."""
    global _runner
    current = _runner
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _runner is None or _runner.pid != os.getpid():
            _runner = Runner()
        return _runner


def started_runner() -> Runner | None:
    """The process's background loop if it was started, without starting it."""
    current = _runner
    return current if current is not None and current.pid == os.getpid() else None
