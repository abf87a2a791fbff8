"""PostgreSQL connection pools with read/write routing, over asyncpg.

``ConnectionPool`` is one asyncpg pool; ``DatabaseCluster`` is a primary and its read
replicas with the routing a pooler like pgcat gives, in process: replicas taken out
when they fail and put back when they answer, lagging replicas skipped, reads sent to
the primary after this task's writes, writes following a fail-over.

>>> from zephyr_db import DatabaseCluster
>>> cluster = DatabaseCluster.from_settings()   # doctest: +SKIP
"""

from zephyr_db._cluster import DatabaseCluster
from zephyr_db._consistency import Session
from zephyr_db._exceptions import DatabaseError, DatabaseUnavailable, NoHealthyReplica
from zephyr_db._hosts import HostStatus
from zephyr_db._metrics import register as _register_metrics
from zephyr_db._pool import ConnectionPool, PoolStats

_register_metrics()

__all__ = [
    "ConnectionPool",
    "DatabaseCluster",
    "DatabaseError",
    "DatabaseUnavailable",
    "HostStatus",
    "NoHealthyReplica",
    "PoolStats",
    "Session",
]
