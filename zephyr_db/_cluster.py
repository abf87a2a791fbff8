"""DatabaseCluster: read/write routing over asyncpg pools for a primary and its replicas.

A pooler such as pgcat or PgBouncer sits between the app and PostgreSQL and splits
reads from writes, takes unhealthy replicas out, and skips lagging ones. This does the
same in process: one asyncpg pool per server, and a router choosing among them.

- ``write()`` is the primary. Its URL may list several hosts (libpq's
  ``postgresql://h1:5432,h2:5432/db``); asyncpg then connects to whichever accepts
  writes (``target_session_attrs=read-write`` is added when the URL names none), so
  after a fail-over new connections reach the promoted server. A connection to a
  host that turned read-only is dropped, and with it the pool's idle connections.
- ``read()`` is a replica chosen by ``strategy`` among the usable ones: up, and no
  more than ``max_lag`` seconds behind. One that refuses a connection is taken out
  at once; a background task re-checks every server each ``health_interval``
  seconds, on a connection of its own outside the pools, and puts a replica back
  when it answers (and has caught up). With none usable,
  reads go to the primary (``fallback="primary"``) or raise :class:`NoHealthyReplica`.
- Read-your-writes: see :mod:`zephyr_db._consistency`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import asyncpg

from zephyr_core import ConfigError, Settings, get_settings, mask_url
from zephyr_db._config import (
    check_pool_config,
    check_url,
    hosts,
    nearest,
    with_target_session_attrs,
)
from zephyr_db._consistency import Consistency, Session
from zephyr_db._exceptions import CONNECT_ERRORS, DatabaseError, NoHealthyReplica
from zephyr_db._hosts import Host, HostStatus
from zephyr_db._lag import HEALTH_QUERY, replica_lag
from zephyr_db._pool import ConnectionPool
from zephyr_db._strategies import STRATEGIES, pick

log = logging.getLogger("zephyr_db")

_CHECK_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, *CONNECT_ERRORS)

FALLBACKS = ("primary", "raise")

#: Every open cluster, for the /metrics collector.
open_clusters: weakref.WeakSet[DatabaseCluster] = weakref.WeakSet()

# Errors inside a read() block that mean the replica itself went away (not a SQL error).
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.exceptions.AdminShutdownError)  # fmt: skip


class DatabaseCluster:
    """A primary and its read replicas, each with an asyncpg pool, and the routing between.

    Args:
        write_url: The primary's URL. Several hosts (``postgresql://h1:5432,h2:5432/db``)
            enable fail-over: writes go to whichever accepts them.
        read_urls: The replicas' URLs (a list); empty sends reads to the primary.
        pool_config: asyncpg pool options for every pool (see :class:`ConnectionPool`).
        strategy: ``"round_robin"`` or ``"least_connections"`` (fewest in use).
        max_lag: Seconds; a replica further behind is skipped until it catches up.
        fallback: With no usable replica, ``"primary"`` (read there) or ``"raise"``.
        read_your_writes: Seconds after a write during which the same task's reads go
            to the primary (0 turns it off; ``session()`` works either way).
        health_interval: Seconds between background checks of every replica.
        health_timeout: Seconds a health check may take before the replica is down.
        name: Names this cluster in ``/metrics`` labels.
        clock: Monotonic clock for the read-your-writes window (tests pass a fake).

    Raises:
        ConfigError: at construction, for any malformed URL or bad option.

    Example:
        >>> cluster = DatabaseCluster(
        ...     write_url="postgresql://app:secret@primary:5432/shop",
        ...     read_urls=["postgresql://app:secret@replica1:5432/shop"],
        ...     pool_config={"min_size": 2, "max_size": 20},
        ... )
        >>> async with cluster:                          # doctest: +SKIP
        ...     async with cluster.read() as conn:
        ...         await conn.fetchrow("SELECT * FROM users WHERE id = $1", 1)
    """

    def __init__(
        self,
        write_url: str,
        read_urls: Sequence[str] = (),
        pool_config: dict[str, Any] | None = None,
        *,
        strategy: str = "round_robin",
        max_lag: float | None = None,
        fallback: str = "primary",
        read_your_writes: float = 0.0,
        health_interval: float = 2.0,
        health_timeout: float = 2.0,
        name: str = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_url(write_url, field="write_url")
        if isinstance(read_urls, str | bytes):
            raise ConfigError(
                f"read_urls={mask_url(str(read_urls))!r}: expected a list of URLs, not a "
                "string (write read_urls=[url])",
                field="read_urls",
            )
        read_urls = list(read_urls)
        for number, url in enumerate(read_urls):
            check_url(url, field=f"read_urls[{number}]")
        config = check_pool_config(pool_config or {})
        _choice("strategy", strategy, STRATEGIES)
        _choice("fallback", fallback, FALLBACKS)
        if max_lag is not None:
            _positive("max_lag", max_lag)
        _positive("read_your_writes", read_your_writes, zero_ok=True)
        _positive("health_interval", health_interval)
        _positive("health_timeout", health_timeout)
        if len(hosts(write_url)) > 1:
            write_url = with_target_session_attrs(write_url, "read-write")
        self.name = name
        self.strategy = strategy
        self.max_lag = max_lag
        self.fallback = fallback
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.primary = Host(ConnectionPool(write_url, **config), "primary")
        self.replicas = [Host(ConnectionPool(url, **config), "replica") for url in read_urls]
        #: Reads sent to the primary because no replica was usable.
        self.fallbacks = 0
        self._usable: list[Host] = []
        self._turn = 0
        self._consistency = Consistency(read_your_writes, clock, name)
        self._monitor: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> DatabaseCluster:
        """A cluster for ``DATABASE_URL`` (primary) and ``DATABASE_READ_URLS`` (replicas).

        Args:
            settings: Defaults to :func:`zephyr_core.get_settings`.
            **options: Any other :class:`DatabaseCluster` argument (``pool_config``, ...).

        Raises:
            ConfigError: ``DATABASE_URL`` is not set.
        """
        settings = settings or get_settings()
        if not settings.DATABASE_URL:
            raise ConfigError(
                "DATABASE_URL is not set: expected postgresql://user:password@host:5432/dbname",
                field="DATABASE_URL",
            )
        return cls(settings.DATABASE_URL, settings.DATABASE_READ_URLS, **options)

    def __repr__(self) -> str:
        replicas = ", ".join(r.name for r in self.replicas) or "none"
        return f"<DatabaseCluster {self.name!r} primary={self.primary.name} replicas={replicas}>"

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Open every pool, check the replicas once, start the background checks.

        A replica that cannot be reached is marked down (and retried); the primary
        must answer.

        Raises:
            DatabaseUnavailable: the primary cannot be reached.
        """
        if self._monitor is not None:
            return
        await self.primary.pool.open()
        self.primary.up = self.primary.usable = True
        await asyncio.gather(*(self._check_replica(r) for r in self.replicas))
        self._monitor = asyncio.create_task(self._watch(), name=f"zephyr_db health {self.name}")
        open_clusters.add(self)

    async def close(self) -> None:
        """Stop the background checks and close every pool."""
        monitor, self._monitor = self._monitor, None
        open_clusters.discard(self)
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        hosts = (self.primary, *self.replicas)
        for host in hosts:
            if host.probe is not None:
                host.probe.terminate()
                host.probe = None
        await asyncio.gather(*(h.pool.close() for h in hosts), return_exceptions=True)
        self._usable = []

    async def __aenter__(self) -> DatabaseCluster:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- routing -------------------------------------------------------------------

    def read(self) -> Routed:
        """``async with cluster.read() as conn``: an asyncpg connection on a replica.

        The primary when read-your-writes applies, or when no replica is usable and
        ``fallback="primary"``. A write through it fails with PostgreSQL's own
        ``asyncpg.ReadOnlySQLTransactionError`` when it reached a replica.

        Raises:
            NoHealthyReplica: no usable replica and ``fallback="raise"``.
            DatabaseUnavailable: the chosen server (after every fallback) is unreachable.
        """
        return Routed(self, write=False)

    def write(self) -> Routed:
        """``async with cluster.write() as conn``: an asyncpg connection on the primary.

        Raises:
            DatabaseUnavailable: no host of ``write_url`` accepts writes.
        """
        return Routed(self, write=True)

    def session(self, *, sticky: bool = False) -> Session:
        """``async with cluster.session(sticky=True)``: reads inside go to the primary.

        Args:
            sticky: Every read goes to the primary. Otherwise reads go to replicas
                until the block writes, and to the primary after that.
        """
        return Session(self._consistency, sticky)

    async def _acquire_read(self) -> tuple[Host, asyncpg.Connection]:
        if self._consistency.active and self._consistency.needs_primary():
            return self.primary, await self.primary.pool._acquire()
        while self._usable:
            usable = self._usable
            self._turn += 1
            host = usable[0] if len(usable) == 1 else pick(self.strategy, usable, self._turn)
            pool = host.pool
            apool = pool.pool
            if apool is None:  # closed meanwhile
                self._take_out(host, DatabaseError("its pool is closed"))
                continue
            # ConnectionPool._acquire inlined: this is the hot path of every read
            pool.waiting += 1
            try:
                conn = await apool.acquire()
            except CONNECT_ERRORS as exc:  # refused, timed out: take it out, try the next
                self._take_out(host, exc)
                continue
            finally:
                pool.waiting -= 1
            pool.in_use += 1
            host.reads += 1
            return host, conn
        if self.fallback == "raise" and self.replicas:
            raise NoHealthyReplica(
                f"cluster {self.name!r}: no replica is usable ("
                + "; ".join(f"{r.name}: {_why(r, self.max_lag)}" for r in self.replicas)
                + ")"
            )
        if self.replicas:
            self.fallbacks += 1
        self.primary.reads += 1
        return self.primary, await self.primary.pool._acquire()

    def _take_out(self, host: Host, exc: BaseException) -> None:
        host.mark_down(exc)
        self._usable = [r for r in self.replicas if r.usable]
        log.warning("replica %s taken out of rotation: %s", host.name, host.error)

    def _lost(self, host: Host, exc: BaseException) -> None:
        """A connection broke inside a block: the server may have gone."""
        if host.role == "replica" and host.up:
            self._take_out(host, exc)

    async def _primary_read_only(self) -> None:
        """The write pool reached a read-only server: drop its connections."""
        pool = self.primary.pool.pool
        if pool is not None:
            log.warning("primary %s is read-only: reconnecting the write pool", self.primary.name)
            await pool.expire_connections()

    # -- health ----------------------------------------------------------------------

    async def check_health(self) -> None:
        """Check every server now (the background task does this each interval)."""
        await asyncio.gather(
            self._check_primary(), *(self._check_replica(r) for r in self.replicas)
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)  # the interval, not a wait for a condition
            try:
                await self.check_health()
            except Exception:  # never let the monitor die; the next round retries
                log.exception("database health check failed")

    async def _query_health(self, host: Host) -> asyncpg.Record:
        # A connection of its own: a pool whose connections are all in use must not
        # look like a dead server.
        conn = host.probe
        if conn is None or conn.is_closed():
            host.probe = None
            conn = await asyncpg.connect(
                host.pool.url, timeout=self.health_timeout, **host.pool.connect_options()
            )
            host.probe = conn
        try:
            row = await conn.fetchrow(HEALTH_QUERY)
        except BaseException:  # includes the cancellation of a check that timed out
            host.probe = None
            conn.terminate()
            raise
        if host.pool.pool is None:  # down when the cluster opened: open its pool now
            await host.pool.open()
        return row

    async def _check_replica(self, host: Host) -> None:
        try:
            row = await asyncio.wait_for(self._query_health(host), self.health_timeout)
        except _CHECK_ERRORS as exc:
            was_up = host.up
            host.mark_down(exc.__cause__ or exc if isinstance(exc, DatabaseError) else exc)
            if was_up:
                log.warning("replica %s is down: %s", host.name, host.error)
        else:
            lag = replica_lag(
                row["in_recovery"], row["caught_up"], row["streaming"], row["since_replay"]
            )
            host.mark_up(row["in_recovery"], lag, self.max_lag)
        self._usable = [r for r in self.replicas if r.usable]

    async def _check_primary(self) -> None:
        host = self.primary
        try:
            row = await asyncio.wait_for(self._query_health(host), self.health_timeout)
        except _CHECK_ERRORS as exc:
            host.mark_down(exc.__cause__ or exc if isinstance(exc, DatabaseError) else exc)
            return
        host.mark_up(row["in_recovery"], 0.0, None)
        if row["in_recovery"] or row["read_only"]:
            host.usable = False
            if host.probe is not None:  # reconnect it too, to whichever host takes writes
                host.probe.terminate()
                host.probe = None
            await self._primary_read_only()

    def status(self) -> list[HostStatus]:
        """The primary then each replica: up, usable, role, lag, reads, pool use."""
        return [h.status() for h in (self.primary, *self.replicas)]


class Routed:
    """The async context manager ``read()`` and ``write()`` return."""

    __slots__ = ("_cluster", "_conn", "_host", "_pool", "_write")

    def __init__(self, cluster: DatabaseCluster, write: bool) -> None:
        self._cluster = cluster
        self._write = write
        self._host: Host | None = None
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        cluster = self._cluster
        if self._write:
            host = cluster.primary
            self._pool = host.pool.pool
            conn = await host.pool._acquire()
        else:
            host, conn = await cluster._acquire_read()
            self._pool = host.pool.pool
        self._host, self._conn = host, conn
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        host, conn, pool = self._host, self._conn, self._pool
        self._host = self._conn = self._pool = None
        if host is None or conn is None:
            return
        cluster = self._cluster
        if self._write:
            cluster._consistency.wrote()
            if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
                conn.terminate()  # never hand this connection out for a write again
                await cluster._primary_read_only()
        elif exc is not None and isinstance(exc, _LOST):
            cluster._lost(host, exc)
        if pool is None:
            conn.terminate()
            return
        host.pool.in_use -= 1
        try:
            await pool.release(conn)
        except asyncpg.InterfaceError:  # the pool was closed meanwhile
            conn.terminate()


def _why(host: Host, max_lag: float | None) -> str:
    if not host.up:
        return f"down ({host.error or 'not checked yet'})"
    if host.lag is None:
        return "lag unknown"
    return f"{host.lag:.1f}s behind (max_lag={max_lag:g})" if max_lag else "not usable"


def _choice(field: str, value: object, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ConfigError(
            f"{field}={value!r}: expected one of {', '.join(accepted)}"
            f"{nearest(str(value), list(accepted))}",
            field=field,
        )


def _positive(field: str, value: object, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{field}={value!r}: expected a number of seconds", field=field)
    if value < 0 or (value == 0 and not zero_ok):
        bound = "0 or more" if zero_ok else "greater than 0"
        raise ConfigError(f"{field}={value!r}: must be {bound}", field=field)
