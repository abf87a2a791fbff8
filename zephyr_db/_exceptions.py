"""The database errors users handle; asyncpg's are translated here, in one place.

Errors raised by the SQL a user runs inside ``cluster.read()``/``cluster.write()`` are
asyncpg's own (``UniqueViolationError``, ``ReadOnlySQLTransactionError``, ...): the
connection is asyncpg's and we do not wrap it. What we translate is what the routing
layer itself meets: a host that cannot be reached while opening a pool or acquiring
a connection.
"""

from __future__ import annotations

import asyncio

import asyncpg

from zephyr_core import ZephyrError, mask_url


class DatabaseError(ZephyrError):
    """Base class of the errors ``zephyr_db`` raises."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """A database host (the primary, or every replica) cannot be reached.

    The message names the host with any password masked.
    """


class NoHealthyReplica(DatabaseUnavailable):
    """Every replica is down or lagging and the cluster was told not to fall back.

    Raised by ``cluster.read()`` when ``fallback="raise"``; with the default
    ``fallback="primary"`` such reads go to the primary instead.
    """


#: What a failed connection attempt raises: refused or unreachable sockets, connect
#: timeouts, a server shutting down or not yet accepting connections, no host with
#: the wanted ``target_session_attrs``.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,  # authentication, "the database system is starting up", ...
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # TargetServerAttributeNotMatched
)


def unavailable(host: str, exc: BaseException) -> DatabaseUnavailable:
    """The error to raise ``from exc`` when ``host`` could not be used."""
    reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
    return DatabaseUnavailable(mask_url(f"database {host} is unavailable: {reason}"))
