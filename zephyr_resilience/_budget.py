"""A retry budget (Finagle's RetryBudget): retries are at most a share of recent requests.

Over a sliding window (10 s in ten buckets), retries may add at most ``percent`` of
the requests sent, plus a small reserve (``min_per_second`` a second) so a quiet
service can still retry. When a dependency is down, every request fails and every
retry fails too; the budget keeps the extra load at ``percent`` instead of multiplying
it by the retry count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from zephyr_core import ConfigError

_BUCKETS = 10


class RetryBudget:
    """Allow a retry only while retries stay within a share of recent requests.

    Args:
        percent: Retries allowed per request sent, over the window (0.2: 20% extra).
        min_per_second: Retries allowed a second whatever the traffic.
        window: Seconds the counts cover.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        percent: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for field, value in (("percent", percent), ("min_per_second", min_per_second)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"retry budget {field}={value!r}: expected a number >= 0")
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            raise ConfigError(f"retry budget window={window!r}: expected a number > 0")
        self.percent = float(percent)
        self.min_per_second = float(min_per_second)
        self.window = float(window)
        self.reserve = float(min_per_second) * float(window)
        self.bucket_seconds = float(window) / _BUCKETS
        self.clock = clock
        # (bucket number, requests, retries), oldest first.
        self._buckets: deque[list[int]] = deque()
        self.requests = 0
        self.retries = 0

    def _current(self) -> list[int]:
        number = int(self.clock() / self.bucket_seconds)
        buckets = self._buckets
        while buckets and buckets[0][0] <= number - _BUCKETS:
            _, requests, retries = buckets.popleft()
            self.requests -= requests
            self.retries -= retries
        if not buckets or buckets[-1][0] != number:
            buckets.append([number, 0, 0])
        return buckets[-1]

    def copy(self) -> RetryBudget:
        """A fresh budget with the same settings (each service gets its own)."""
        return RetryBudget(self.percent, self.min_per_second, self.window, self.clock)

    def deposit(self) -> None:
        """Count a request (a first attempt)."""
        self._current()[1] += 1
        self.requests += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        bucket = self._current()
        if self.retries + 1 > self.reserve + self.percent * self.requests:
            return False
        bucket[2] += 1
        self.retries += 1
        return True
