"""Notice a job that blocks the event loop its process's async jobs share.

A sync call inside an ``async def`` job (``time.sleep``, a blocking client) stops
every other job of the process while it runs. A heartbeat callback on the loop
records when the loop last turned; a watchdog thread compares that with the clock.
When the loop has not turned for ``threshold`` seconds, it names the asyncio task
running on it (the pool names each job's task ``name[id]``) in a warning, and logs
again, with the whole duration, once the loop turns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("zephyr_celery")

#: Seconds the loop may go without turning before the job on it is reported.
DEFAULT_BLOCK_THRESHOLD = 0.25


class LoopWatch:
    """Reports tasks that keep ``loop`` from turning for ``threshold`` seconds or more.

    Args:
        loop: The running event loop to watch.
        threshold: Seconds without a turn that count as blocking.
        clock: A monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float = DEFAULT_BLOCK_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.clock = clock
        self.last_turn = clock()
        self.longest = 0.0  # the longest block seen, in seconds (for `inspect stats`)
        self._stop = threading.Event()
        self._blocked_by: str | None = None
        self._blocked_since = 0.0
        self._interval = threshold / 4
        self._thread = threading.Thread(target=self._watch, name="zephyr-loop-watch", daemon=True)

    def start(self) -> None:
        """Start the heartbeat on the loop and the watchdog thread."""
        self.loop.call_soon_threadsafe(self._beat)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the heartbeat stops at its next turn)."""
        self._stop.set()

    def _beat(self) -> None:
        self.last_turn = self.clock()
        if not self._stop.is_set():
            self.loop.call_later(self._interval, self._beat)

    def check(self) -> None:
        """Compare the last turn with the clock; log a block's start and its end."""
        now = self.clock()
        # The heartbeat is due every _interval: lateness beyond that is the block.
        blocked = now - self.last_turn - self._interval
        if self._blocked_by is None:
            if blocked >= self.threshold:
                task = asyncio.current_task(self.loop)
                self._blocked_by = task.get_name() if task is not None else "a loop callback"
                self._blocked_since = self.last_turn + self._interval
                logger.warning(
                    "job %s is blocking the event loop (%.2fs so far): a sync call inside "
                    "an async job stops every other job of this process",
                    self._blocked_by,
                    blocked,
                )
        elif self.last_turn >= self._blocked_since:
            took = self.last_turn - self._blocked_since
            self.longest = max(self.longest, took)
            logger.warning(
                "job %s blocked the event loop for %.2fs; run blocking code with "
                "asyncio.to_thread or make the job a sync job",
                self._blocked_by,
                took,
            )
            self._blocked_by = None

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # never let the watchdog die silently
                logger.exception("event loop watch failed")
