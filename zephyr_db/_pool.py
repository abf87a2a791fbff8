"""ConnectionPool: one asyncpg pool, checked at construction, with its use counted.

asyncpg's ``Pool`` does the pooling: connecting, reconnecting a connection the server
closed when it is next acquired, ``max_queries`` and idle-lifetime recycling. We add
the checks (``pool_config`` keys are asyncpg's own, refused early when unknown), the
error translation (an unreachable host is :class:`DatabaseUnavailable`, its URL
masked) and two counters asyncpg does not expose: connections in use and tasks
waiting for one, which the ``/metrics`` gauges read.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg

from zephyr_core import ConfigError, mask_url
from zephyr_db._config import check_pool_config, check_url, host_label
from zephyr_db._exceptions import CONNECT_ERRORS, DatabaseError, unavailable


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of one pool's use.

    Attributes:
        host: ``host:port`` (a comma-separated list for a multi-host URL).
        size: Open connections.
        in_use: Connections acquired and not yet released.
        waiting: Tasks waiting to acquire a connection (the pool is at ``max_size``).
        max_size: The most connections the pool opens.
    """

    host: str
    size: int
    in_use: int
    waiting: int
    max_size: int


class ConnectionPool:
    """An asyncpg connection pool configured with asyncpg's own options.

    Args:
        url: ``postgresql://user:password@host:5432/dbname``; libpq's multi-host form
            (``postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write``) works.
        **pool_config: asyncpg's pool options: ``min_size`` (10, or ``max_size`` when
            only that is given), ``max_size`` (10),
            ``max_queries``, ``max_inactive_connection_lifetime`` (seconds),
            ``timeout`` (seconds to connect), ``command_timeout`` (seconds per
            query), ``server_settings``, ``statement_cache_size`` (set it to 0 behind
            PgBouncer in transaction mode, which cannot keep prepared statements),
            ``max_cached_statement_lifetime``, ``max_cacheable_statement_size``,
            ``setup``, ``init``, ``ssl``.

    Raises:
        ConfigError: at construction, for a malformed URL, an unknown key (the
            nearest valid one is suggested), a bad value, or ``min_size`` above
            ``max_size``.

    Example:
        >>> pool = ConnectionPool("postgresql://app@db/app", min_size=1, max_size=5)
        >>> async with pool:                             # doctest: +SKIP
        ...     async with pool.acquire() as conn:
        ...         await conn.fetchval("SELECT 1")
    """

    def __init__(self, url: str, **pool_config: Any) -> None:
        self.url = check_url(url, field="url")
        self.config = check_pool_config(pool_config)
        self.host = host_label(url)
        self.pool: asyncpg.Pool | None = None
        self.in_use = 0
        self.waiting = 0

    def __repr__(self) -> str:
        state = "open" if self.pool is not None else "closed"
        return f"<ConnectionPool {mask_url(self.url)} {state}>"

    async def open(self) -> None:
        """Create the asyncpg pool and its first ``min_size`` connections.

        Raises:
            DatabaseUnavailable: the server cannot be reached (the URL masked).
        """
        if self.pool is not None:
            return
        try:
            self.pool = await asyncpg.create_pool(self.url, **self.config)
        except CONNECT_ERRORS as exc:
            raise unavailable(self.host, exc) from exc
        except TypeError as exc:  # an option asyncpg itself refuses, e.g. a bad ssl value
            raise ConfigError(f"pool_config: {exc}", field="pool_config") from exc

    async def close(self) -> None:
        """Close every connection, waiting for acquired ones to be released."""
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def terminate(self) -> None:
        """Close every connection at once, without waiting (a host that went away)."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    async def __aenter__(self) -> ConnectionPool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def acquire(self) -> Acquired:
        """``async with pool.acquire() as conn``: an asyncpg connection, released after.

        Raises:
            DatabaseUnavailable: no connection could be made to the server.
            DatabaseError: the pool is not open.
        """
        return Acquired(self)

    async def _acquire(self) -> asyncpg.Connection:
        pool = self.pool
        if pool is None:
            raise DatabaseError(
                f"{self!r} is not open: use 'async with pool' or 'await pool.open()'"
            )
        self.waiting += 1
        try:
            conn = await pool.acquire()
        except CONNECT_ERRORS as exc:
            raise unavailable(self.host, exc) from exc
        finally:
            self.waiting -= 1
        self.in_use += 1
        return conn

    async def _release(self, conn: asyncpg.Connection, pool: asyncpg.Pool) -> None:
        self.in_use -= 1
        try:
            await pool.release(conn)
        except asyncpg.InterfaceError:  # the pool was terminated meanwhile (host gone)
            conn.terminate()

    def connect_options(self) -> dict[str, Any]:
        """The options of ``pool_config`` that apply to a single connection."""
        keys = ("server_settings", "ssl", "statement_cache_size", "command_timeout")
        return {key: self.config[key] for key in keys if key in self.config}

    def stats(self) -> PoolStats:
        """Open connections, those in use, waiting tasks, and the maximum."""
        pool = self.pool
        return PoolStats(
            host=self.host,
            size=pool.get_size() if pool is not None else 0,
            in_use=self.in_use,
            waiting=self.waiting,
            max_size=self.config.get("max_size", 10),
        )

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """``conn.fetch`` on a pooled connection."""
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """``conn.fetchrow`` on a pooled connection."""
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """``conn.fetchval`` on a pooled connection."""
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """``conn.execute`` on a pooled connection; returns the command status."""
        async with self.acquire() as conn:
            return await conn.execute(query, *args)  # type: ignore[no-any-return]


class Acquired:
    """The async context manager :meth:`ConnectionPool.acquire` returns."""

    __slots__ = ("_conn", "_owner", "_pool")

    def __init__(self, owner: ConnectionPool) -> None:
        self._owner = owner
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._pool = self._owner.pool
        self._conn = await self._owner._acquire()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, pool = self._conn, self._pool
        self._conn = None
        if conn is not None and pool is not None:
            await self._owner._release(conn, pool)
