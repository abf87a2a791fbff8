"""Small helpers shared by the zephyr_db tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.db.replication import ReplicationSet
from zephyr_db import DatabaseCluster

SMALL = {"min_size": 1, "max_size": 4}


def cluster_for(
    servers: ReplicationSet, replicas: int | None = None, **options: Any
) -> DatabaseCluster:
    """A cluster over the set: the primary and the first ``replicas`` replicas (all by default)."""
    chosen = servers.replicas if replicas is None else servers.replicas[:replicas]
    options.setdefault("pool_config", SMALL)
    options.setdefault("health_interval", 0.1)
    return DatabaseCluster(
        servers.url(servers.primary), [servers.url(r) for r in chosen], **options
    )


async def port(conn: Any) -> int:
    """The port of the server a connection reached (each server has its own)."""
    return int(await conn.fetchval("SELECT inet_server_port()"))


async def read_port(cluster: DatabaseCluster) -> int:
    async with cluster.read() as conn:
        return await port(conn)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Check ``condition`` (sync or async) until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout

    async def holds() -> bool:
        outcome = condition()
        return await outcome if inspect.isawaitable(outcome) else bool(outcome)

    while not await holds():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
