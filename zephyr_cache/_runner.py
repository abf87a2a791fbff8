"""The cache's background event loop: runs sync-function cache calls and listeners.

Sync cached functions cannot await, and the invalidation listener must keep running
whatever the app's loops do, so both use this one daemon loop
(:class:`zephyr_core._background.LoopThread`), made again in a forked child (threads do
not survive ``fork``) by :class:`~zephyr_core._background.PerProcess`.
"""

from __future__ import annotations

from zephyr_core._background import LoopThread, PerProcess

_runner: PerProcess[LoopThread] = PerProcess(lambda: LoopThread("zephyr-cache"))


def runner() -> LoopThread:
    """The process's background loop, started on first use."""
    return _runner.get()


def started_runner() -> LoopThread | None:
    """The process's background loop if it was started, without starting it."""
    return _runner.peek()
