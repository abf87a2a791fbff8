"""What the cluster knows about each server: up or down, role, lag, and its counters."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from zephyr_core import mask_url
from zephyr_db._pool import ConnectionPool, PoolStats


@dataclass(frozen=True)
class HostStatus:
    """One server as ``cluster.status()`` and ``zephyr db status`` report it.

    Attributes:
        name: ``host:port`` (a comma-separated list for a multi-host primary URL).
        role: ``"primary"`` (the write pool) or ``"replica"``.
        up: Whether its last health check (or connection attempt) succeeded.
        usable: Whether reads are routed to it now (up, and within ``max_lag``).
        in_recovery: What the server says (``pg_is_in_recovery()``): True on a standby.
        lag: Seconds behind the primary, ``None`` when unknown or never checked.
        error: Why it is down (passwords masked), else ``None``.
        reads: Reads routed to it so far.
        pool: Its pool's use.
    """

    name: str
    role: str
    up: bool
    usable: bool
    in_recovery: bool | None
    lag: float | None
    error: str | None
    reads: int
    pool: PoolStats

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (``zephyr db status --json``)."""
        return {
            "host": self.name,
            "role": self.role,
            "up": self.up,
            "usable": self.usable,
            "in_recovery": self.in_recovery,
            "lag_seconds": None if self.lag is None else round(self.lag, 3),
            "error": self.error,
            "reads": self.reads,
            "pool": {
                "size": self.pool.size,
                "in_use": self.pool.in_use,
                "waiting": self.pool.waiting,
                "max_size": self.pool.max_size,
            },
        }


class Host:
    """A server and its pool, with the state the health checks keep up to date."""

    __slots__ = ("error", "in_recovery", "lag", "pool", "probe", "reads", "role", "up", "usable")

    def __init__(self, pool: ConnectionPool, role: str) -> None:
        self.pool = pool
        self.role = role
        self.up = False
        self.usable = False
        self.in_recovery: bool | None = None
        self.lag: float | None = None
        self.error: str | None = None
        self.reads = 0
        #: The health checks' own connection (outside the pool).
        self.probe: asyncpg.Connection | None = None

    @property
    def in_use(self) -> int:
        return self.pool.in_use

    @property
    def name(self) -> str:
        return self.pool.host

    def mark_down(self, exc: BaseException) -> None:
        self.up = self.usable = False
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        self.error = mask_url(reason)

    def mark_up(self, in_recovery: bool, lag: float | None, max_lag: float | None) -> None:
        self.up = True
        self.error = None
        self.in_recovery = in_recovery
        self.lag = lag
        self.usable = max_lag is None or (lag is not None and lag <= max_lag)

    def status(self) -> HostStatus:
        return HostStatus(
            name=self.name,
            role=self.role,
            up=self.up,
            usable=self.usable,
            in_recovery=self.in_recovery,
            lag=self.lag,
            error=self.error,
            reads=self.reads,
            pool=self.pool.stats(),
        )
